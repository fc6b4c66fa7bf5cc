/**
 * Properties of the forward pass, as factories parameterised by a Kernels backend: every backend must
 * satisfy them, the reference exactly where arithmetic is identical, the others within a tolerance.
 */
import { Effect, type Layer, type Scope } from "effect"
import fc from "fast-check"
import * as Forward from "../src/Forward.ts"
import type { Kernels } from "../src/Kernels.ts"
import * as KvCache from "../src/KvCache.ts"
import * as Model from "../src/Model.ts"
import { snapshot } from "./kv.ts"
import { randomWeights } from "./RandomModel.ts"
import { tinyModelAndPrompt } from "./arbitraries.ts"
import { assertClose, type Tolerance } from "./tolerance.ts"

const run = <A, E>(layer: Layer.Layer<Kernels>, effect: Effect.Effect<A, E, Kernels | Scope.Scope>) =>
  Effect.runPromise(Effect.provide(Effect.scoped(effect), layer))

/**
 * A T-token forward (prefill / verification) gives the same logits and the same KV as T one-token
 * decode steps. On the reference the per-token arithmetic is identical, so `tol` may be zero.
 */
export const multiTokenEqualsDecode = (layer: Layer.Layer<Kernels>, tol: Tolerance, numRuns = 25) =>
  fc.assert(
    fc.asyncProperty(tinyModelAndPrompt(12), async ({ config, seed, prompt }) => {
      const weights = randomWeights(config, { seed })
      await run(
        layer,
        Effect.gen(function* () {
          const model = yield* Model.fromWeights(config, weights)
          const tokens = Int32Array.from(prompt)
          const k = model.kernels
          const parallel = yield* KvCache.make(k, config, prompt.length)
          const all = yield* Forward.forward(model, parallel, tokens, 0, "all")
          const serial = yield* KvCache.make(k, config, prompt.length)
          const V = config.vocabSize
          for (let t = 0; t < prompt.length; t++) {
            const one = yield* Forward.forward(model, serial, tokens.subarray(t, t + 1), t, "last")
            assertClose(`logits at position ${t}`, one, all.subarray(t * V, (t + 1) * V), tol)
          }
          const a = yield* snapshot(k, parallel)
          const b = yield* snapshot(k, serial)
          a.keys.forEach((keys, l) => assertClose(`keys of layer ${l}`, b.keys[l]!, keys, tol))
          a.values.forEach((values, l) => assertClose(`values of layer ${l}`, b.values[l]!, values, tol))
          const last = yield* Forward.forward(model, yield* KvCache.make(k, config, prompt.length), tokens, 0, "last")
          assertClose("'last' is the last row of 'all'", last, all.subarray((prompt.length - 1) * V), tol)
        })
      )
    }),
    { numRuns }
  )

/**
 * Overwriting a window (what Sirius verification does): prefill p, then forward w at position j < |p|
 * over the stale slots, then truncate to j+|w|. Logits and KV equal a fresh prefill of p[0..j) ++ w.
 */
export const overwriteEqualsFreshPrefill = (layer: Layer.Layer<Kernels>, tol: Tolerance, numRuns = 25) =>
  fc.assert(
    fc.asyncProperty(
      tinyModelAndPrompt(10).chain((m) =>
        fc.record({
          m: fc.constant(m),
          at: fc.integer({ min: 0, max: m.prompt.length - 1 }),
          window: fc.array(fc.integer({ min: 0, max: m.config.vocabSize - 1 }), { minLength: 1, maxLength: 6 })
        })
      ),
      async ({ m: { config, seed, prompt }, at, window }) => {
        const weights = randomWeights(config, { seed })
        await run(
          layer,
          Effect.gen(function* () {
            const model = yield* Model.fromWeights(config, weights)
            const capacity = prompt.length + window.length
            const k = model.kernels
            const cache = yield* KvCache.make(k, config, capacity)
            yield* Forward.forward(model, cache, Int32Array.from(prompt), 0, "last")
            const rewritten = yield* Forward.forward(model, cache, Int32Array.from(window), at, "all")
            KvCache.truncate(cache, at + window.length)
            const fresh = yield* KvCache.make(k, config, capacity)
            const expected = yield* Forward.forward(model, fresh, Int32Array.from([...prompt.slice(0, at), ...window]), 0, "all")
            const V = config.vocabSize
            assertClose("window logits", rewritten, expected.subarray(at * V), tol)
            const a = yield* snapshot(k, cache)
            const b = yield* snapshot(k, fresh)
            a.keys.forEach((keys, l) => assertClose(`keys of layer ${l}`, keys, b.keys[l]!, tol))
            a.values.forEach((values, l) => assertClose(`values of layer ${l}`, values, b.values[l]!, tol))
          })
        )
      }
    ),
    { numRuns }
  )
