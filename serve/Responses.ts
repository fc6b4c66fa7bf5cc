/**
 * The response bodies of the two generation endpoints in OpenAI's shapes: `text_completion` and
 * `chat.completion` objects, their streamed chunks (`chat.completion.chunk`; completions stream
 * `text_completion` objects), the final usage chunk (`choices: []`), log-probabilities in each endpoint's
 * format, and this server's additions: `sirius` (the request's Sirius or sparse stats, snake_case; absent in
 * full mode), `timings` (llama.cpp's names, every mode) and the named Sirius events.
 *
 * Pure functions from the engine's events and stats to JSON values; sending them is Completions.ts's.
 */
import { randomUUID } from "node:crypto"
import type { Event, GenerationStats, SiriusStats, StopReason, TokenLogprob } from "../src/Request.ts"
import type { SparsityOptions } from "../src/Sparsity.ts"
import type { TextTokenizer } from "../src/Tokenizer.ts"
import type { Mode } from "./RequestPlan.ts"

/** What every object of one response shares. */
export interface Meta {
  readonly id: string
  readonly created: number
  readonly model: string
}

export const meta = (kind: "completion" | "chat", model: string): Meta => ({
  id: `${kind === "chat" ? "chatcmpl" : "cmpl"}-${randomUUID().replaceAll("-", "")}`,
  created: Math.floor(Date.now() / 1000),
  model
})

export type FinishReason = "stop" | "length"

/** An EOS or a stop string is "stop"; the token budget is "length". */
export const finishReason = (reason: StopReason): FinishReason => (reason === "length" ? "length" : "stop")

export const usage = (stats: GenerationStats) => ({
  prompt_tokens: stats.promptTokens,
  completion_tokens: stats.generatedTokens,
  total_tokens: stats.promptTokens + stats.generatedTokens
})

/** llama.cpp's `timings`, plus time to first token and the backend. */
export const timings = (stats: GenerationStats) => ({
  prompt_n: stats.promptTokens,
  prompt_ms: stats.prefillMs,
  predicted_n: stats.generatedTokens,
  predicted_ms: stats.decodeMs,
  predicted_per_second: stats.tokensPerSecond,
  time_to_first_token_ms: stats.timeToFirstTokenMs,
  backend: stats.backend
})

/** The request's sparse or Sirius stats in snake_case; undefined in full mode. */
export const siriusStats = (mode: Mode, sparsity: SparsityOptions | undefined, stats: GenerationStats | SiriusStats) => {
  if (mode === "full" || sparsity === undefined) return undefined
  const base = {
    mode,
    sparsity: sparsity.granularity,
    density: sparsity.density,
    parameter_density: stats.parameterDensity,
    full_forwards: stats.fullForwards,
    sparse_forwards: stats.sparseForwards
  }
  if (!("aal" in stats)) return base
  return {
    ...base,
    aal: stats.aal,
    effective_density: stats.effectiveDensity,
    apu: stats.apu,
    correction_period: stats.correctionPeriod,
    tree_width: stats.treeWidth,
    verifications: stats.verifications,
    rollbacks: stats.rollbacks,
    mean_rollback_length: stats.meanRollbackLength,
    corrected_tokens: stats.correctedTokens,
    corrected_fraction: stats.correctedFraction,
    draft_ms: stats.draftMs,
    verify_ms: stats.verifyMs
  }
}

// ---------------------------------------------------------------------------------------------------
// Log-probabilities

/** A committed token's log-probability with its text and its alternatives' texts. */
export interface TokenEntry {
  readonly text: string
  readonly logprob: number
  readonly top: ReadonlyArray<{ readonly text: string; readonly logprob: number }>
}

/** A token's text: what the tokenizer decodes it to alone (special tokens decode to ""); its id without one. */
export const tokenText = (tokenizer: TextTokenizer | undefined, id: number): string => (tokenizer === undefined ? String(id) : tokenizer.decode([id]))

export const tokenEntry = (tokenizer: TextTokenizer | undefined, token: number, lp: TokenLogprob): TokenEntry => ({
  text: tokenText(tokenizer, token),
  logprob: lp.logprob,
  top: lp.top.map((t) => ({ text: tokenText(tokenizer, t.token), logprob: t.logprob }))
})

/** The completions format: parallel lists; `text_offset` counts characters of the token texts before each. */
export const completionLogprobs = (entries: ReadonlyArray<TokenEntry>, offset = 0) => {
  const text_offset: Array<number> = []
  let at = offset
  for (const e of entries) {
    text_offset.push(at)
    at += e.text.length
  }
  return {
    tokens: entries.map((e) => e.text),
    token_logprobs: entries.map((e) => e.logprob),
    top_logprobs: entries.map((e) => Object.fromEntries(e.top.map((t) => [t.text, t.logprob]))),
    text_offset
  }
}

const utf8 = (text: string) => [...Buffer.from(text, "utf8")]

/** The chat format: one object per token with its UTF-8 bytes and its alternatives. */
export const chatLogprobs = (entries: ReadonlyArray<TokenEntry>) => ({
  content: entries.map((e) => ({
    token: e.text,
    logprob: e.logprob,
    bytes: utf8(e.text),
    top_logprobs: e.top.map((t) => ({ token: t.text, logprob: t.logprob, bytes: utf8(t.text) }))
  })),
  refusal: null
})

// ---------------------------------------------------------------------------------------------------
// Whole responses

/** What a finished generation adds to a response: usage, timings and, when sparse, the Sirius stats. */
export interface Extras {
  readonly usage: ReturnType<typeof usage>
  readonly timings: ReturnType<typeof timings>
  readonly sirius: ReturnType<typeof siriusStats>
}

export const extras = (mode: Mode, sparsity: SparsityOptions | undefined, stats: GenerationStats | SiriusStats): Extras => ({
  usage: usage(stats),
  timings: timings(stats),
  sirius: siriusStats(mode, sparsity, stats)
})

const withSirius = (x: Extras) => (x.sirius === undefined ? {} : { sirius: x.sirius })

export const completion = (m: Meta, text: string, finish: FinishReason, logprobs: ReadonlyArray<TokenEntry> | undefined, x: Extras) => ({
  id: m.id,
  object: "text_completion",
  created: m.created,
  model: m.model,
  choices: [{ index: 0, text, logprobs: logprobs === undefined ? null : completionLogprobs(logprobs), finish_reason: finish }],
  usage: x.usage,
  timings: x.timings,
  ...withSirius(x)
})

export const chat = (m: Meta, text: string, finish: FinishReason, logprobs: ReadonlyArray<TokenEntry> | undefined, x: Extras) => ({
  id: m.id,
  object: "chat.completion",
  created: m.created,
  model: m.model,
  choices: [{ index: 0, message: { role: "assistant", content: text }, logprobs: logprobs === undefined ? null : chatLogprobs(logprobs), finish_reason: finish }],
  usage: x.usage,
  timings: x.timings,
  ...withSirius(x)
})

// ---------------------------------------------------------------------------------------------------
// Streamed chunks

/** One streamed chunk of either endpoint; with include_usage every chunk but the last has `usage: null`, as OpenAI's do. */
export const chunk = (
  kind: "completion" | "chat",
  m: Meta,
  part: { readonly text?: string; readonly role?: boolean; readonly logprobs?: ReadonlyArray<TokenEntry>; readonly offset?: number; readonly finish?: FinishReason },
  includeUsage: boolean,
  x?: Extras
) => {
  const finish = part.finish ?? null
  const choice =
    kind === "chat"
      ? {
          index: 0,
          delta: part.role === true ? { role: "assistant", content: part.text ?? "" } : part.text === undefined ? {} : { content: part.text },
          logprobs: part.logprobs === undefined ? null : chatLogprobs(part.logprobs),
          finish_reason: finish
        }
      : { index: 0, text: part.text ?? "", logprobs: part.logprobs === undefined ? null : completionLogprobs(part.logprobs, part.offset), finish_reason: finish }
  return {
    id: m.id,
    object: kind === "chat" ? "chat.completion.chunk" : "text_completion",
    created: m.created,
    model: m.model,
    choices: [choice],
    ...(includeUsage ? { usage: null } : {}),
    ...(x === undefined ? {} : { timings: x.timings, ...withSirius(x) })
  }
}

/** The last chunk when `stream_options.include_usage` is set: no choices, the usage. */
export const usageChunk = (kind: "completion" | "chat", m: Meta, x: Extras) => ({
  id: m.id,
  object: kind === "chat" ? "chat.completion.chunk" : "text_completion",
  created: m.created,
  model: m.model,
  choices: [],
  usage: x.usage
})

// ---------------------------------------------------------------------------------------------------
// Sirius events (opt-in: `sirius: { events: true }` on a streaming Sirius request)

/**
 * The engine's Drafted and Verified events as named SSE events: `sirius.drafted` per draft,
 * `sirius.verified` per verification and, when it rejected a draft, `sirius.rolled_back`. Positions are
 * absolute (the prompt included). Each carries `choices: []`: the `openai` client yields named events'
 * data like chunks, and code reading `chunk.choices[0]?.delta` passes over them.
 */
export const siriusEvents = (m: Meta, e: Event, tokenizer: TextTokenizer | undefined): ReadonlyArray<readonly [string, object]> => {
  const head = (object: string) => ({ id: m.id, object, created: m.created, model: m.model, choices: [] })
  if (e._tag === "Drafted")
    return [
      [
        "sirius.drafted",
        {
          ...head("sirius.drafted"),
          token: e.token,
          text: tokenText(tokenizer, e.token),
          position: e.position,
          ...(e.node === undefined ? {} : { node: e.node, parent: e.parent })
        }
      ]
    ]
  if (e._tag !== "Verified") return []
  const verified = [
    "sirius.verified",
    { ...head("sirius.verified"), start: e.start, drafts: e.drafts, accepted: e.accepted, rollback: e.rollback, token: e.token, text: tokenText(tokenizer, e.token), ms: e.ms }
  ] as const
  if (e.rollback === 0) return [verified]
  // a chain window's drafts are in order, so the rejected ones are the tail; a tree's are nodes
  const chain = e.drafts.length === e.accepted + e.rollback
  return [
    verified,
    [
      "sirius.rolled_back",
      { ...head("sirius.rolled_back"), position: e.start + 1 + e.accepted, count: e.rollback, ...(chain ? { tokens: e.drafts.slice(e.accepted) } : {}) }
    ]
  ]
}
