/**
 * Request: the one lifecycle every generation mode shares. Full and sparse decoding are Sirius without
 * correction: the same state (KV cache, committed ids, text, counters), the same prefill, the same commit
 * and stop logic, the same stats; only the step after the prefill differs (Generation.ts: decode a token and
 * commit it; Sirius.ts: draft, verify, accept, commit).
 *
 * A request's stream is one `Stream.unfold` over its State: each pull runs at most one forward pass, so
 * interrupting the stream stops the work at the next step and drops the state; the stream's scope owns
 * what the request holds on the backend (coarse sparsity's gathered weights), freed when it ends.
 *
 * Stop rule (one for every mode, docs/sirius.md): only committed tokens stop generation: an EOS
 * id, a stop string in the committed text, or the token budget. Sirius commits only verified tokens.
 */
import { Effect, Schema, Stream } from "effect"
import * as Forward from "./Forward.ts"
import type { KernelError } from "./Kernels.ts"
import * as KvCache from "./KvCache.ts"
import type { Model } from "./Model.ts"
import type { PolicyError } from "./Policy.ts"
import * as Sampler from "./Sampler.ts"
import * as Sparsity from "./Sparsity.ts"
import * as TextStream from "./TextStream.ts"
import type { TextTokenizer } from "./Tokenizer.ts"

/** The request itself is invalid (empty prompt, id out of range, too long for the model, bad option). */
export class GenerationError extends Schema.TaggedError<GenerationError>()("GenerationError", {
  field: Schema.String,
  message: Schema.String
}) {}

export type StopReason = "eos" | "length" | "stop"

/** Where a committed token came from. */
export type TokenSource =
  | "full" // the full model decoded it (the prefill's token, every token of full decoding)
  | "sparse" // the sparse model decoded it (sparse decoding, no correction)
  | "draft" // a sparse draft the full model accepted (Sirius)
  | "correction" // the full model's token where it rejected a draft (Sirius)
  | "bonus" // the full model's token after a fully accepted window (Sirius)

/** Log-probabilities of a committed token under the model that committed it, and its most likely alternatives. */
export interface TokenLogprob {
  readonly logprob: number
  /** The `logprobs` most likely tokens, most likely first. */
  readonly top: ReadonlyArray<{ readonly token: number; readonly logprob: number }>
}

export interface GenerationStats {
  readonly promptTokens: number
  readonly generatedTokens: number
  readonly prefillMs: number
  readonly decodeMs: number
  /** Tokens per second of decoding: the tokens after the first (which the prefill produced) over decodeMs. */
  readonly tokensPerSecond: number
  readonly timeToFirstTokenMs: number
  readonly backend: string
  /** Fraction of all parameters a decode step touches (1 for dense decoding; Sparsity.parameterDensity). */
  readonly parameterDensity: number
  /** Forward passes with the dense MLP (the prefill counts as one) and with the sparse MLP. */
  readonly fullForwards: number
  readonly sparseForwards: number
}

export interface SiriusStats extends GenerationStats {
  readonly correctionPeriod: number
  readonly treeWidth: number
  /** Average advance length: mean of (accepted + 1) over verifications, the last one excluded (as the paper). */
  readonly aal: number
  /** ((k − 1)·parameterDensity + 1) / AAL (docs/sirius.md, metrics). */
  readonly effectiveDensity: number
  /** Average parameters used per token: effectiveDensity × total parameters. */
  readonly apu: number
  readonly verifications: number
  /** Verifications that rejected a draft, and the mean number of drafts they rolled back. */
  readonly rollbacks: number
  readonly meanRollbackLength: number
  /** Committed tokens the full model emitted where it rejected a draft, and their fraction of all committed. */
  readonly correctedTokens: number
  readonly correctedFraction: number
  readonly draftMs: number
  readonly verifyMs: number
}

export type Event =
  | { readonly _tag: "Prefilled"; readonly promptTokens: number; readonly ms: number }
  | {
      readonly _tag: "Drafted"
      readonly token: number
      readonly position: number
      /** Tree drafting: the node's index in the window's tree and its parent's (0 = the window's root). */
      readonly node?: number
      readonly parent?: number
    }
  | {
      readonly _tag: "Verified"
      /** Absolute position of the window's first token. */
      readonly start: number
      /** Every token drafted in the window (chain order, or tree node order). */
      readonly drafts: ReadonlyArray<number>
      readonly accepted: number
      readonly rollback: number
      /** The full model's token after the accepted prefix (a correction, or the bonus if rollback is 0). */
      readonly token: number
      readonly ms: number
    }
  | {
      readonly _tag: "Committed"
      readonly token: number
      readonly position: number
      /** The text this token makes safe to show (may be empty while a character or stop string is pending). */
      readonly text: string
      readonly source: TokenSource
      /** Present when the request asked for `logprobs`. */
      readonly logprob?: TokenLogprob
    }
  | {
      readonly _tag: "Finished"
      readonly reason: StopReason
      readonly tokens: ReadonlyArray<number>
      readonly text: string
      readonly stats: GenerationStats | SiriusStats
    }

export type Mode = "full" | "sparse" | "sirius"

/** The events of a request of mode M: Finished carries SiriusStats for Sirius requests. */
export type EventOf<M extends Mode> =
  | Exclude<Event, { _tag: "Finished" }>
  | (Extract<Event, { _tag: "Finished" }> & { readonly stats: M extends "sirius" ? SiriusStats : GenerationStats })

/** What every mode's request carries. */
export interface CommonOptions {
  readonly prompt: ReadonlyArray<number>
  readonly maxNewTokens: number
  readonly sampling?: Sampler.SamplingOptions | undefined
  readonly eosTokenIds?: ReadonlyArray<number> | undefined
  readonly stopStrings?: ReadonlyArray<string> | undefined
  readonly tokenizer?: TextTokenizer | undefined
  /** Report each committed token's log-probability and this many top alternatives (0: the token's only). */
  readonly logprobs?: number | undefined
}

/** The state of one request. The mode's step (Generation.ts, Sirius.ts) reads and advances it. */
export interface State {
  readonly model: Model
  readonly options: CommonOptions
  readonly sampling: Sampler.SamplingOptions
  readonly eos: ReadonlySet<number>
  readonly stops: ReadonlyArray<string>
  readonly cache: KvCache.KvCache
  readonly mlp: Sparsity.RequestMlp
  /** Prompt, committed tokens, then the open window's drafts (Sirius). */
  readonly ids: Array<number>
  /** Position of the last token the full model committed: it opens the next Sirius window. */
  lastCheck: number
  readonly text: TextStream.TextStream
  readonly rng: Sampler.Rng
  readonly started: number
  prefilled: boolean
  prefillMs: number
  firstTokenAt: number
  fullForwards: number
  sparseForwards: number
  finished: StopReason | undefined
  done: boolean
}

/** Check a request against the model before any work; the first problem found is the error. */
export const validate = (model: Model, options: CommonOptions): Effect.Effect<void, GenerationError> => {
  const { vocabSize, maxPositionEmbeddings } = model.config
  const fail = (field: string, message: string) => Effect.fail(new GenerationError({ field, message: `${field}: ${message}` }))
  if (options.prompt.length === 0) return fail("prompt", "the prompt is empty")
  const bad = options.prompt.find((id) => !Number.isInteger(id) || id < 0 || id >= vocabSize)
  if (bad !== undefined) return fail("prompt", `token id ${bad} is outside the vocabulary [0, ${vocabSize})`)
  if (!Number.isInteger(options.maxNewTokens) || options.maxNewTokens < 1)
    return fail("maxNewTokens", `must be a positive integer (got ${options.maxNewTokens})`)
  if (options.prompt.length + options.maxNewTokens > maxPositionEmbeddings)
    return fail(
      "maxNewTokens",
      `the prompt (${options.prompt.length} tokens) + max new tokens (${options.maxNewTokens}) exceeds the model's context of ${maxPositionEmbeddings} (max_position_embeddings)`
    )
  const s = options.sampling ?? Sampler.greedy
  if (!(s.temperature >= 0) || !Number.isFinite(s.temperature)) return fail("temperature", `must be a finite number ≥ 0 (got ${s.temperature})`)
  if (!Number.isInteger(s.topK) || s.topK < 0) return fail("topK", `must be an integer ≥ 0 (got ${s.topK})`)
  if (!(s.topP > 0 && s.topP <= 1)) return fail("topP", `must be in (0, 1] (got ${s.topP})`)
  if (!(s.minP >= 0 && s.minP <= 1)) return fail("minP", `must be in [0, 1] (got ${s.minP})`)
  if (!(s.repetitionPenalty > 0) || !Number.isFinite(s.repetitionPenalty))
    return fail("repetitionPenalty", `must be a finite number > 0 (got ${s.repetitionPenalty})`)
  if (!Number.isInteger(s.seed)) return fail("seed", `must be an integer (got ${s.seed})`)
  const lp = options.logprobs
  if (lp !== undefined && (!Number.isInteger(lp) || lp < 0 || lp > 20)) return fail("logprobs", `must be an integer in [0, 20] (got ${lp})`)
  return Effect.void
}

/** Check the sparsity options of a sparse or Sirius request. */
export const validateSparsity = (model: Model, sp: Sparsity.SparsityOptions): Effect.Effect<void, GenerationError> => {
  const fail = (field: string, message: string) => Effect.fail(new GenerationError({ field, message: `${field}: ${message}` }))
  if (!(sp.density > 0 && sp.density <= 1)) return fail("density", `must be in (0, 1] (got ${sp.density})`)
  if (sp.granularity !== "coarse" && model.layers.some((l) => l.downProjT === undefined))
    return fail("sparsity", `${sp.granularity} sparsity needs the model loaded with { sparse: true }`)
  if (sp.granularity === "fine-threshold" && sp.thresholds?.length !== model.config.numHiddenLayers)
    return fail("thresholds", `fine-threshold needs ${model.config.numHiddenLayers} per-layer thresholds (run sirius calibrate)`)
  return Effect.void
}

/**
 * Allocate a request's state. Runs inside the stream's scope: coarse sparsity's gathered weights live as
 * long as the stream. `extraSlots`: KV slots beyond prompt + budget (a Sirius window's look-ahead, a tree).
 */
export const init = (model: Model, options: CommonOptions, sparsity: Sparsity.SparsityOptions | undefined, extraSlots: number) =>
  Effect.gen(function* () {
    const scope = yield* Effect.scope
    const sampling = options.sampling ?? Sampler.greedy
    const cache = yield* KvCache.make(model.kernels, model.config, options.prompt.length + options.maxNewTokens + extraSlots)
    const state: State = {
      model,
      options,
      sampling,
      eos: new Set(options.eosTokenIds ?? []),
      stops: (options.stopStrings ?? []).filter((s) => s.length > 0),
      cache,
      mlp: sparsity === undefined ? Sparsity.denseRequest : Sparsity.requestMlp(model, sparsity, scope),
      ids: [...options.prompt],
      lastCheck: options.prompt.length,
      text: TextStream.make(),
      rng: Sampler.rng(sampling.seed),
      started: performance.now(),
      prefilled: false,
      prefillMs: 0,
      firstTokenAt: 0,
      fullForwards: 0,
      sparseForwards: 0,
      finished: undefined,
      done: false
    }
    return state
  })

/**
 * Bytes a request will allocate in the backend's memory (Kernels.memory) at most, for admission control:
 * coarse sparsity's gathered gate/up rows and down_proj columns; with `tokens`, also its KV cache (heads padded
 * to 4 floats, as simd stores them), the activations of its largest forward pass (the prefill) and that pass's
 * scratch. An estimate from above, shaped on simd's allocations (matrix layout padding aside); a server admits
 * a request only when this fits beside what is in use (Kernels.memory).
 */
export const backendBytes = (
  model: Model,
  sparsity: Sparsity.SparsityOptions | undefined,
  tokens?: { readonly prompt: number; readonly maxNewTokens: number; readonly extraSlots?: number }
): number => {
  const F = model.config.intermediateSize
  const share = sparsity?.granularity === "coarse" ? Sparsity.keptCount(F, sparsity.density) / F : 0
  // gate and up rows and down columns: the kept share of each layer's three MLP matrices. A column gather
  // of a block-quantized down_proj is re-blocked (simd: as Q8_0, 34 bytes per 32 weights, whatever the
  // source type), so its share is counted at no less than that.
  const columns = (m: Model["layers"][number]["downProj"]) => Math.max(m.bytes ?? 0, m.bytes !== undefined && m.bytes < m.rows * m.cols * 2 ? (m.rows * m.cols * 34) / 32 : 0)
  const gathers = model.layers.reduce((n, l) => n + share * ((l.gateProj.bytes ?? 0) + (l.upProj.bytes ?? 0) + columns(l.downProj)), 0)
  if (tokens === undefined) return gathers
  const { numHiddenLayers: L, numKeyValueHeads: Hkv, numAttentionHeads: H, headDim: Dh, hiddenSize: D, vocabSize: V } = model.config
  const slots = tokens.prompt + tokens.maxNewTokens + (tokens.extraSlots ?? 1)
  const kv = 2 * L * slots * Hkv * Math.ceil(Dh / 4) * 4 * 4
  // the prefill's activations: the residual stream for the whole pass, and one layer's intermediates at a
  // time (Forward frees them at the layer's end: a few rows of D, q/k/v/attention, gate/up/hb of F), each
  // scope's in blocks of at least 1 MiB (simd's arena); plus the last logits row and an op's scratch (at
  // most the attention scores, capped at 32 MiB, and a padded copy of an input)
  const T = tokens.prompt
  const block = (bytes: number) => Math.max(bytes, 1 << 20)
  const pass = block(T * D * 4 + T * 8 + V * 4)
  const layer = block(T * (5 * D + 2 * H * Dh + 2 * Hkv * Dh + 3 * F) * 4)
  const scratch = Math.min(32 << 20, T * H * (slots + 4) * 4) + T * (Math.max(D, F) + 64) * 4
  return gathers + kv + pass + layer + scratch
}

/** Generated tokens committed so far. */
export const committedCount = (s: State): number => s.text.ids.length

/** log softmax(logits)[token] and the top-n alternatives, in float64. */
export const logprobOf = (logits: Float32Array, token: number, n: number): TokenLogprob => {
  let max = -Infinity
  for (const v of logits) max = Math.max(max, v)
  let sum = 0
  for (const v of logits) sum += Math.exp(v - max)
  const lse = max + Math.log(sum)
  const top: Array<{ token: number; logprob: number }> = []
  if (n > 0) {
    // n is small (≤ 20): one pass keeping a sorted list of the best n
    for (let id = 0; id < logits.length; id++) {
      const v = logits[id]!
      if (top.length === n && v <= top[n - 1]!.logprob) continue
      let at = top.length
      while (at > 0 && top[at - 1]!.logprob < v) at--
      top.splice(at, 0, { token: id, logprob: v })
      if (top.length > n) top.pop()
    }
    for (const t of top) t.logprob -= lse
  }
  return { logprob: logits[token]! - lse, top }
}

/** A token to commit, where it came from, and the logits it was chosen from (for logprobs). */
export interface Commit {
  readonly token: number
  readonly source: TokenSource
  readonly logits: Float32Array
}

/**
 * Commit tokens in order until one stops generation: an EOS id, a stop string in the text, or the budget.
 * Returns their Committed events; tokens after the stopping one are dropped. The only place tokens become
 * output, in every mode.
 */
export const commit = (s: State, tokens: ReadonlyArray<Commit>): Array<Event> => {
  const events: Array<Event> = []
  const { tokenizer, logprobs } = s.options
  for (const { token, source, logits } of tokens) {
    if (s.finished !== undefined) break
    if (committedCount(s) === 0) s.firstTokenAt = performance.now()
    let text = TextStream.push(s.text, [token], tokenizer, s.stops)
    if (s.eos.has(token)) s.finished = "eos"
    else if (s.text.stopAt !== undefined) s.finished = "stop"
    else if (committedCount(s) >= s.options.maxNewTokens) s.finished = "length"
    if (s.finished !== undefined) text += TextStream.flush(s.text, tokenizer)
    const position = s.options.prompt.length + committedCount(s) - 1
    events.push(
      logprobs === undefined
        ? { _tag: "Committed", token, position, text, source }
        : { _tag: "Committed", token, position, text, source, logprob: logprobOf(logits, token, logprobs) }
    )
  }
  return events
}

/**
 * The dense prefill: the prompt's KV, and the first token from the full model's last logits (coarse
 * sparsity records its neuron statistics here).
 */
export const prefill = Effect.fnUntraced(function* (s: State) {
  const P = s.options.prompt.length
  const logits = yield* Forward.forward(s.model, s.cache, Int32Array.from(s.options.prompt), 0, "last", s.mlp.prefill)
  s.fullForwards++
  s.prefilled = true
  s.prefillMs = performance.now() - s.started
  const token = Sampler.sample(logits, s.ids, s.sampling, s.rng)
  s.ids.push(token)
  s.lastCheck = P
  const prefilled: Event = { _tag: "Prefilled", promptTokens: P, ms: s.prefillMs }
  return [prefilled, ...commit(s, [{ token, source: "full", logits }])]
})

/** The stats every mode reports. */
export const baseStats = (s: State, parameterDensity: number): GenerationStats => {
  const generatedTokens = committedCount(s)
  const decodeMs = performance.now() - s.started - s.prefillMs
  return {
    promptTokens: s.options.prompt.length,
    generatedTokens,
    prefillMs: s.prefillMs,
    decodeMs,
    tokensPerSecond: generatedTokens > 1 ? ((generatedTokens - 1) * 1000) / Math.max(decodeMs, 1e-9) : 0,
    timeToFirstTokenMs: s.firstTokenAt - s.started,
    backend: s.model.kernels.name,
    parameterDensity,
    fullForwards: s.fullForwards,
    sparseForwards: s.sparseForwards
  }
}

/** What a mode plugs into the lifecycle. */
export interface Steps<S extends State> {
  /** One step after the prefill: at most one forward pass; returns the events it produced. */
  readonly step: (s: S) => Effect.Effect<ReadonlyArray<Event>, KernelError | PolicyError>
  readonly stats: (s: S) => GenerationStats | SiriusStats
}

/**
 * The request's stream: validate, allocate, prefill, then the mode's steps until a committed token stops
 * generation, then Finished. `make` builds the mode's state (inside the stream's scope).
 */
export const run = <S extends State, E>(
  validated: Effect.Effect<void, GenerationError>,
  make: Effect.Effect<S, E, import("effect").Scope.Scope>,
  mode: Steps<S>
): Stream.Stream<Event, GenerationError | KernelError | PolicyError | E> => {
  const step = Effect.fnUntraced(function* (s: S) {
    if (s.done) return undefined
    if (s.finished !== undefined) {
      s.done = true
      const finished: Event = { _tag: "Finished", reason: s.finished, tokens: [...s.text.ids], text: TextStream.finalText(s.text), stats: mode.stats(s) }
      return [[finished], s] as const
    }
    if (!s.prefilled) return [yield* prefill(s), s] as const
    yield* Effect.yieldNow // a cancellation point between forward passes
    return [yield* mode.step(s), s] as const
  })
  return Stream.unwrap(
    Effect.map(Effect.andThen(validated, make), (s) =>
      Stream.flattenIterable(Stream.unfold(s, step as (s: S) => Effect.Effect<readonly [ReadonlyArray<Event>, S] | undefined, KernelError | PolicyError>))
    )
  )
}
