// Tree attention (an explicit visibility mask, as Sirius's draft tree uses) on every backend against the
// reference, and Sirius tree drafting on the accelerated backends against full greedy decoding.
import { Effect, type Layer, Stream } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { gpuLayer } from "../gpu/index.ts"
import { attention } from "../reference/index.ts"
import { SimdKernels } from "../simd/index.ts"
import * as Generation from "../src/Generation.ts"
import { Kernels } from "../src/Kernels.ts"
import * as Model from "../src/Model.ts"
import * as Policy from "../src/Policy.ts"
import { randomWeights } from "../testing/RandomModel.ts"
import * as Sirius from "../src/Sirius.ts"
import { tinyModelAndPrompt } from "../testing/arbitraries.ts"
import { assertClose } from "../testing/tolerance.ts"

const backends: ReadonlyArray<readonly [string, Layer.Layer<Kernels, unknown>]> = [
  ["simd(1 thread)", SimdKernels.layer({ threads: 1 })],
  ["gpu:webasm", gpuLayer("gpu:webasm")],
  ["gpu:cpu", gpuLayer("gpu:cpu")]
]

const maskCase = fc
  .record({
    T: fc.integer({ min: 1, max: 6 }),
    context: fc.integer({ min: 0, max: 9 }),
    Hkv: fc.integer({ min: 1, max: 2 }),
    group: fc.integer({ min: 1, max: 2 }),
    Dh: fc.constantFrom(2, 4, 8, 6),
    seed: fc.integer({ min: 1, max: 1e6 })
  })
  .chain((c) =>
    fc.record({
      c: fc.constant(c),
      // each query sees a random subset of the slots (at least itself)
      bits: fc.array(fc.boolean(), { minLength: c.T * (c.context + c.T), maxLength: c.T * (c.context + c.T) })
    })
  )

const values = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(seed + i * 1.7) * 2)

describe.each(backends)("tree attention on %s", (name, layer) => {
  it("agrees with the reference on random masks", () =>
    fc.assert(
      fc.asyncProperty(maskCase, async ({ c, bits }) => {
        const H = c.Hkv * c.group
        const S = c.context + c.T
        const mask = Uint8Array.from(bits, (b) => (b ? 1 : 0))
        for (let t = 0; t < c.T; t++) mask[t * S + c.context + t] = 1
        const shape = { T: c.T, numHeads: H, numKeyValueHeads: c.Hkv, headDim: c.Dh, kvLength: S, positions: Int32Array.from({ length: c.T }, (_, t) => c.context + t), mask }
        const q = values(c.T * H * c.Dh, c.seed)
        const k = values(S * c.Hkv * c.Dh, c.seed + 1)
        const v = values(S * c.Hkv * c.Dh, c.seed + 2)
        const expected = attention(q, k, v, shape)
        const actual = await Effect.runPromise(
          Effect.provide(
            Effect.scoped(
              Effect.gen(function* () {
                const b = yield* Kernels
                const kv = yield* b.kvStore(1, c.Hkv, c.Dh, S)
                yield* b.kvWrite(kv, 0, 0, yield* b.upload(k, S, c.Hkv * c.Dh), yield* b.upload(v, S, c.Hkv * c.Dh))
                const input = yield* b.input(new Int32Array(c.T), shape.positions, S, mask)
                return yield* b.read(yield* b.attention(yield* b.upload(q, c.T, H * c.Dh), kv, 0, input, shape))
              })
            ),
            layer as Layer.Layer<Kernels>
          )
        )
        // scores are Dh-term dot products of values |·| ≤ 2 and the mix a convex combination of |v| ≤ 2:
        // f32 accumulation error stays far below 1e-4 at these sizes
        assertClose(`${name} attention`, actual, expected, { atol: 1e-4, rtol: 1e-4 })
      }),
      { numRuns: 30 }
    ))

  it("Sirius tree drafting with greedy-exact reproduces full greedy decoding", () =>
    fc.assert(
      fc.asyncProperty(tinyModelAndPrompt(5), fc.integer({ min: 2, max: 3 }), async ({ config, seed, prompt }, width) => {
        await Effect.runPromise(
          Effect.gen(function* () {
            const model = yield* Model.fromWeights(config, randomWeights(config, { seed }), { sparse: true })
            const full = yield* Stream.runCollect(Generation.generate(model, { prompt, maxNewTokens: 10 }))
            const tree = yield* Stream.runCollect(
              Sirius.generate(model, { prompt, maxNewTokens: 10, correctionPeriod: 4, treeWidth: width, policy: Policy.greedyExact, sparsity: { granularity: "fine", density: 0.5 } })
            )
            const tokens = (events: ReadonlyArray<{ _tag: string }>) => (events[events.length - 1] as unknown as { tokens: ReadonlyArray<number> }).tokens
            expect(tokens(tree)).toEqual(tokens(full))
          }).pipe(Effect.provide(layer as Layer.Layer<Kernels>))
        )
      }),
      { numRuns: 6 }
    ))
})

it("the reference's masked attention with a causal mask equals its causal attention", () =>
  fc.assert(
    fc.property(maskCase, ({ c }) => {
      const H = c.Hkv * c.group
      const S = c.context + c.T
      const positions = Int32Array.from({ length: c.T }, (_, t) => c.context + t)
      const mask = new Uint8Array(c.T * S)
      for (let t = 0; t < c.T; t++) mask.fill(1, t * S, t * S + c.context + t + 1)
      const base = { T: c.T, numHeads: H, numKeyValueHeads: c.Hkv, headDim: c.Dh, kvLength: S, positions }
      const q = values(c.T * H * c.Dh, c.seed)
      const k = values(S * c.Hkv * c.Dh, c.seed + 1)
      const v = values(S * c.Hkv * c.Dh, c.seed + 2)
      expect(Array.from(attention(q, k, v, { ...base, mask }))).toEqual(Array.from(attention(q, k, v, base)))
    })
  ))
