/**
 * Whole-model properties parameterised by a backend layer: the forward pass's logits against the
 * reference backend's, and greedy decoding token for token, on random tiny Llama models.
 *
 * Errors through a whole model are not bounded op by op (a norm divides by a sum, attention
 * exponentiates), so the logits tolerance is empirical and says so; the greedy property needs no
 * tolerance on logits at all: tokens must be identical wherever the reference's top-1/top-2 margin is
 * clear, and a near-tie may flip (after which the two sequences legitimately diverge).
 */
import { Effect, type Layer } from "effect"
import fc from "fast-check"
import { ReferenceKernels } from "../reference/index.ts"
import type { LlamaConfig } from "../src/Config.ts"
import * as Forward from "../src/Forward.ts"
import { Kernels, type KernelsShape } from "../src/Kernels.ts"
import * as KvCache from "../src/KvCache.ts"
import * as Model from "../src/Model.ts"
import { randomWeights } from "./RandomModel.ts"
import { argmax } from "../src/Sampler.ts"
import type { DType } from "../src/Tensor.ts"
import { tinyModelAndPrompt } from "./arbitraries.ts"
import { compare, type Tolerance } from "./tolerance.ts"

/**
 * Logits of f32 backends on the tiny models of `tinyConfig` (hidden ≤ 48, ≤ 3 layers, logits of order
 * 1–10): measured within 5e-5 of the reference; 1e-3 absolute + 1e-3 relative leaves 20× headroom while
 * a wrong op (a swapped head, a missing residual) moves logits by O(1).
 */
export const forwardTolerance: Tolerance = { atol: 1e-3, rtol: 1e-3 }

/** A reference top-1/top-2 logit margin below this counts as a near-tie (50× the measured f32 error). */
export const nearTie = 2.5e-3

export interface ModelOptions {
  readonly numRuns?: number
  readonly dtypes?: ReadonlyArray<DType>
  readonly seed?: number
}

export interface ForwardReport {
  readonly backend: string
  readonly runs: number
  readonly maxAbs: number
  readonly maxRel: number
}

const ref = ReferenceKernels.make()

const withKernels = <A, E>(k: KernelsShape, e: Effect.Effect<A, E, Kernels>): Effect.Effect<A, E> => Effect.provideService(e, Kernels, k)

const modelCase = (maxLen: number, dtypes: ReadonlyArray<DType>) =>
  fc.record({ m: tinyModelAndPrompt(maxLen), dtype: fc.constantFrom(...dtypes) })

/**
 * Property: a prefill's logits (every position) agree with the reference backend's within `tol`.
 *
 * **Example**
 * ```ts
 * const report = await forwardAgreesWithReference(GpuKernels.layer({ mode: "webasm" }))
 * report.backend // => "gpu:webasm"
 * ```
 *
 * @category properties
 */
export const forwardAgreesWithReference = async (
  layer: Layer.Layer<Kernels, unknown>,
  tol: Tolerance = forwardTolerance,
  options: ModelOptions = {}
): Promise<ForwardReport> => {
  let runs = 0
  let maxAbs = 0
  let maxRel = 0
  const logits = (k: KernelsShape, config: LlamaConfig, seed: number, dtype: DType, prompt: ReadonlyArray<number>) =>
    withKernels(
      k,
      Effect.scoped(
        Effect.flatMap(Model.fromWeights(config, randomWeights(config, { seed, dtype })), (model) =>
          Effect.flatMap(KvCache.make(model.kernels, config, prompt.length), (cache) => Forward.forward(model, cache, Int32Array.from(prompt), 0, "all"))
        )
      )
    )
  const backend = await Effect.runPromise(
    Effect.provide(
      Effect.gen(function* () {
        const k = yield* Kernels
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(modelCase(8, options.dtypes ?? ["F32", "BF16"]), async ({ m: { config, seed, prompt }, dtype }) => {
              const got = await Effect.runPromise(logits(k, config, seed, dtype, prompt))
              const want = await Effect.runPromise(logits(ref, config, seed, dtype, prompt))
              const c = compare(got, want, tol)
              runs++
              maxAbs = Math.max(maxAbs, c.maxAbs)
              maxRel = Math.max(maxRel, c.maxRel)
              if (!c.ok) throw new Error(`${k.name} logits: ${c.report}`)
            }),
            { numRuns: options.numRuns ?? 15, includeErrorInReport: true, ...(options.seed === undefined ? {} : { seed: options.seed }) }
          )
        )
        return k.name
      }),
      layer
    )
  )
  return { backend, runs, maxAbs, maxRel }
}

export interface GreedyReport {
  readonly backend: string
  readonly runs: number
  /** Tokens compared (identical prefixes plus the step of a near-tie flip). */
  readonly tokens: number
  /** Near-ties where the backend chose the reference's runner-up (allowed). */
  readonly flips: number
  /** Largest logit difference over the steps where both sequences agreed so far. */
  readonly maxLogitAbs: number
}

/** Greedy decoding of `steps` tokens; per step the chosen id, the logits and the top-1/top-2 margin. */
export const greedy = (k: KernelsShape, config: LlamaConfig, seed: number, dtype: DType, prompt: ReadonlyArray<number>, steps: number) =>
  withKernels(
    k,
    Effect.scoped(Effect.gen(function* () {
      const model = yield* Model.fromWeights(config, randomWeights(config, { seed, dtype }))
      const cache = yield* KvCache.make(model.kernels, config, prompt.length + steps)
      let logits = yield* Forward.forward(model, cache, Int32Array.from(prompt), 0, "last")
      const out: Array<{ id: number; margin: number; logits: Float32Array }> = []
      for (let i = 0; i < steps; i++) {
        const id = argmax(logits)
        let second = -Infinity
        logits.forEach((v, j) => {
          if (j !== id && v > second) second = v
        })
        out.push({ id, margin: logits[id]! - second, logits })
        if (i + 1 < steps) logits = yield* Forward.forward(model, cache, Int32Array.of(id), prompt.length + i, "last")
      }
      return out
    }))
  )

/**
 * Property: greedy decoding on the backend yields the reference's tokens, except that at a near-tie
 * (reference margin < `margin`) the runner-up may be chosen, after which comparison stops.
 *
 * **Example**
 * ```ts
 * const report = await greedyAgreesWithReference(MyKernels.layer, { steps: 8 })
 * expect(report.tokens).toBeGreaterThan(0)
 * ```
 *
 * @category properties
 */
export const greedyAgreesWithReference = async (
  layer: Layer.Layer<Kernels, unknown>,
  options: ModelOptions & { readonly steps?: number; readonly margin?: number } = {}
): Promise<GreedyReport> => {
  const steps = options.steps ?? 6
  const margin = options.margin ?? nearTie
  let runs = 0
  let tokens = 0
  let flips = 0
  let maxLogitAbs = 0
  const backend = await Effect.runPromise(
    Effect.provide(
      Effect.gen(function* () {
        const k = yield* Kernels
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(modelCase(6, options.dtypes ?? ["F32", "BF16"]), async ({ m: { config, seed, prompt }, dtype }) => {
              const got = await Effect.runPromise(greedy(k, config, seed, dtype, prompt, steps))
              const want = await Effect.runPromise(greedy(ref, config, seed, dtype, prompt, steps))
              runs++
              for (let i = 0; i < steps; i++) {
                const g = got[i]!
                const w = want[i]!
                tokens++
                if (g.id !== w.id) {
                  if (!(w.margin < margin))
                    throw new Error(`${k.name} step ${i}: token ${g.id} instead of ${w.id}, but the reference's margin ${w.margin} is clear (≥ ${margin})`)
                  flips++
                  break
                }
                maxLogitAbs = Math.max(maxLogitAbs, compare(g.logits, w.logits, { atol: Infinity, rtol: 0 }).maxAbs)
              }
            }),
            { numRuns: options.numRuns ?? 12, includeErrorInReport: true, ...(options.seed === undefined ? {} : { seed: options.seed }) }
          )
        )
        return k.name
      }),
      layer
    )
  )
  return { backend, runs, tokens, flips, maxLogitAbs }
}
