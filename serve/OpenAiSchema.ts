/**
 * The request bodies of `POST /v1/completions` and `POST /v1/chat/completions`, as Effect Schemas, and
 * their decoding into typed values or an ApiError (400) that names the first bad field.
 *
 * Accepted: OpenAI's fields that this server honours, llama.cpp's sampling extensions (`top_k`, `min_p`,
 * `repeat_penalty`) and the `sirius` extension object (mode, sparsity and correction per request; `events`
 * streams Sirius's drafts and verifications). Fields that would change the output but are not supported
 * (`n` > 1, `best_of` > 1, `echo`, `suffix`, `logit_bias`, tools, JSON response formats, presence and
 * frequency penalties) are refused by name rather than silently ignored; any other unknown field is
 * ignored, as OpenAI-compatible servers do. Unknown keys inside `sirius` are refused: it is ours.
 *
 * Ranges checked here are the HTTP contract; the engine re-checks everything (Request.validate) and its
 * GenerationError is mapped to a 400 as well. Turning a decoded body into a generation request is
 * RequestPlan.ts's.
 */
import { Effect, Schema } from "effect"
import { describeSchemaError, quote } from "../src/Config.ts"
import { type ApiError, invalid } from "./ApiError.ts"

const optional = <S extends Schema.Top>(s: S) => Schema.optionalKey(Schema.NullOr(s))
const Int = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))
const AtLeast = (minimum: number) => Schema.Int.check(Schema.isGreaterThanOrEqualTo(minimum))
const Unit = Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 1 }))
const Positive = Schema.Finite.check(Schema.isGreaterThan(0))
const TokenIds = Schema.Array(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)))

export const siriusKeys = ["mode", "sparsity", "density", "period", "threshold", "tree_width", "acceptance", "events"] as const

/** The `sirius` extension: per-request mode, sparsity and correction (the server's flags are the defaults). */
export const SiriusOptions = Schema.Struct({
  mode: optional(Schema.Literals(["full", "sparse", "sirius"])),
  sparsity: optional(Schema.Literals(["coarse", "fine", "fine-threshold"])),
  density: optional(Positive.check(Schema.isLessThanOrEqualTo(1))),
  period: optional(Int(1, 256)),
  threshold: optional(Unit),
  tree_width: optional(Int(1, 64)),
  acceptance: optional(Schema.Literals(["threshold", "greedy-exact", "speculative"])),
  events: optional(Schema.Boolean)
})
export type SiriusOptions = typeof SiriusOptions.Type

const common = {
  model: optional(Schema.String),
  max_tokens: optional(AtLeast(1)),
  temperature: optional(Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 100 }))),
  top_p: optional(Positive.check(Schema.isLessThanOrEqualTo(1))),
  top_k: optional(AtLeast(0)),
  min_p: optional(Unit),
  repeat_penalty: optional(Positive.check(Schema.isLessThanOrEqualTo(100))),
  seed: optional(AtLeast(0)),
  stop: optional(Schema.Union([Schema.String, Schema.Array(Schema.String)])),
  stream: optional(Schema.Boolean),
  stream_options: optional(Schema.Struct({ include_usage: optional(Schema.Boolean) })),
  sirius: optional(SiriusOptions)
}

export const CompletionRequest = Schema.Struct({
  ...common,
  /** Text, one text in a list, token ids, or one list of token ids. */
  prompt: Schema.Union([Schema.String, Schema.Array(Schema.String), TokenIds, Schema.Array(TokenIds)]),
  /** Log-probabilities of each token and this many alternatives. */
  logprobs: optional(Int(0, 20))
})
export type CompletionRequest = typeof CompletionRequest.Type

const ContentPart = Schema.Struct({ type: Schema.String, text: Schema.optionalKey(Schema.String) })

export const ChatMessage = Schema.Struct({
  role: Schema.Literals(["system", "developer", "user", "assistant", "tool"]),
  content: optional(Schema.Union([Schema.String, Schema.Array(ContentPart)]))
})
export type ChatMessage = typeof ChatMessage.Type

export const ChatRequest = Schema.Struct({
  ...common,
  messages: Schema.Array(ChatMessage).check(Schema.isMinLength(1)),
  max_completion_tokens: optional(AtLeast(1)),
  logprobs: optional(Schema.Boolean),
  top_logprobs: optional(Int(0, 20))
})
export type ChatRequest = typeof ChatRequest.Type

/** Fields that would change the output, that this server does not implement: refused, with why. */
const unsupported: ReadonlyArray<readonly [string, (v: unknown) => boolean, string]> = [
  ["n", (v) => v !== 1, "only one choice per request is supported (n must be 1)"],
  ["best_of", (v) => v !== 1, "best_of is not supported (it must be 1)"],
  ["echo", (v) => v !== false, "echo is not supported"],
  ["suffix", (v) => v !== "", "suffix (insertion) is not supported"],
  ["logit_bias", (v) => typeof v !== "object" || Object.keys(v as object).length > 0, "logit_bias is not supported"],
  ["presence_penalty", (v) => v !== 0, "presence_penalty is not supported (use repeat_penalty)"],
  ["frequency_penalty", (v) => v !== 0, "frequency_penalty is not supported (use repeat_penalty)"],
  ["tools", (v) => !Array.isArray(v) || v.length > 0, "tools are not supported"],
  ["functions", (v) => !Array.isArray(v) || v.length > 0, "functions are not supported"],
  ["tool_choice", (v) => v !== "none" && v !== "auto", "tool_choice is not supported"],
  ["response_format", (v) => (v as { type?: unknown }).type !== "text", "only the text response format is supported"]
]

/** Decode a JSON body against a request schema; the first problem is a 400 naming its field. */
const decode = <S extends Schema.Top & { readonly DecodingServices: never }>(schema: S, json: unknown): Effect.Effect<S["Type"], ApiError> => {
  if (typeof json !== "object" || json === null || Array.isArray(json))
    return Effect.fail(invalid(null, `the request body must be a JSON object (got ${quote(json)})`))
  const record = json as Record<string, unknown>
  for (const [field, refused, why] of unsupported) {
    const value = record[field]
    if (value !== undefined && value !== null && refused(value)) return Effect.fail(invalid(field, `${field}: ${why} (got ${quote(value)})`, "unsupported_parameter"))
  }
  const sirius = record["sirius"]
  if (typeof sirius === "object" && sirius !== null && !Array.isArray(sirius)) {
    const unknown = Object.keys(sirius).find((k) => !(siriusKeys as ReadonlyArray<string>).includes(k))
    if (unknown !== undefined) return Effect.fail(invalid(`sirius.${unknown}`, `sirius.${unknown}: unknown option (known: ${siriusKeys.join(", ")})`))
  }
  return Schema.decodeUnknownEffect(schema)(json).pipe(
    Effect.mapError((error) => {
      const described = describeSchemaError(error, json)
      const field = described.field
      const message = described.message === "missing key" ? "is required" : described.message
      return invalid(field === "" ? null : field, field === "" ? message : `${field}: ${message}`)
    })
  ) as Effect.Effect<S["Type"], ApiError>
}

export const decodeCompletion = (json: unknown) => decode(CompletionRequest, json)
export const decodeChat = (json: unknown) => decode(ChatRequest, json)
