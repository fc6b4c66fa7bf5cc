/**
 * Generation: a request in any mode as an Effect Stream of tagged events: the one place where a mode
 * becomes a stream (Client and the CLI call `generate`).
 *
 * - `full`: every token decoded by the full model;
 * - `sparse`: a dense prefill, then every token decoded with the contextually sparse MLP (Sparsity.ts);
 * - `sirius`: the sparse model drafts and the full model verifies every `correctionPeriod` tokens (Sirius.ts).
 *
 * Full and sparse decoding are Sirius without correction: the same request lifecycle (Request.ts); their
 * step decodes one token and commits it. A consumer that only wants text keeps the `Committed` deltas.
 */
import { Effect, type Stream } from "effect"
import * as Forward from "./Forward.ts"
import type { KernelError } from "./Kernels.ts"
import type { Model } from "./Model.ts"
import type { PolicyError } from "./Policy.ts"
import * as Request from "./Request.ts"
import * as Sampler from "./Sampler.ts"
import * as Sirius from "./Sirius.ts"
import * as Sparsity from "./Sparsity.ts"

export {
  type CommonOptions,
  type Event,
  GenerationError,
  type GenerationStats,
  type SiriusStats,
  type StopReason,
  type TokenLogprob,
  type TokenSource
} from "./Request.ts"

export type Mode = Request.Mode
export type EventOf<M extends Mode> = Request.EventOf<M>

/** Full-model decoding (the default mode). */
export interface FullOptions extends Request.CommonOptions {
  readonly mode?: "full"
  readonly sparsity?: undefined
}

/** Sparse decoding: dense prefill, then the sparse MLP for every generated token; no correction. */
export interface SparseOptions extends Request.CommonOptions {
  readonly mode: "sparse"
  readonly sparsity: Sparsity.SparsityOptions
}

export type SiriusOptions = Sirius.SiriusOptions & { readonly mode: "sirius" }

export type GenerateOptions = FullOptions | SparseOptions | SiriusOptions

/** The mode of an options type ("full" when it names none). */
export type ModeOf<O> = O extends { readonly mode: infer M extends Mode } ? M : "full"

export type Finished<M extends Mode = Mode> = Extract<EventOf<M>, { _tag: "Finished" }>

export type GenerateError = Request.GenerationError | KernelError | PolicyError

/**
 * Generate from `options.prompt` in the options' mode. Emits `Prefilled`, then `Committed` per token
 * (and, in Sirius mode, `Drafted` / `Verified`), then `Finished` with the request's stats.
 *
 * @example
 * const text = yield* Generation.generate(model, { prompt, maxNewTokens: 32 }).pipe(
 *   Stream.filter((e) => e._tag === "Committed"),
 *   Stream.runFold(() => "", (acc, e) => acc + e.text)
 * )
 */
export const generate = <O extends GenerateOptions>(model: Model, options: O): Stream.Stream<EventOf<ModeOf<O>>, GenerateError> => {
  const o = options as GenerateOptions
  if (o.mode === "sirius") return Sirius.generate(model, o) as Stream.Stream<EventOf<ModeOf<O>>, GenerateError>
  const sparsity = o.mode === "sparse" ? o.sparsity : undefined
  const validated = Effect.andThen(
    Request.validate(model, o),
    o.mode === undefined || o.mode === "full"
      ? o.sparsity === undefined
        ? Effect.void
        : Effect.fail(new Request.GenerationError({ field: "sparsity", message: `sparsity: applies to modes "sparse" and "sirius", not "full"` }))
      : sparsity === undefined
        ? Effect.fail(new Request.GenerationError({ field: "sparsity", message: `sparsity: mode "sparse" needs sparsity options` }))
        : Request.validateSparsity(model, sparsity)
  )
  return Request.run(validated, Request.init(model, o, sparsity, 1), decoding(sparsity)) as Stream.Stream<EventOf<ModeOf<O>>, GenerateError>
}

/** The step of full and sparse decoding: one forward pass for the newest token, then sample and commit. */
const decoding = (sparsity: Sparsity.SparsityOptions | undefined): Request.Steps<Request.State> => ({
  step: Effect.fnUntraced(function* (s: Request.State) {
    const last = s.ids.length - 1
    const mlp = sparsity === undefined ? Forward.dense : yield* s.mlp.sparse
    const logits = yield* Forward.forward(s.model, s.cache, Int32Array.of(s.ids[last]!), last, "last", mlp)
    if (sparsity === undefined) s.fullForwards++
    else s.sparseForwards++
    const token = Sampler.sample(logits, s.ids, s.sampling, s.rng)
    s.ids.push(token)
    s.lastCheck = s.ids.length - 1
    return Request.commit(s, [{ token, source: sparsity === undefined ? "full" : "sparse", logits }])
  }),
  stats: (s) => Request.baseStats(s, sparsity === undefined ? 1 : Sparsity.requestParameterDensity(s.model, sparsity, s.mlp))
})
