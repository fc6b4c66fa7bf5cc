/**
 * Checkpoint: load a model — an HF model directory or a GGUF file — into a LlamaConfig, ModelWeights,
 * tokenizer, and what chat templating needs (the template and the special tokens' strings).
 *
 * A directory holds:
 * - `config.json` (required; Config.ts decodes it);
 * - `model.safetensors`, or `model.safetensors.index.json` (`{ weight_map: { name: shardFile } }`) and
 *   its shards, which must lie inside the directory;
 * - `tokenizer.json` and `tokenizer_config.json` (optional: without them the model runs on token ids);
 *   the chat template is `chat_template.jinja` when present, else tokenizer_config.json's
 *   `chat_template` (a string, or a list of `{ name, template }` from which "default" is taken);
 * - `generation_config.json` (optional: extra `eos_token_id`s, `max_new_tokens`).
 *
 * A `.gguf` file (or any file starting with the GGUF magic) holds all of it: GgufCheckpoint.ts maps its
 * metadata and tensors, GgufTokenizer.ts its tokenizer; `tokenizer.chat_template` is the template and
 * the eos ids are `tokenizer.ggml.eos_token_id` plus `eot_token_id`/`eom_token_id` when present.
 *
 * Only the tensors the model needs are read, each into its own buffer. Every failure is a typed
 * ConfigError, CheckpointError or GgufError naming the file (and tensor or field), never a throw.
 *
 * This module does not make weights resident on a backend (Model.ts does) nor render chat templates.
 */
import { Effect, Schema } from "effect"
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from "node:fs"
import { dirname, isAbsolute, join, resolve, sep } from "node:path"
import { ConfigError, describeSchemaError, errorText, normaliseTokenIds, quote, readConfigFile, readJsonFile, TokenIds } from "./Config.ts"
import type { LlamaConfig } from "./Config.ts"
import { GGUF_MAGIC, GgufError, metaString, readGgufHeader } from "./Gguf.ts"
import { ggufWeights } from "./GgufCheckpoint.ts"
import { ggufTokenizerParts } from "./GgufTokenizer.ts"
import type { SpecialTokens } from "./GgufTokenizer.ts"
import type { OnProgress } from "./LoadProgress.ts"
import { CheckpointError, readSafetensors, readSafetensorsHeader } from "./Safetensors.ts"
import type { QuantType, RawTensor } from "./Tensor.ts"
import { loadTokenizer, makeTokenizer } from "./Tokenizer.ts"
import type { TextTokenizer } from "./Tokenizer.ts"
import { assembleWeights, expectedTensors, quantizeWeights } from "./Weights.ts"
import type { ModelWeights } from "./Weights.ts"

export { CheckpointError } from "./Safetensors.ts"
export { GgufError } from "./Gguf.ts"
export type { SpecialTokens } from "./GgufTokenizer.ts"

export interface Checkpoint {
  /** The path given to loadCheckpoint: the model directory or the .gguf file. */
  readonly path: string
  /** The model directory; for a GGUF file, the directory holding it (where calibration files go). */
  readonly dir: string
  readonly config: LlamaConfig
  readonly weights: ModelWeights
  /** undefined when there is no tokenizer (no tokenizer.json; no tokenizer.ggml.model): the model then works only with token ids. */
  readonly tokenizer: TextTokenizer | undefined
  /** config.json's eos ids united with generation_config.json's; for GGUF eos, eot and eom ids. */
  readonly eosTokenIds: ReadonlyArray<number>
  readonly generation: { readonly maxNewTokens?: number }
  /** The Jinja chat template, when the model has one. */
  readonly chatTemplate?: string
  /** The special tokens' strings (bos, eos, eot, unk), for chat templates; empty without a tokenizer. */
  readonly specialTokens: SpecialTokens
}

const IndexFile = Schema.Struct({ weight_map: Schema.Record(Schema.String, Schema.String) })
const GenerationConfig = Schema.Struct({
  eos_token_id: Schema.optionalKey(Schema.NullOr(TokenIds)),
  max_new_tokens: Schema.optionalKey(Schema.NullOr(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))))
})

const checkpointError = (file: string, message: string, tensor = "") => new CheckpointError({ file, tensor, message: `${file}: ${message}` })

const exists = (file: string): Effect.Effect<boolean, CheckpointError> =>
  Effect.try({ try: () => existsSync(file), catch: (cause) => checkpointError(file, `cannot stat (${errorText(cause)})`) })

/** Read the needed tensors of a sharded checkpoint; `fileOf` names each tensor's shard for later errors. */
/**
 * A progress reporter over the needed tensors of the given files (their headers read first for the
 * totals), or undefined without a callback.
 */
const progressOver = Effect.fnUntraced(function* (files: ReadonlyArray<string>, needed: ReadonlySet<string>, onProgress: OnProgress | undefined) {
  if (onProgress === undefined) return undefined
  let totalTensors = 0
  let totalBytes = 0
  for (const file of files)
    for (const e of (yield* readSafetensorsHeader(file)).entries)
      if (needed.has(e.name)) {
        totalTensors++
        totalBytes += e.end - e.begin
      }
  let tensors = 0
  let bytes = 0
  return (file: string) => (t: RawTensor) => {
    tensors++
    bytes += t.data.byteLength
    onProgress({ phase: "read", source: file, tensors, totalTensors, bytes, totalBytes })
  }
})

const readSharded = Effect.fnUntraced(function* (dir: string, indexFile: string, needed: ReadonlySet<string>, onProgress: OnProgress | undefined) {
  const json = yield* Effect.try({
    try: (): unknown => JSON.parse(readFileSync(indexFile, "utf8")),
    catch: (cause) => checkpointError(indexFile, `cannot read JSON (${errorText(cause)})`)
  })
  const index = yield* Schema.decodeUnknownEffect(IndexFile)(json).pipe(
    Effect.mapError((error) => {
      const { field, message } = describeSchemaError(error, json)
      return checkpointError(indexFile, `field "${field}" ${message}`)
    })
  )
  const root = resolve(dir)
  const byShard = new Map<string, Array<string>>()
  for (const [name, shard] of Object.entries(index.weight_map)) {
    const target = resolve(root, shard)
    if (shard === "" || isAbsolute(shard) || shard.split(/[\\/]/).includes("..") || !target.startsWith(root + sep))
      return yield* checkpointError(indexFile, `shard path ${JSON.stringify(shard)} for tensor "${name}" escapes the checkpoint directory`, name)
    if (!needed.has(name)) continue
    const names = byShard.get(target) ?? []
    names.push(name)
    byShard.set(target, names)
  }
  // Check every referenced shard before reading any.
  for (const shard of new Set(Object.values(index.weight_map).map((s) => resolve(root, s))))
    if (!(yield* exists(shard))) return yield* checkpointError(shard, `shard listed in ${indexFile} does not exist`)

  const tensors = new Map<string, RawTensor>()
  const fileOf = new Map<string, string>()
  const progress = yield* progressOver([...byShard.keys()], needed, onProgress)
  for (const [shard, names] of byShard) {
    const read = yield* readSafetensors(shard, new Set(names), progress?.(shard))
    for (const name of names) {
      const t = read.get(name)
      if (t === undefined) return yield* checkpointError(shard, `tensor "${name}" is listed in ${indexFile} for this shard but absent from it`, name)
      tensors.set(name, t)
      fileOf.set(name, shard)
    }
  }
  return { tensors, fileOf: (name: string) => fileOf.get(name) ?? indexFile }
})

/** generation_config.json: extra eos ids and max_new_tokens (absent file → nothing). */
const readGenerationConfig = Effect.fnUntraced(function* (file: string, config: LlamaConfig) {
  if (!(yield* exists(file).pipe(Effect.mapError((e) => new ConfigError({ file, field: "", message: e.message })))))
    return { eosTokenIds: config.eosTokenIds, generation: {} }
  const json = yield* readJsonFile(file)
  const raw = yield* Schema.decodeUnknownEffect(GenerationConfig)(json).pipe(
    Effect.mapError((error) => {
      const { field, message } = describeSchemaError(error, json)
      return new ConfigError({ file, field, message: `${file}: field "${field}" ${message}` })
    })
  )
  const eosTokenIds = [...new Set([...config.eosTokenIds, ...normaliseTokenIds(raw.eos_token_id)])]
  const bad = eosTokenIds.find((id) => id >= config.vocabSize)
  if (bad !== undefined)
    return yield* new ConfigError({
      file,
      field: "eos_token_id",
      message: `${file}: field "eos_token_id" must be below vocab_size (got ${bad} for ${config.vocabSize})`
    })
  const maxNewTokens = raw.max_new_tokens ?? undefined
  const generation: Checkpoint["generation"] = maxNewTokens === undefined ? {} : { maxNewTokens }
  return { eosTokenIds, generation }
})

/** tokenizer_config.json's special token entries: a string or an AddedToken object `{ content }`. */
const tokenText = (v: unknown): string | undefined =>
  typeof v === "string" ? v : typeof v === "object" && v !== null && typeof (v as { content?: unknown }).content === "string" ? (v as { content: string }).content : undefined

/** Chat template and special tokens of an HF directory (absent files → nothing). */
const readHfChatParts = Effect.fnUntraced(function* (dir: string) {
  const configFile = join(dir, "tokenizer_config.json")
  const jinja = join(dir, "chat_template.jinja")
  const config = (yield* exists(configFile)) ? yield* readJsonFile(configFile) : {}
  const record = typeof config === "object" && config !== null && !Array.isArray(config) ? (config as Record<string, unknown>) : {}
  let chatTemplate: string | undefined
  if (yield* exists(jinja)) {
    chatTemplate = yield* Effect.try({ try: () => readFileSync(jinja, "utf8"), catch: (cause) => checkpointError(jinja, `cannot read (${errorText(cause)})`) })
  } else {
    const raw = record["chat_template"]
    if (typeof raw === "string") chatTemplate = raw
    else if (Array.isArray(raw)) {
      // The named-list form: [{ name: "default", template }, { name: "tool_use", template }, ...].
      const named = raw.filter((t): t is { name: string; template: string } => typeof t === "object" && t !== null && typeof t.name === "string" && typeof t.template === "string")
      if (named.length !== raw.length)
        return yield* new ConfigError({ file: configFile, field: "chat_template", message: `${configFile}: field "chat_template" must be a string or a list of { name, template } (got ${quote(raw)})` })
      chatTemplate = (named.find((t) => t.name === "default") ?? named[0])?.template
    } else if (raw !== undefined && raw !== null)
      return yield* new ConfigError({ file: configFile, field: "chat_template", message: `${configFile}: field "chat_template" must be a string or a list of { name, template } (got ${quote(raw)})` })
  }
  const bos = tokenText(record["bos_token"])
  const eos = tokenText(record["eos_token"])
  const unk = tokenText(record["unk_token"])
  const specialTokens: SpecialTokens = { ...(bos === undefined ? {} : { bos }), ...(eos === undefined ? {} : { eos }), ...(unk === undefined ? {} : { unk }) }
  return { chatTemplate, specialTokens }
})

/** Whether a file starts with the GGUF magic (whatever its name). */
const hasGgufMagic = (file: string): Effect.Effect<boolean, CheckpointError> =>
  Effect.try({
    try: () => {
      const fd = openSync(file, "r")
      try {
        const head = new Uint8Array(4)
        return readSync(fd, head, 0, 4, 0) === 4 && new DataView(head.buffer).getUint32(0, true) === GGUF_MAGIC
      } finally {
        closeSync(fd)
      }
    },
    catch: (cause) => checkpointError(file, `cannot read (${errorText(cause)})`)
  })

/** A GGUF file as a Checkpoint. */
const loadGguf = Effect.fnUntraced(function* (file: string, onProgress: OnProgress | undefined) {
  const header = yield* readGgufHeader(file)
  const { config, weights } = yield* ggufWeights(header, onProgress)
  const parts = yield* ggufTokenizerParts(header)
  const tokenizer = parts === undefined ? undefined : yield* makeTokenizer(parts.tokenizerJson, parts.tokenizerConfig, file)
  const chatTemplate = yield* metaString(header, "tokenizer.chat_template")
  const eosTokenIds = [...new Set([...config.eosTokenIds, ...(parts?.eosTokenIds ?? [])])]
  const checkpoint: Checkpoint = {
    path: file,
    dir: dirname(file),
    config,
    weights,
    tokenizer,
    eosTokenIds,
    generation: {},
    ...(chatTemplate === undefined ? {} : { chatTemplate }),
    specialTokens: parts?.specialTokens ?? {}
  }
  return checkpoint
})

/**
 * Load a model directory or a GGUF file.
 *
 * **When to use**: the entry point from files on disk to a Model (`Model.fromCheckpoint`).
 *
 * **Details**: for a directory, reads config.json, then model.safetensors or
 * model.safetensors.index.json and its shards (only the tensors the model needs), tokenizer.json when
 * present, generation_config.json when present (its eos ids are united with config.json's), and the
 * chat template. For a `.gguf` file (or a file with the GGUF magic), the header, the needed tensors
 * (Q/K un-permuted for `llama`) and the tokenizer built from its metadata. `onProgress` sees every
 * tensor read; `quantize` quantizes the float matrices after loading. Fails with a ConfigError,
 * CheckpointError or GgufError naming the file, and the tensor or field when there is one; a path that
 * is neither model kind says so.
 *
 * **Example**
 * ```ts
 * const ckpt = yield* loadCheckpoint("models/tiny-llama")
 * ckpt.weights.layers.length // => ckpt.config.numHiddenLayers
 * ```
 *
 * @category loading
 */
export interface LoadOptions {
  /** Called after each tensor is read (phase "read"). */
  readonly onProgress?: OnProgress
  /**
   * Quantize the float weight matrices at load time (Weights.quantizeWeights: ggml's reference
   * quantizers): less memory, and the quantized values are what every backend then computes with.
   */
  readonly quantize?: Extract<QuantType, "Q8_0" | "Q4_0">
}

export const loadCheckpoint = (dir: string, options: LoadOptions = {}): Effect.Effect<Checkpoint, ConfigError | CheckpointError | GgufError> =>
  Effect.gen(function* () {
    const stat = yield* Effect.try({
      try: () => statSync(dir, { throwIfNoEntry: false }),
      catch: (cause) => checkpointError(dir, `cannot stat (${errorText(cause)})`)
    })
    const expected = "expected a model directory (HF layout: config.json and model.safetensors or model.safetensors.index.json) or a .gguf file"
    if (stat === undefined) return yield* checkpointError(dir, `no such file or directory; ${expected}`)
    if (stat.isFile() && (dir.endsWith(".gguf") || (yield* hasGgufMagic(dir)))) {
      const checkpoint = yield* loadGguf(dir, options.onProgress)
      return options.quantize === undefined ? checkpoint : { ...checkpoint, weights: quantizeWeights(checkpoint.config, checkpoint.weights, options.quantize) }
    }
    if (!stat.isDirectory()) return yield* checkpointError(dir, `${stat.isFile() ? `a file of ${stat.size} bytes` : "not a directory"}, not a model; ${expected}`)
    if (!(yield* exists(join(dir, "config.json")))) return yield* checkpointError(dir, `a directory without config.json, not a model; ${expected}`)
    const config = yield* readConfigFile(join(dir, "config.json"))
    const needed = new Set(expectedTensors(config).map((e) => e.name))

    const single = join(dir, "model.safetensors")
    const indexFile = join(dir, "model.safetensors.index.json")
    let tensors: ReadonlyMap<string, RawTensor>
    let fileOf: string | ((name: string) => string)
    if (yield* exists(single)) {
      const progress = yield* progressOver([single], needed, options.onProgress)
      tensors = yield* readSafetensors(single, needed, progress?.(single))
      fileOf = single
    } else if (yield* exists(indexFile)) {
      const sharded = yield* readSharded(dir, indexFile, needed, options.onProgress)
      tensors = sharded.tensors
      fileOf = sharded.fileOf
    } else {
      return yield* checkpointError(single, `no weights: neither model.safetensors nor model.safetensors.index.json in ${dir}`)
    }
    const assembled = yield* assembleWeights(config, tensors, fileOf)
    const weights = options.quantize === undefined ? assembled : quantizeWeights(config, assembled, options.quantize)

    const tokenizer = (yield* exists(join(dir, "tokenizer.json"))) ? yield* loadTokenizer(dir) : undefined
    const { eosTokenIds, generation } = yield* readGenerationConfig(join(dir, "generation_config.json"), config)
    const { chatTemplate, specialTokens } = yield* readHfChatParts(dir)
    const checkpoint: Checkpoint = {
      path: dir,
      dir,
      config,
      weights,
      tokenizer,
      eosTokenIds,
      generation,
      ...(chatTemplate === undefined ? {} : { chatTemplate }),
      specialTokens
    }
    return checkpoint
  })
