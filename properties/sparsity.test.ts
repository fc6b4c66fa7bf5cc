// Contextual sparsity: selection rules against brute force, the sparse MLP against the dense MLP on masked
// activations, the Griffin statistic against its formula, and the parameter-density bookkeeping.
import { Effect } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { matmul, ReferenceKernels, silu } from "../reference/index.ts"
import type { LlamaConfig } from "../src/Config.ts"
import * as Forward from "../src/Forward.ts"
import * as KvCache from "../src/KvCache.ts"
import * as Model from "../src/Model.ts"
import { randomWeights } from "../src/RandomModel.ts"
import { griffinStatistic, keptCount, parameterDensity, topK } from "../src/Sparsity.ts"
import { toFloat32 } from "../src/Tensor.ts"
import { tinyModelAndPrompt } from "./arbitraries.ts"
import { assertClose } from "./tolerance.ts"

const run = <A, E>(effect: Effect.Effect<A, E, import("../src/Kernels.ts").Kernels>) => Effect.runPromise(Effect.provide(effect, ReferenceKernels.layer))

describe("selection", () => {
  it("topK equals a brute-force selection (ties to the lower index), ascending", () =>
    fc.assert(
      fc.property(
        fc.oneof(
          fc.array(fc.integer({ min: -5, max: 5 }), { minLength: 1, maxLength: 40 }), // many ties
          fc.array(fc.oneof(fc.integer({ min: -3, max: 3 }), fc.double({ noNaN: true, noDefaultInfinity: true })), { minLength: 1, maxLength: 400 })
        ),
        fc.nat(),
        (xs, kk) => {
        const k = 1 + (kk % xs.length)
        const brute = xs
          .map((v, i) => ({ v, i }))
          .sort((a, b) => b.v - a.v || a.i - b.i)
          .slice(0, k)
          .map((e) => e.i)
          .sort((a, b) => a - b)
        expect(Array.from(topK(xs, k))).toEqual(brute)
        }
      ),
      { numRuns: 300 }
    ))

  it("keeps ⌊ρ·D_ff⌋ neurons, at least one", () => {
    expect(keptCount(14336, 0.4)).toBe(5734)
    expect(keptCount(10, 0.3)).toBe(3)
    expect(keptCount(5632, 0.5)).toBe(2816)
    expect(keptCount(7, 0.01)).toBe(1)
  })

  it("the Griffin statistic equals its formula on a hand example", () => {
    // Z rows [3, 4] and [0, 2]: normalised [0.6, 0.8] and [0, 1] → s = [sqrt(0.36), sqrt(0.64 + 1)]
    const s = griffinStatistic(Float32Array.from([3, 4, 0, 2]), 2, 2)
    expect(s[0]).toBeCloseTo(0.6, 12)
    expect(s[1]).toBeCloseTo(Math.sqrt(1.64), 7)
  })
})

describe("parameter density (sirius-algorithm.md §2.3)", () => {
  const llama3_8b: LlamaConfig = {
    architecture: "llama", vocabSize: 128256, hiddenSize: 4096, intermediateSize: 14336, numHiddenLayers: 32, numAttentionHeads: 32, numKeyValueHeads: 8,
    headDim: 128, maxPositionEmbeddings: 8192, rmsNormEps: 1e-5, ropeTheta: 500000, ropeScaling: undefined, tieWordEmbeddings: false, attentionBias: false,
    bosTokenId: 128000, eosTokenIds: [128001]
  }
  it("reproduces the published Llama-3-8B densities", () => {
    expect(parameterDensity(llama3_8b, "coarse", 0.5)).toBeCloseTo(0.649, 3)
    expect(parameterDensity(llama3_8b, "fine", 0.5)).toBeCloseTo(0.766, 3)
    expect(parameterDensity(llama3_8b, "coarse", 0.4)).toBeCloseTo(0.579, 3)
    expect(parameterDensity(llama3_8b, "fine", 0.4)).toBeCloseTo(0.719, 3)
  })
})

describe("the sparse MLP", () => {
  /** Dense MLP of the model's first layer on xb (T=1) with activations outside `kept` zeroed, in float64. */
  const maskedDense = (config: LlamaConfig, w: ReturnType<typeof randomWeights>, xb: Float32Array, kept: Set<number>) => {
    const F = config.intermediateSize
    const gate = matmul(toFloat32(w.layers[0]!.gateProj), xb, 1, F, config.hiddenSize)
    const up = matmul(toFloat32(w.layers[0]!.upProj), xb, 1, F, config.hiddenSize)
    const hb = new Float32Array(F)
    for (let j = 0; j < F; j++) hb[j] = kept.has(j) ? silu(gate[j]!) * up[j]! : 0
    return matmul(toFloat32(w.layers[0]!.downProj), hb, 1, config.hiddenSize, F)
  }

  it("equals the dense MLP applied to the masked activations; density 1.0 equals dense", () =>
    fc.assert(
      fc.asyncProperty(tinyModelAndPrompt(1), fc.constantFrom(0.2, 0.5, 1), async ({ config, seed }, density) => {
        const cfg = { ...config, numHiddenLayers: 1 }
        const w = randomWeights(cfg, { seed })
        const x = Float32Array.from({ length: cfg.hiddenSize }, (_, i) => Math.sin(seed + i))
        await run(
          Effect.gen(function* () {
            const model = yield* Model.fromWeights(cfg, w, { sparse: true })
            const k = model.kernels
            const F = cfg.intermediateSize
            const keep = keptCount(F, density)
            // the kept set by brute force: largest |silu(gate·x)|, ties to the lower index
            const gate = matmul(toFloat32(w.layers[0]!.gateProj), x, 1, F, cfg.hiddenSize)
            const order = Array.from({ length: F }, (_, j) => j).sort((a, b) => Math.abs(silu(gate[b]!)) - Math.abs(silu(gate[a]!)) || a - b)
            const kept = new Set(order.slice(0, keep))
            const expected = maskedDense(cfg, w, x, kept)
            const rows = Int32Array.from([...kept].sort((a, b) => a - b))
            const layer = model.layers[0]!
            // fine, through the kernels exactly as Forward does it
            const up = yield* k.matmulRows(layer.upProj, x, 1, rows)
            const hb = Float32Array.from(rows, (j, i) => silu(gate[j]!) * up[i]!)
            const sparse = yield* k.matmulTransposedRows(layer.downProjT!, hb, 1, rows)
            // float64 accumulation in both; only the summation order differs
            assertClose("sparse vs masked dense", sparse, expected, { atol: 1e-6, rtol: 1e-5 })
            if (density === 1) {
              const dense = maskedDense(cfg, w, x, new Set(order))
              assertClose("density 1 vs dense", sparse, dense, { atol: 1e-6, rtol: 1e-5 })
            }
          })
        )
      }),
      { numRuns: 30 }
    ))

  it("coarse: the dense MLP over gathered gate/up rows and down_proj columns equals the dense MLP on masked activations", () =>
    fc.assert(
      fc.asyncProperty(tinyModelAndPrompt(1), fc.constantFrom(0.1, 0.5, 1), fc.nat(), async ({ config, seed }, density, shuffle) => {
        const cfg = { ...config, numHiddenLayers: 1 }
        const w = randomWeights(cfg, { seed })
        const x = Float32Array.from({ length: cfg.hiddenSize }, (_, i) => Math.cos(seed + i))
        const F = cfg.intermediateSize
        // any kept set (coarse picks it from the prompt; the MLP must not care how): a seeded shuffle's prefix
        const order = Array.from({ length: F }, (_, j) => j).sort((a, b) => ((a * 7919 + shuffle) % 101) - ((b * 7919 + shuffle) % 101) || a - b)
        const kept = order.slice(0, keptCount(F, density))
        const neurons = Int32Array.from(kept).sort()
        await run(
          Effect.gen(function* () {
            const model = yield* Model.fromWeights(cfg, w)
            const k = model.kernels
            const layer = model.layers[0]!
            const gate = yield* k.matmul(yield* k.gather(layer.gateProj, neurons, "rows"), x, 1)
            const up = yield* k.matmul(yield* k.gather(layer.upProj, neurons, "rows"), x, 1)
            const out = yield* k.matmul(yield* k.gather(layer.downProj, neurons, "columns"), yield* k.swiglu(gate, up), 1)
            // float64 accumulation in both; only the summation order differs
            assertClose("coarse vs masked dense", out, maskedDense(cfg, w, x, new Set(kept)), { atol: 1e-6, rtol: 1e-5 })
          }).pipe(Effect.scoped)
        )
      }),
      { numRuns: 30 }
    ))

  it("a whole forward at density 1.0 (fine and coarse) equals the dense forward", () =>
    fc.assert(
      fc.asyncProperty(tinyModelAndPrompt(5), async ({ config, seed, prompt }) => {
        await run(
          Effect.gen(function* () {
            const model = yield* Model.fromWeights(config, randomWeights(config, { seed }), { sparse: true })
            const tokens = Int32Array.from(prompt)
            const dense = yield* Forward.forward(model, KvCache.make(config, prompt.length), tokens, 0, "all")
            const all = Int32Array.from({ length: config.intermediateSize }, (_, j) => j)
            const k = model.kernels
            const layers: Array<Forward.CoarseLayer> = []
            for (const w of model.layers)
              layers.push({
                neurons: all,
                gateProj: yield* k.gather(w.gateProj, all, "rows"),
                upProj: yield* k.gather(w.upProj, all, "rows"),
                downProj: yield* k.gather(w.downProj, all, "columns")
              })
            for (const mlp of [{ _tag: "Fine", keep: config.intermediateSize }, { _tag: "Coarse", layers }] as const) {
              const sparse = yield* Forward.forward(model, KvCache.make(config, prompt.length), tokens, 0, "all", mlp)
              assertClose(mlp._tag, sparse, dense, { atol: 1e-5, rtol: 1e-4 })
            }
          }).pipe(Effect.scoped)
        )
      }),
      { numRuns: 15 }
    ))

  it("coarse: the kept set is the top-⌊ρ·D_ff⌋ of the Griffin statistic over the prompt's dense MLP activations", () =>
    fc.assert(
      fc.asyncProperty(tinyModelAndPrompt(6), async ({ config, seed, prompt }) => {
        const { requestMlp } = await import("../src/Sparsity.ts")
        await run(
          Effect.gen(function* () {
            const model = yield* Model.fromWeights(config, randomWeights(config, { seed }), { sparse: true })
            const F = config.intermediateSize
            const observed: Array<Float32Array> = []
            yield* Forward.forward(model, KvCache.make(config, prompt.length), Int32Array.from(prompt), 0, "last", {
              _tag: "Dense",
              observe: (l, _gate, hb) => void (observed[l] = hb.slice())
            })
            const mlp = requestMlp(model, { granularity: "coarse", density: 0.5 }, yield* Effect.scope)
            yield* Forward.forward(model, KvCache.make(config, prompt.length), Int32Array.from(prompt), 0, "last", mlp.prefill)
            const sparse = yield* mlp.sparse
            if (sparse._tag !== "Coarse") throw new Error("expected coarse")
            observed.forEach((hb, l) => {
              // direct formula: s_j = sqrt(Σ_t (Z[t,j]/‖Z[t,:]‖)²)
              const T = prompt.length
              const s = Array.from({ length: F }, (_, j) => {
                let acc = 0
                for (let t = 0; t < T; t++) {
                  const row = hb.subarray(t * F, (t + 1) * F)
                  const norm = Math.hypot(...row)
                  if (norm > 0) acc += (row[j]! / norm) ** 2
                }
                return Math.sqrt(acc)
              })
              const expected = s.map((v, j) => ({ v, j })).sort((a, b) => b.v - a.v || a.j - b.j).slice(0, keptCount(F, 0.5)).map((e) => e.j).sort((a, b) => a - b)
              expect(Array.from(sparse.layers[l]!.neurons)).toEqual(expected)
            })
          }).pipe(Effect.scoped)
        )
      }),
      { numRuns: 15 }
    ))
})
