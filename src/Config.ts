/**
 * LlamaConfig: the model hyperparameters, HF names camelCased, decoded from config.json.
 *
 * Decoding happens once, at the boundary: an Effect Schema checks the types of the raw JSON, then
 * `decodeConfig` checks the relations between fields (KV heads divide heads, head_dim is even, the rope
 * type is one we implement, ...) and applies HF's defaults. Everything downstream trusts a LlamaConfig.
 *
 * Both RoPE layouts are accepted (docs/formats.md): the older top-level `rope_theta` +
 * `rope_scaling`, and transformers v5's `rope_parameters`; when both are present `rope_parameters` wins.
 *
 * Two architectures share the one LlamaConfig: `llama` (Llama 2/3.x, TinyLlama, SmolLM2, Mistral-style
 * dense models) and `qwen2` (the same block with biases on q/k/v, `model_type: "qwen2"`). GGUF files
 * are decoded to the same LlamaConfig by GgufCheckpoint.ts, which reuses `decodeConfig`.
 *
 * This module does not read weights or tokenizers (see Checkpoint.ts), and it accepts only what the
 * forward pass implements: `hidden_act: "silu"`, no biases except Qwen2's q/k/v biases, rope types
 * "default" and "llama3" (plus llama.cpp's per-frequency factors, from GGUF), no sliding window.
 */
import { Effect, Schema } from "effect"
import type { SchemaIssue } from "effect"
import { readFileSync } from "node:fs"

/** Llama 3 RoPE frequency scaling (docs/formats.md). */
export interface Llama3RopeScaling {
  readonly ropeType: "llama3"
  readonly factor: number
  readonly lowFreqFactor: number
  readonly highFreqFactor: number
  readonly originalMaxPositionEmbeddings: number
}

/**
 * RoPE frequency divisors as llama.cpp stores them (the `rope_freqs.weight` tensor of a GGUF with
 * Llama 3 scaling): invFreq_i = base^(−2i/head_dim) / factors[i], i < head_dim/2.
 */
export interface RopeFreqFactors {
  readonly ropeType: "freq_factors"
  readonly factors: ReadonlyArray<number>
}

/** The architectures sirius-ts runs: HF `model_type` and GGUF `general.architecture` alike. */
export type Architecture = "llama" | "qwen2"
export const architectures: ReadonlyArray<Architecture> = ["llama", "qwen2"]

export interface LlamaConfig {
  /** "llama" or "qwen2" (q/k/v biases; GGUF Q/K rows not permuted). */
  readonly architecture: Architecture
  readonly vocabSize: number
  readonly hiddenSize: number
  readonly intermediateSize: number
  readonly numHiddenLayers: number
  readonly numAttentionHeads: number
  readonly numKeyValueHeads: number
  /** May differ from hiddenSize / numAttentionHeads. */
  readonly headDim: number
  readonly maxPositionEmbeddings: number
  readonly rmsNormEps: number
  readonly ropeTheta: number
  /** undefined = plain RoPE ("default"). Per-frequency factors come from GGUF files only. */
  readonly ropeScaling: Llama3RopeScaling | RopeFreqFactors | undefined
  readonly tieWordEmbeddings: boolean
  /** q_proj, k_proj and v_proj carry bias vectors (always for qwen2, never for llama). */
  readonly attentionBias: boolean
  readonly bosTokenId: number | undefined
  /** config.json's eos_token_id normalised to a list (int or list in the file). */
  readonly eosTokenIds: ReadonlyArray<number>
}

/**
 * config.json (or generation_config.json) could not be read or describes a model we cannot run.
 *
 * `field` is the JSON path of the offending field (`"rope_scaling.rope_type"`), or `""` when the file
 * as a whole is at fault (missing, not JSON, not an object).
 */
export class ConfigError extends Schema.TaggedError<ConfigError>()("ConfigError", {
  file: Schema.String,
  field: Schema.String,
  message: Schema.String
}) {}

/** Largest accepted dimension (hidden size, heads, layers, context, ...): nothing unbounded gets allocated. */
export const maxDimension = 1 << 20
/** Largest accepted vocabulary. */
export const maxVocabSize = 1 << 22

// ---------------------------------------------------------------------------------------------------
// The raw JSON, as HF writes it (types only; relations are checked in decodeConfig).
// ---------------------------------------------------------------------------------------------------

const Dimension = Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: maxDimension }))
const VocabSize = Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: maxVocabSize }))
const TokenId = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
const Positive = Schema.Finite.check(Schema.isGreaterThan(0))
/** A token id or a list of them (HF writes both). */
export const TokenIds = Schema.Union([TokenId, Schema.Array(TokenId)])

const RopeParameters = Schema.Struct({
  rope_type: Schema.optionalKey(Schema.String),
  /** Older spelling of rope_type. */
  type: Schema.optionalKey(Schema.String),
  rope_theta: Schema.optionalKey(Positive),
  factor: Schema.optionalKey(Positive),
  low_freq_factor: Schema.optionalKey(Positive),
  high_freq_factor: Schema.optionalKey(Positive),
  original_max_position_embeddings: Schema.optionalKey(Dimension)
})
type RopeParameters = typeof RopeParameters.Type

const RawConfig = Schema.Struct({
  model_type: Schema.optionalKey(Schema.String),
  vocab_size: VocabSize,
  hidden_size: Dimension,
  intermediate_size: Dimension,
  num_hidden_layers: Dimension,
  num_attention_heads: Dimension,
  num_key_value_heads: Schema.optionalKey(Schema.NullOr(Dimension)),
  head_dim: Schema.optionalKey(Schema.NullOr(Dimension)),
  hidden_act: Schema.optionalKey(Schema.String),
  max_position_embeddings: Schema.optionalKey(Dimension),
  rms_norm_eps: Schema.optionalKey(Positive),
  rope_theta: Schema.optionalKey(Positive),
  rope_scaling: Schema.optionalKey(Schema.NullOr(RopeParameters)),
  rope_parameters: Schema.optionalKey(Schema.NullOr(RopeParameters)),
  tie_word_embeddings: Schema.optionalKey(Schema.Boolean),
  attention_bias: Schema.optionalKey(Schema.Boolean),
  mlp_bias: Schema.optionalKey(Schema.Boolean),
  // Qwen2's sliding-window attention (transformers Qwen2Config): only full attention is implemented.
  use_sliding_window: Schema.optionalKey(Schema.NullOr(Schema.Boolean)),
  layer_types: Schema.optionalKey(Schema.NullOr(Schema.Array(Schema.String))),
  bos_token_id: Schema.optionalKey(Schema.NullOr(TokenId)),
  eos_token_id: Schema.optionalKey(Schema.NullOr(TokenIds))
})

// ---------------------------------------------------------------------------------------------------
// Schema errors → (field path, message)
// ---------------------------------------------------------------------------------------------------

const issuePath = (issue: SchemaIssue.Issue): ReadonlyArray<PropertyKey> => {
  switch (issue._tag) {
    case "Pointer":
      return [...issue.path, ...issuePath(issue.issue)]
    case "Composite":
      return issuePath(issue.issues[0])
    case "Filter":
    case "Encoding":
      return issuePath(issue.issue)
    case "AnyOf":
      // A union whose members all failed on type has no deeper path; one partial match does.
      return issue.issues.length === 1 ? issuePath(issue.issues[0]!) : []
    default:
      return []
  }
}

/**
 * The first problem of a Schema decoding error, as a dotted field path (`"rope_scaling.factor"`,
 * `"shape.1"`) and a one-line description that quotes the offending value.
 *
 * Shared by the boundary decoders of Config, Safetensors and Checkpoint.
 */
export const describeSchemaError = (error: Schema.SchemaError, input: unknown): { readonly field: string; readonly message: string } => {
  const path = issuePath(error.issue)
  let value: unknown = input
  for (const key of path) value = typeof value === "object" && value !== null ? (value as Record<PropertyKey, unknown>)[key] : undefined
  const first = (error.message.split("\n")[0] ?? "").trim()
  const what = first.length > 0 ? first.charAt(0).toLowerCase() + first.slice(1) : "invalid value"
  const got = value === undefined ? "" : ` (got ${quote(value)})`
  return { field: path.map(String).join("."), message: `${what}${got}` }
}

/** A short JSON rendering of a value for error messages. */
export const quote = (value: unknown): string => {
  let text: string
  try {
    text = JSON.stringify(value) ?? String(value)
  } catch {
    text = String(value)
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text
}

// ---------------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------------

/** Normalise HF's `eos_token_id` (int, list, null or absent) to a duplicate-free list. */
export const normaliseTokenIds = (ids: number | ReadonlyArray<number> | null | undefined): ReadonlyArray<number> =>
  ids === null || ids === undefined ? [] : typeof ids === "number" ? [ids] : [...new Set(ids)]

const decodeRope = (
  file: string,
  raw: typeof RawConfig.Type
): Effect.Effect<{ readonly ropeTheta: number; readonly ropeScaling: Llama3RopeScaling | undefined }, ConfigError> => {
  // transformers v5 folds rope_theta into rope_parameters; prefer it when both layouts are present.
  const fromParameters = raw.rope_parameters !== undefined && raw.rope_parameters !== null
  const key = fromParameters ? "rope_parameters" : "rope_scaling"
  const params: RopeParameters | undefined = (fromParameters ? raw.rope_parameters : raw.rope_scaling) ?? undefined
  const ropeTheta = (fromParameters ? params?.rope_theta : undefined) ?? raw.rope_theta ?? 10000
  if (params === undefined) return Effect.succeed({ ropeTheta, ropeScaling: undefined })
  const typeKey = params.rope_type !== undefined ? "rope_type" : "type"
  const ropeType = params.rope_type ?? params.type ?? "default"
  const fail = (field: string, message: string) => Effect.fail(new ConfigError({ file, field, message: `${file}: field "${field}" ${message}` }))
  if (ropeType === "default") return Effect.succeed({ ropeTheta, ropeScaling: undefined })
  if (ropeType !== "llama3") return fail(`${key}.${typeKey}`, `has unsupported rope type ${quote(ropeType)} (supported: "default", "llama3")`)
  const { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } = params
  if (factor === undefined) return fail(`${key}.factor`, `is required for rope type "llama3"`)
  if (low_freq_factor === undefined) return fail(`${key}.low_freq_factor`, `is required for rope type "llama3"`)
  if (high_freq_factor === undefined) return fail(`${key}.high_freq_factor`, `is required for rope type "llama3"`)
  if (original_max_position_embeddings === undefined)
    return fail(`${key}.original_max_position_embeddings`, `is required for rope type "llama3"`)
  // The smooth interpolation divides by (high - low).
  if (!(high_freq_factor > low_freq_factor))
    return fail(`${key}.high_freq_factor`, `must exceed low_freq_factor (got ${high_freq_factor} for ${low_freq_factor})`)
  return Effect.succeed({
    ropeTheta,
    ropeScaling: {
      ropeType: "llama3",
      factor,
      lowFreqFactor: low_freq_factor,
      highFreqFactor: high_freq_factor,
      originalMaxPositionEmbeddings: original_max_position_embeddings
    }
  })
}

/**
 * Decode a parsed config.json into a LlamaConfig, applying HF's defaults.
 *
 * **When to use**: at the boundary, on `JSON.parse` of a config.json (`readConfigFile` does both).
 *
 * **Details**: accepts both RoPE layouts; `head_dim` defaults to hidden/heads (which must then be an
 * integer), `num_key_value_heads` to the head count, `tie_word_embeddings` to false, `rms_norm_eps` to
 * 1e-6, `rope_theta` to 10000, `max_position_embeddings` to 2048; `eos_token_id` (int or list) becomes
 * `eosTokenIds`. Fails with a ConfigError whose `field` names the offending field.
 *
 * **Example**
 * ```ts
 * Effect.runSync(decodeConfig({ vocab_size: 32, hidden_size: 8, intermediate_size: 16,
 *   num_hidden_layers: 1, num_attention_heads: 2 }, "config.json")).headDim // => 4
 * ```
 *
 * @category decoding
 */
export const decodeConfig = Effect.fn("Config.decodeConfig")(function* (json: unknown, file: string) {
  const fail = (field: string, message: string) => new ConfigError({ file, field, message: `${file}: field "${field}" ${message}` })
  if (typeof json !== "object" || json === null || Array.isArray(json))
    return yield* new ConfigError({ file, field: "", message: `${file}: expected a JSON object (got ${quote(json)})` })
  const raw = yield* Schema.decodeUnknownEffect(RawConfig)(json).pipe(
    Effect.mapError((error) => {
      const { field, message } = describeSchemaError(error, json)
      return fail(field, message)
    })
  )
  const architecture = architectures.find((a) => a === (raw.model_type ?? "llama"))
  if (architecture === undefined)
    return yield* fail("model_type", `must be one of ${architectures.map((a) => `"${a}"`).join(", ")} (got ${quote(raw.model_type)})`)
  if (raw.hidden_act !== undefined && raw.hidden_act !== "silu")
    return yield* fail("hidden_act", `must be "silu" (got ${quote(raw.hidden_act)})`)
  // Llama's attention_bias also puts a bias on o_proj; Qwen2 has q/k/v biases unconditionally and no such field.
  if (architecture === "llama" && raw.attention_bias === true) return yield* fail("attention_bias", "must be false: Llama attention biases are not supported")
  if (raw.mlp_bias === true) return yield* fail("mlp_bias", "must be false: MLP biases are not supported")
  if (raw.use_sliding_window === true)
    return yield* fail("use_sliding_window", "must be false: sliding-window attention is not supported (every layer attends to the full context)")
  const sliding = raw.layer_types?.findIndex((t) => t !== "full_attention") ?? -1
  if (sliding >= 0)
    return yield* fail(`layer_types.${sliding}`, `must be "full_attention": only full attention is supported (got ${quote(raw.layer_types![sliding])})`)

  const numAttentionHeads = raw.num_attention_heads
  const numKeyValueHeads = raw.num_key_value_heads ?? numAttentionHeads
  if (numAttentionHeads % numKeyValueHeads !== 0)
    return yield* fail("num_key_value_heads", `must divide num_attention_heads (got ${numKeyValueHeads} for ${numAttentionHeads})`)
  const explicitHeadDim = raw.head_dim ?? undefined
  if (explicitHeadDim === undefined && raw.hidden_size % numAttentionHeads !== 0)
    return yield* fail(
      "head_dim",
      `is absent and hidden_size / num_attention_heads is not an integer (${raw.hidden_size} / ${numAttentionHeads})`
    )
  const headDim = explicitHeadDim ?? raw.hidden_size / numAttentionHeads
  if (headDim % 2 !== 0) return yield* fail("head_dim", `must be even: RoPE rotates pairs (got ${headDim})`)
  if (numAttentionHeads * headDim > maxDimension)
    return yield* fail("head_dim", `gives num_attention_heads · head_dim = ${numAttentionHeads * headDim} > ${maxDimension}`)

  const vocabSize = raw.vocab_size
  const eosTokenIds = normaliseTokenIds(raw.eos_token_id)
  const badEos = eosTokenIds.find((id) => id >= vocabSize)
  if (badEos !== undefined) return yield* fail("eos_token_id", `must be below vocab_size (got ${badEos} for ${vocabSize})`)
  const bosTokenId = raw.bos_token_id ?? undefined
  if (bosTokenId !== undefined && bosTokenId >= vocabSize)
    return yield* fail("bos_token_id", `must be below vocab_size (got ${bosTokenId} for ${vocabSize})`)

  const { ropeTheta, ropeScaling } = yield* decodeRope(file, raw)
  // llama.cpp's qwen2 graph has no frequency factors, so a Qwen2 GGUF could not carry the scaling.
  if (architecture === "qwen2" && ropeScaling !== undefined)
    return yield* fail(raw.rope_parameters != null ? "rope_parameters.rope_type" : "rope_scaling.rope_type", `must be "default" for qwen2 (got "llama3")`)
  const config: LlamaConfig = {
    architecture,
    vocabSize,
    hiddenSize: raw.hidden_size,
    intermediateSize: raw.intermediate_size,
    numHiddenLayers: raw.num_hidden_layers,
    numAttentionHeads,
    numKeyValueHeads,
    headDim,
    maxPositionEmbeddings: raw.max_position_embeddings ?? 2048,
    rmsNormEps: raw.rms_norm_eps ?? 1e-6,
    ropeTheta,
    ropeScaling,
    tieWordEmbeddings: raw.tie_word_embeddings ?? false,
    attentionBias: architecture === "qwen2",
    bosTokenId,
    eosTokenIds
  }
  return config
})

/**
 * Read and parse a JSON file, failing with a ConfigError (field `""`) when it is missing or not JSON.
 *
 * @category decoding
 */
export const readJsonFile = (path: string): Effect.Effect<unknown, ConfigError> =>
  Effect.try({
    try: () => readFileSync(path, "utf8"),
    catch: (cause) => new ConfigError({ file: path, field: "", message: `${path}: cannot read file (${errorText(cause)})` })
  }).pipe(
    Effect.flatMap((text) =>
      Effect.try({
        try: (): unknown => JSON.parse(text),
        catch: (cause) => new ConfigError({ file: path, field: "", message: `${path}: invalid JSON (${errorText(cause)})` })
      })
    )
  )

/**
 * Read a config.json from disk and decode it.
 *
 * **When to use**: loading a model directory (Checkpoint.loadCheckpoint calls it).
 *
 * **Details**: a missing file or invalid JSON is a ConfigError with field `""`.
 *
 * @category decoding
 */
export const readConfigFile = (path: string): Effect.Effect<LlamaConfig, ConfigError> =>
  readJsonFile(path).pipe(Effect.flatMap((json) => decodeConfig(json, path)))

/** The message of a thrown value (fs errors carry their code in it). */
export const errorText = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))
