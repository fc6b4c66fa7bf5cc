/**
 * Checkpoint: load an HF Llama model directory into a LlamaConfig, ModelWeights and tokenizer.
 *
 * A directory holds:
 * - `config.json` (required; Config.ts decodes it);
 * - `model.safetensors`, or `model.safetensors.index.json` (`{ weight_map: { name: shardFile } }`) and
 *   its shards, which must lie inside the directory;
 * - `tokenizer.json` and `tokenizer_config.json` (optional: without them the model runs on token ids);
 * - `generation_config.json` (optional: extra `eos_token_id`s, `max_new_tokens`).
 *
 * Only the tensors the model needs are read (Weights.expectedTensors), each into its own buffer. Every
 * failure is a typed ConfigError or CheckpointError naming the file (and tensor or field), never a throw.
 *
 * This module does not make weights resident on a backend (Model.ts does).
 */
import { Effect, Schema } from "effect"
import { existsSync, readFileSync, statSync } from "node:fs"
import { isAbsolute, join, resolve, sep } from "node:path"
import { ConfigError, describeSchemaError, errorText, normaliseTokenIds, readConfigFile, readJsonFile, TokenIds } from "./Config.ts"
import type { LlamaConfig } from "./Config.ts"
import type { OnProgress } from "./LoadProgress.ts"
import { CheckpointError, readSafetensors, readSafetensorsHeader } from "./Safetensors.ts"
import type { RawTensor } from "./Tensor.ts"
import { loadTokenizer } from "./Tokenizer.ts"
import type { TextTokenizer } from "./Tokenizer.ts"
import { assembleWeights, expectedTensors } from "./Weights.ts"
import type { ModelWeights } from "./Weights.ts"

export { CheckpointError } from "./Safetensors.ts"

export interface Checkpoint {
  readonly dir: string
  readonly config: LlamaConfig
  readonly weights: ModelWeights
  /** undefined when the directory has no tokenizer.json: the model then works only with token ids. */
  readonly tokenizer: TextTokenizer | undefined
  /** config.json's eos ids united with generation_config.json's. */
  readonly eosTokenIds: ReadonlyArray<number>
  readonly generation: { readonly maxNewTokens?: number }
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

/**
 * Load a model directory.
 *
 * **When to use**: the entry point from files on disk to a Model (`Model.fromCheckpoint`).
 *
 * **Details**: reads config.json, then model.safetensors or model.safetensors.index.json and its shards
 * (only the tensors the model needs), tokenizer.json when present, and generation_config.json when
 * present (its eos ids are united with config.json's). `onProgress` sees every tensor read. Fails with a ConfigError or CheckpointError
 * naming the file, and the tensor or field when there is one.
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
}

export const loadCheckpoint = (dir: string, options: LoadOptions = {}): Effect.Effect<Checkpoint, ConfigError | CheckpointError> =>
  Effect.gen(function* () {
    const stat = yield* Effect.try({
      try: () => statSync(dir, { throwIfNoEntry: false }),
      catch: (cause) => checkpointError(dir, `cannot stat (${errorText(cause)})`)
    })
    const expected = "expected a model directory (HF layout: config.json and model.safetensors or model.safetensors.index.json)"
    if (stat === undefined) return yield* checkpointError(dir, `no such file or directory; ${expected}`)
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
    const weights = yield* assembleWeights(config, tensors, fileOf)

    const tokenizer = (yield* exists(join(dir, "tokenizer.json"))) ? yield* loadTokenizer(dir) : undefined
    const { eosTokenIds, generation } = yield* readGenerationConfig(join(dir, "generation_config.json"), config)
    const checkpoint: Checkpoint = { dir, config, weights, tokenizer, eosTokenIds, generation }
    return checkpoint
  })
