/**
 * Generation: plain autoregressive decoding with one model, as an Effect Stream of tagged events.
 *
 * The stream is a `Stream.unfold` over explicit request state (KV cache, committed ids, sampler state):
 * each pull runs at most one forward pass, so interrupting the stream stops the work at the next token
 * and drops the request's state. A consumer that only wants text keeps the `Committed` deltas.
 */
import { Effect, Schema, Stream } from "effect"
import * as Forward from "./Forward.ts"
import type { KernelError } from "./Kernels.ts"
import * as KvCache from "./KvCache.ts"
import type { Model } from "./Model.ts"
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

export interface GenerationStats {
  readonly promptTokens: number
  readonly generatedTokens: number
  readonly prefillMs: number
  readonly decodeMs: number
  /** Generated tokens per second of decoding (prefill excluded). */
  readonly tokensPerSecond: number
  readonly timeToFirstTokenMs: number
  readonly backend: string
  /** Fraction of all parameters a decode step touches (1 for dense decoding; Sparsity.parameterDensity). */
  readonly parameterDensity: number
  /** Forward passes with the dense MLP (the prefill counts as one) and with the sparse MLP. */
  readonly fullForwards: number
  readonly sparseForwards: number
}

export type GenerationEvent =
  | { readonly _tag: "Prefilled"; readonly promptTokens: number; readonly ms: number }
  | { readonly _tag: "Committed"; readonly token: number; readonly position: number; readonly text: string }
  | {
      readonly _tag: "Finished"
      readonly reason: StopReason
      readonly tokens: ReadonlyArray<number>
      readonly text: string
      readonly stats: GenerationStats
    }

export interface GenerateOptions {
  readonly prompt: ReadonlyArray<number>
  readonly maxNewTokens: number
  readonly sampling?: Sampler.SamplingOptions
  readonly eosTokenIds?: ReadonlyArray<number>
  readonly stopStrings?: ReadonlyArray<string>
  readonly tokenizer?: TextTokenizer | undefined
  /** Decode with a contextually sparse MLP (the prompt is still prefilled densely). Fine granularities need a model loaded with `{ sparse: true }`. */
  readonly sparsity?: Sparsity.SparsityOptions | undefined
}

/** The timing part of a request's stats, shared by every generation mode. */
export const timingStats = (t: {
  readonly promptTokens: number
  readonly generatedTokens: number
  readonly started: number
  readonly prefillMs: number
  readonly firstTokenAt: number
  readonly backend: string
}): Omit<GenerationStats, "parameterDensity" | "fullForwards" | "sparseForwards"> => {
  const decodeMs = performance.now() - t.started - t.prefillMs
  return {
    promptTokens: t.promptTokens,
    generatedTokens: t.generatedTokens,
    prefillMs: t.prefillMs,
    decodeMs,
    // the first token comes from the prefill: decoding produced the others
    tokensPerSecond: t.generatedTokens > 1 ? ((t.generatedTokens - 1) * 1000) / Math.max(decodeMs, 1e-9) : 0,
    timeToFirstTokenMs: t.firstTokenAt - t.started,
    backend: t.backend
  }
}

/** Check a request against the model before any work; the first problem found is the error. */
export const validate = (model: Model, options: GenerateOptions): Effect.Effect<void, GenerationError> => {
  const { vocabSize, maxPositionEmbeddings } = model.config
  const fail = (field: string, message: string) => Effect.fail(new GenerationError({ field, message }))
  if (options.prompt.length === 0) return fail("prompt", "the prompt is empty")
  const bad = options.prompt.find((id) => !Number.isInteger(id) || id < 0 || id >= vocabSize)
  if (bad !== undefined) return fail("prompt", `token id ${bad} is outside the vocabulary [0, ${vocabSize})`)
  if (!Number.isInteger(options.maxNewTokens) || options.maxNewTokens < 1)
    return fail("maxNewTokens", `must be a positive integer (got ${options.maxNewTokens})`)
  if (options.prompt.length + options.maxNewTokens > maxPositionEmbeddings)
    return fail(
      "maxNewTokens",
      `prompt (${options.prompt.length}) + max new tokens (${options.maxNewTokens}) exceeds max_position_embeddings ${maxPositionEmbeddings}`
    )
  const s = options.sampling ?? Sampler.greedy
  if (!(s.temperature >= 0) || !Number.isFinite(s.temperature)) return fail("temperature", "must be a finite number ≥ 0")
  if (!Number.isInteger(s.topK) || s.topK < 0) return fail("topK", "must be an integer ≥ 0")
  if (!(s.topP > 0 && s.topP <= 1)) return fail("topP", "must be in (0, 1]")
  if (!(s.minP >= 0 && s.minP <= 1)) return fail("minP", "must be in [0, 1]")
  if (!(s.repetitionPenalty > 0) || !Number.isFinite(s.repetitionPenalty)) return fail("repetitionPenalty", "must be a finite number > 0")
  const sp = options.sparsity
  if (sp !== undefined) {
    if (!(sp.density > 0 && sp.density <= 1)) return fail("density", `must be in (0, 1] (got ${sp.density})`)
    if (sp.granularity !== "coarse" && model.layers.some((l) => l.downProjT === undefined))
      return fail("sparsity", `${sp.granularity} sparsity needs the model loaded with { sparse: true }`)
    if (sp.granularity === "fine-threshold" && sp.thresholds?.length !== model.config.numHiddenLayers)
      return fail("thresholds", `fine-threshold needs ${model.config.numHiddenLayers} per-layer thresholds (run sirius calibrate)`)
  }
  return Effect.void
}

interface State {
  readonly cache: KvCache.KvCache
  readonly mlp: Sparsity.RequestMlp
  readonly context: Array<number> // prompt + committed ids
  readonly text: TextStream.TextStream
  readonly rng: Sampler.Rng
  readonly started: number
  logits: Float32Array | undefined // pending next-token logits
  prefilled: boolean
  prefillMs: number
  firstTokenAt: number
  finished: StopReason | undefined
  done: boolean
}

/**
 * Generate from `options.prompt`. Emits `Prefilled`, one `Committed` per token, then `Finished`.
 *
 * @example
 * const text = yield* Generation.generate(model, { prompt, maxNewTokens: 32 }).pipe(
 *   Stream.filter((e) => e._tag === "Committed"),
 *   Stream.runFold(() => "", (acc, e) => acc + e.text)
 * )
 */
export const generate = (model: Model, options: GenerateOptions): Stream.Stream<GenerationEvent, GenerationError | KernelError> => {
  const sampling = options.sampling ?? Sampler.greedy
  const eos = new Set(options.eosTokenIds ?? [])
  const stops = options.stopStrings ?? []
  const P = options.prompt.length
  const sparsity = options.sparsity
  const density =
    sparsity === undefined
      ? 1
      : Sparsity.parameterDensity(model.config, sparsity.granularity, Sparsity.keptCount(model.config.intermediateSize, sparsity.density) / model.config.intermediateSize)

  // runs inside Stream.unwrap, whose scope is the stream's: coarse gathers are freed when it ends
  const start = Effect.map(
    Effect.scope,
    (scope): State => ({
      cache: KvCache.make(model.config, P + options.maxNewTokens),
      mlp: sparsity === undefined ? Sparsity.denseRequest : Sparsity.requestMlp(model, sparsity, scope),
      context: [...options.prompt],
      text: TextStream.make(),
      rng: Sampler.rng(sampling.seed),
      started: performance.now(),
      logits: undefined,
      prefilled: false,
      prefillMs: 0,
      firstTokenAt: 0,
      finished: undefined,
      done: false
    })
  )

  const step = Effect.fnUntraced(function* (s: State) {
    if (s.done) return undefined
    if (s.finished !== undefined) {
      s.done = true
      const generated = s.text.ids.length
      const event: GenerationEvent = {
        _tag: "Finished",
        reason: s.finished,
        tokens: [...s.text.ids],
        text: TextStream.finalText(s.text),
        stats: {
          ...timingStats({ promptTokens: P, generatedTokens: generated, started: s.started, prefillMs: s.prefillMs, firstTokenAt: s.firstTokenAt, backend: model.kernels.name }),
          parameterDensity: density,
          fullForwards: sparsity === undefined ? generated : 1,
          sparseForwards: sparsity === undefined ? 0 : Math.max(0, generated - 1)
        }
      }
      return [event, s] as const
    }
    if (!s.prefilled) {
      s.logits = yield* Forward.forward(model, s.cache, Int32Array.from(options.prompt), 0, "last", s.mlp.prefill)
      s.prefilled = true
      s.prefillMs = performance.now() - s.started
      return [{ _tag: "Prefilled", promptTokens: P, ms: s.prefillMs } as GenerationEvent, s] as const
    }
    if (s.logits === undefined) {
      const last = s.context.length - 1
      s.logits = yield* Forward.forward(model, s.cache, Int32Array.of(s.context[last]!), last, "last", yield* s.mlp.sparse)
    }
    yield* Effect.yieldNow // a cancellation point between tokens
    const token = Sampler.sample(s.logits, s.context, sampling, s.rng)
    s.logits = undefined
    s.context.push(token)
    if (s.text.ids.length === 0) s.firstTokenAt = performance.now()
    let text = TextStream.push(s.text, [token], options.tokenizer, stops)
    if (eos.has(token)) s.finished = "eos"
    else if (s.text.stopAt !== undefined) s.finished = "stop"
    else if (s.text.ids.length >= options.maxNewTokens) s.finished = "length"
    if (s.finished !== undefined) text += TextStream.flush(s.text)
    return [{ _tag: "Committed", token, position: s.context.length - 1, text } as GenerationEvent, s] as const
  })

  return Stream.unwrap(
    Effect.map(Effect.andThen(validate(model, options), start), (s) => Stream.unfold(s, step))
  )
}
