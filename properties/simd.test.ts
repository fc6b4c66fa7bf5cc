/**
 * The simd backend (simd/) against the reference (reference/), op by op and on whole models.
 *
 * Tolerances follow docs/testing.md: |Δ| ≤ atol + rtol·|ref| + c·2⁻²⁴·Σ|terms|, with Σ|terms| computed here
 * from the reference's own inputs and the kernel's reduction order (the bound of each op is derived in
 * its comment, not tuned). Ops whose TS arithmetic is the reference's own (rmsnorm, rope, add,
 * embedding) must agree exactly. 16-bit storage is checked against the reference fed the same widened
 * values (the reference widens the very same RawTensor with Tensor.toFloat32).
 *
 * Thread-count independence is bitwise: 1 and 2 threads must produce identical bits, and the test
 * checks that the worker actually ran chunks (a pool whose worker never woke would pass vacuously).
 */
import { Effect, Exit, Layer, Scope, Stream } from "effect"
import fc from "fast-check"
import { readFileSync } from "node:fs"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { matmulAbsTerms, ReferenceKernels } from "../reference/index.ts"
import { compileWat, inlineFunctions, renderModule } from "../simd/build.mjs"
import { SimdKernels } from "../simd/index.ts"
import type { LlamaConfig } from "../src/Config.ts"
import * as Forward from "../src/Forward.ts"
import * as Generation from "../src/Generation.ts"
import { Kernels, type KernelsShape } from "../src/Kernels.ts"
import * as KvCache from "../src/KvCache.ts"
import * as Model from "../src/Model.ts"
import { randomWeights } from "../testing/RandomModel.ts"
import { argmax } from "../src/Sampler.ts"
import { type DType, fromFloat32, type RawTensor, toFloat32 } from "../src/Tensor.ts"
import { selectedRowsCase, tinyConfig } from "../testing/arbitraries.ts"
import { multiTokenEqualsDecode, overwriteEqualsFreshPrefill } from "../testing/forward.ts"
import { assertClose, bitsEqual } from "../testing/tolerance.ts"
import { mm, on, run, type Simd } from "./simdHarness.ts"
import { seeded } from "../testing/arbitraries.ts"

const U = 2 ** -24
const ref = ReferenceKernels.make()
const dtypes: ReadonlyArray<DType> = ["F32", "BF16", "F16"]

// One backend per thread count for the whole file (workers start once); closed in afterAll.
let scope: Scope.Closeable
let one: Simd
let two: Simd
beforeAll(async () => {
  scope = await run(Scope.make())
  one = await run(Scope.provide(SimdKernels.make({ threads: 1 }), scope))
  two = await run(Scope.provide(SimdKernels.make({ threads: 2 }), scope))
})
afterAll(() => run(Scope.close(scope, Exit.void)))



const matmulCase = fc.record({
  rows: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 41, max: 300 })),
  cols: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 41, max: 700 })),
  T: fc.integer({ min: 1, max: 17 }),
  dtype: fc.constantFrom(...dtypes),
  seed: fc.integer()
})

/**
 * Matmul bound. Per (row, token) the kernel sums products per 8-column block as (p0..3 + p4..7) into one
 * f32x4 accumulator, block after block (kb = ⌈cols/8⌉ blocks), then adds the 4 lanes pairwise. Each
 * element of Σ|terms| passes through at most 1 (product) + 1 (block pair) + kb (accumulator) + 2 (lanes)
 * roundings of relative size 2⁻²⁴, so c = kb + 4 bounds the error rigorously (Higham, recursive sum).
 */
const matmulC = (cols: number): number => Math.ceil(cols / 8) + 4

describe("simd matmul", () => {
  it("agrees with the reference on f32/bf16/f16 storage, any shape, T = 1..17", () =>
    fc.assert(
      fc.asyncProperty(matmulCase, async ({ rows, cols, T, dtype, seed }) => {
        const t = fromFloat32("w", dtype, [rows, cols], seeded(seed, rows * cols))
        const x = seeded(seed ^ 0x5bd1e995, T * cols, 4)
        const got = await mm(two, t, x, T)
        const want = await mm(ref, t, x, T)
        const absTerms = matmulAbsTerms(toFloat32(t), x, T, rows, cols)
        assertClose(`matmul ${dtype} ${rows}×${cols} T=${T}`, got, want, { atol: 0, rtol: 0, c: matmulC(cols) }, absTerms)
      }),
      { numRuns: 60 }
    ))

  it("a wide matrix (2048 columns, 64 rows) is within the bound too", async () => {
    for (const dtype of dtypes) {
      const t = fromFloat32("w", dtype, [64, 2048], seeded(7, 64 * 2048))
      const x = seeded(8, 3 * 2048)
      const got = await mm(two, t, x, 3)
      const want = await mm(ref, t, x, 3)
      assertClose(`matmul ${dtype} 64×2048`, got, want, { atol: 0, rtol: 0, c: matmulC(2048) }, matmulAbsTerms(toFloat32(t), x, 3, 64, 2048))
    }
  })

  it("is bitwise independent of the thread count and of T (a token's row never depends on its batch)", () =>
    fc.assert(
      fc.asyncProperty(matmulCase, async ({ rows, cols, T, dtype, seed }) => {
        const t = fromFloat32("w", dtype, [rows, cols], seeded(seed, rows * cols))
        const x = seeded(seed + 1, T * cols)
        const a = await mm(one, t, x, T)
        const b = await mm(two, t, x, T)
        bitsEqual("1 vs 2 threads", a, b)
        for (let i = 0; i < T; i++) {
          const single = await mm(two, t, x.slice(i * cols, (i + 1) * cols), 1)
          bitsEqual(`token ${i} alone vs in a batch of ${T}`, single, b.subarray(i * rows, (i + 1) * rows))
        }
      }),
      { numRuns: 30 }
    ))

  it("the worker thread takes part (so the bitwise property above is not vacuous)", async () => {
    const t = fromFloat32("w", "BF16", [1024, 1024], seeded(3, 1024 * 1024))
    const x = seeded(4, 1024)
    const deadline = Date.now() + 20_000
    while (two.runtime.chunkCounts()[1]! === 0 && Date.now() < deadline) {
      await mm(two, t, x, 1)
      await new Promise((r) => setTimeout(r, 1))
    }
    expect(two.runtime.chunkCounts()[1]).toBeGreaterThan(0)
    bitsEqual("1 vs 2 threads, 1024×1024", await mm(one, t, x, 1), await mm(two, t, x, 1))
  })
})

describe("simd sparse MLP products", () => {

  it("matmulRows equals the selected rows of the dense matmul, bitwise, and agrees with the reference", () =>
    fc.assert(
      fc.asyncProperty(selectedRowsCase, async ({ c: { rows, cols, T, dtype, seed }, sel: unsorted }) => {
        const sel = [...unsorted].sort((a, b) => a - b)
        const t = fromFloat32("w", dtype, [rows, cols], seeded(seed, rows * cols))
        const x = seeded(seed + 3, T * cols, 4)
        const picked = Int32Array.from(sel)
        const rowsOf = (k: KernelsShape) =>
          on(k, (b) => Effect.gen(function* () {
            return yield* b.read(yield* b.matmulRows(yield* b.matrix(t), yield* b.upload(x, T, cols), yield* b.selection(picked)))
          }))
        const got = await rowsOf(two)
        const dense = await mm(two, t, x, T)
        const n = sel.length
        for (let tk = 0; tk < T; tk++) bitsEqual(`token ${tk}`, got.subarray(tk * n, (tk + 1) * n), Float32Array.from(sel, (r) => dense[tk * rows + r]!))
        const want = await rowsOf(ref)
        const all = matmulAbsTerms(toFloat32(t), x, T, rows, cols)
        const absTerms = Float32Array.from({ length: T * n }, (_, i) => all[Math.floor(i / n) * rows + sel[i % n]!]!)
        assertClose(`matmulRows ${dtype}`, got, want, { atol: 0, rtol: 0, c: matmulC(cols) }, absTerms)
        bitsEqual("matmulRows 1 vs 2 threads", await rowsOf(one), got)
      }),
      { numRuns: 40 }
    ))

  /**
   * matmulTransposedRows bound: each output element is a sum of n products h·w, added into an f32
   * accumulator at most one row at a time (bf16 adds 4-row partial sums, which is shallower), so it
   * passes through at most n + 2 roundings: c = n + 2.
   */
  it("matmulTransposedRows agrees with the reference and is thread-count independent", () =>
    fc.assert(
      fc.asyncProperty(selectedRowsCase, async ({ c: { rows: F, cols: D, T, dtype, seed }, sel: unsorted }) => {
        const sel = [...unsorted].sort((a, b) => a - b)
        const t = fromFloat32("wT", dtype, [F, D], seeded(seed, F * D))
        const n = sel.length
        const h = seeded(seed + 5, T * n, 4)
        const picked = Int32Array.from(sel)
        const transposed = (k: KernelsShape) =>
          on(k, (b) => Effect.gen(function* () {
            return yield* b.read(yield* b.matmulTransposedRows(yield* b.matrix(t), yield* b.upload(h, T, n), yield* b.selection(picked)))
          }))
        const got = await transposed(two)
        const want = await transposed(ref)
        const w = toFloat32(t)
        const absTerms = new Float64Array(T * D)
        for (let tk = 0; tk < T; tk++)
          for (let i = 0; i < n; i++) for (let d = 0; d < D; d++) absTerms[tk * D + d]! += Math.abs(h[tk * n + i]! * w[sel[i]! * D + d]!)
        assertClose(`matmulTransposedRows ${dtype} n=${n}`, got, want, { atol: 0, rtol: 0, c: n + 2 }, absTerms)
        bitsEqual("1 vs 2 threads", await transposed(one), got)
      }),
      { numRuns: 40 }
    ))
})

describe("simd elementwise and small ops", () => {
  it("embedding rows equal the reference's widened rows exactly", () =>
    fc.assert(
      fc.asyncProperty(
        fc.record({ rows: fc.integer({ min: 1, max: 60 }), cols: fc.integer({ min: 1, max: 90 }), dtype: fc.constantFrom(...dtypes), seed: fc.integer() }),
        fc.array(fc.nat(), { minLength: 1, maxLength: 9 }),
        async ({ rows, cols, dtype, seed }, picks) => {
          const t = fromFloat32("e", dtype, [rows, cols], seeded(seed, rows * cols))
          const tokens = Int32Array.from(picks, (p) => p % rows)
          const embed = (k: KernelsShape) =>
            on(k, (b) => Effect.gen(function* () {
              return yield* b.read(yield* b.embedding(yield* b.matrix(t), yield* b.input(tokens, Int32Array.from(tokens, (_, i) => i), tokens.length)))
            }))
          const got = await embed(two)
          const want = await embed(ref)
          bitsEqual("embedding", got, want)
        }
      ),
      { numRuns: 40 }
    ))

  it("f16 widening in registers equals Tensor.f16ToF32 on every one of the 65536 halves", async () => {
    // 1 row × 65536 columns of every bit pattern, times x = 1 in one column at a time would be slow; instead
    // a (65536, 1) matrix times x = [1]: each output is exactly its widened weight (one product, no sum).
    const bits = new Uint8Array(65536 * 2)
    for (let h = 0; h < 65536; h++) {
      bits[2 * h] = h & 0xff
      bits[2 * h + 1] = h >> 8
    }
    const t: RawTensor = { name: "all-halves", dtype: "F16", shape: [65536, 1], data: bits }
    const got = await mm(two, t, Float32Array.of(1), 1)
    const want = toFloat32(t)
    for (let h = 0; h < 65536; h++) {
      const ok = Object.is(got[h], want[h]) || (Number.isNaN(got[h]) && Number.isNaN(want[h])) || (got[h] === 0 && want[h] === 0)
      if (!ok) throw new Error(`half 0x${h.toString(16)}: ${got[h]} vs ${want[h]}`)
    }
  })

  it("rmsnorm, rope and add equal the reference exactly (the same float64 arithmetic)", () =>
    fc.assert(
      fc.asyncProperty(
        fc.record({ T: fc.integer({ min: 1, max: 17 }), heads: fc.integer({ min: 1, max: 4 }), half: fc.integer({ min: 1, max: 9 }), seed: fc.integer() }),
        async ({ T, heads, half, seed }) => {
          const Dh = 2 * half
          const D = heads * Dh
          const x = seeded(seed, T * D, 4)
          const w = fromFloat32("n", "BF16", [D], seeded(seed + 1, D))
          const eps = 1e-5
          const positions = Int32Array.from({ length: T }, (_, t) => (seed >>> 3) % 500 + t)
          const invFreq = Float32Array.from({ length: half }, (_, i) => 10000 ** (-i / half))
          const y = seeded(seed + 2, T * D)
          const ops = (k: KernelsShape) =>
            on(k, (b) => Effect.gen(function* () {
              const xa = yield* b.upload(x, T, D)
              const input = yield* b.input(new Int32Array(T), positions, Math.max(...positions) + 1)
              return [
                yield* b.read(yield* b.rmsnorm(xa, yield* b.vector(w), eps)),
                yield* b.read(yield* b.rope(xa, heads, Dh, input, invFreq)),
                yield* Effect.flatMap(b.upload(y, T, D), (ya) => Effect.andThen(b.accumulate(xa, ya), b.read(xa)))
              ] as const
            }))
          const [got, want] = [await ops(two), await ops(ref)]
          bitsEqual("rmsnorm", got[0], want[0])
          bitsEqual("rope", got[1], want[1])
          bitsEqual("add", got[2], want[2])
        }
      ),
      { numRuns: 40 }
    ))

  /**
   * swiglu bound: the kernel computes g / (1 + exp(−g)) · u in f32 with a ~1-ulp exp; each of exp, +,
   * ÷, × rounds once and exp's error passes through 1 + e scaled by e/(1+e) ≤ 1, so rtol = 8·2⁻²⁴
   * (exp 3 ulp + 3 roundings + the reference's own final rounding, with margin). atol covers g < −86.5
   * and g > 88.7, where the kernel's exp saturates and the product is below 1e-35 on both sides.
   */
  it("swiglu agrees within a few ulp, including saturated and non-finite gates", () =>
    fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 3000 }), fc.integer(), async (n, seed) => {
        const gate = seeded(seed, n, 30)
        const up = seeded(seed + 1, n, 4)
        for (const [i, v] of [[0, Infinity], [1, -Infinity], [2, NaN], [3, -200], [4, 200], [5, -88.9], [6, 0]] as const) if (i < n) gate[i] = v
        const sw = (k: KernelsShape) =>
          on(k, (b) => Effect.gen(function* () {
            return yield* b.read(yield* b.swiglu(yield* b.upload(gate, 1, n), yield* b.upload(up, 1, n)))
          }))
        assertClose("swiglu", await sw(two), await sw(ref), { atol: 1e-35, rtol: 8 * U })
      }),
      { numRuns: 40 }
    ))
})

/**
 * Attention bound, per output element j of (t, h), with n visible slots, pₛ the reference weights:
 * scores are f32 dots over ⌈Dh/4⌉ f32x4 steps + 2 lane adds, so |Δsₛ| ≤ (⌈Dh/4⌉+3)·2⁻²⁴·S1ₛ with
 * S1ₛ = scale·Σᵢ|qᵢkₛᵢ|; softmax turns score errors into relative weight errors ≤ 2·maxₛ|Δsₛ|; exp
 * adds ~3 ulp, the f32 sum of n exps n ulp, the weighted sum of values n + 1 ulp, the final scale 1.
 * So |Δoutⱼ| ≤ 2⁻²⁴ · Σₛ pₛ|vₛⱼ| · (2(⌈Dh/4⌉+3)·maxₛ S1ₛ + 2n + 6): that magnitude is Σ|terms|, c = 1.
 */
const attentionTerms = (
  q: Float32Array,
  keys: Float32Array,
  values: Float32Array,
  c: { T: number; H: number; Hkv: number; Dh: number; positions: Int32Array; S: number; mask?: Uint8Array | undefined }
) => {
  const { T, H, Hkv, Dh, positions, S, mask } = c
  const scale = 1 / Math.sqrt(Dh)
  const out = new Float64Array(T * H * Dh)
  for (let t = 0; t < T; t++)
    for (let h = 0; h < H; h++) {
      const kvh = Math.floor(h / (H / Hkv))
      const n = mask ? S : positions[t]! + 1
      const sees = (j: number) => !mask || mask[t * S + j] === 1
      const s = new Float64Array(n).fill(-Infinity)
      let maxS = -Infinity
      let maxS1 = 0
      for (let j = 0; j < n; j++) {
        if (!sees(j)) continue
        let dot = 0
        let abs = 0
        for (let i = 0; i < Dh; i++) {
          const p = q[(t * H + h) * Dh + i]! * keys[(j * Hkv + kvh) * Dh + i]!
          dot += p
          abs += Math.abs(p)
        }
        s[j] = dot * scale
        maxS = Math.max(maxS, s[j]!)
        maxS1 = Math.max(maxS1, abs * scale)
      }
      let sum = 0
      for (let j = 0; j < n; j++) if (sees(j)) sum += Math.exp(s[j]! - maxS)
      const factor = 2 * (Math.ceil(Dh / 4) + 3) * maxS1 + 2 * n + 6
      for (let i = 0; i < Dh; i++) {
        let m = 0
        for (let j = 0; j < n; j++) if (sees(j)) m += (Math.exp(s[j]! - maxS) / sum) * Math.abs(values[(j * Hkv + kvh) * Dh + i]!)
        out[(t * H + h) * Dh + i] = m * factor
      }
    }
  return out
}

/** Attention through a KV store written as a forward pass would (the past, then this call's slots). */
const attend = (
  k: KernelsShape,
  q: Float32Array,
  keys: Float32Array,
  values: Float32Array,
  c: { T: number; H: number; Hkv: number; Dh: number; S: number; positions: Int32Array; mask?: Uint8Array }
) =>
  on(k, (b) => Effect.gen(function* () {
    const kv = yield* b.kvStore(2, c.Hkv, c.Dh, c.S + 3) // capacity beyond kvLength; the second layer is the one read
    yield* b.kvWrite(kv, 1, 0, yield* b.upload(keys, c.S, c.Hkv * c.Dh), yield* b.upload(values, c.S, c.Hkv * c.Dh))
    const input = yield* b.input(new Int32Array(c.T), c.positions, c.S, c.mask)
    return yield* b.read(yield* b.attention(yield* b.upload(q, c.T, c.H * c.Dh), kv, 1, input, { numHeads: c.H, numKeyValueHeads: c.Hkv, headDim: c.Dh }))
  }))

describe("simd attention", () => {
  const attentionCase = fc
    .record({
      Hkv: fc.integer({ min: 1, max: 3 }),
      group: fc.integer({ min: 1, max: 9 }), // ≥ 4: heads scored four at a time, then the rest one at a time
      Dh: fc.oneof(fc.constant(64), fc.integer({ min: 1, max: 70 })), // 64: the straight-line score kernel
      T: fc.integer({ min: 1, max: 17 }),
      past: fc.integer({ min: 0, max: 40 }),
      seed: fc.integer()
    })
    .map((r) => ({ ...r, H: r.Hkv * r.group, S: r.past + r.T }))

  it("agrees with the reference (GQA, any head dim, T = 1..17 after a past) and is thread-count independent", () =>
    fc.assert(
      fc.asyncProperty(attentionCase, async ({ H, Hkv, Dh, T, past, S, seed }) => {
        const q = seeded(seed, T * H * Dh, 2)
        const keys = seeded(seed + 1, S * Hkv * Dh, 2)
        const values = seeded(seed + 2, S * Hkv * Dh, 2)
        const positions = Int32Array.from({ length: T }, (_, t) => past + t)
        const c = { T, H, Hkv, Dh, S, positions }
        const got = await attend(two, q, keys, values, c)
        const want = await attend(ref, q, keys, values, c)
        assertClose(`attention H=${H} Hkv=${Hkv} Dh=${Dh} T=${T} S=${S}`, got, want, { atol: 0, rtol: 0, c: 1 }, attentionTerms(q, keys, values, c))
        bitsEqual("attention 1 vs 2 threads", await attend(one, q, keys, values, c), got)
      }),
      { numRuns: 50 }
    ))
})

describe("simd tree attention", () => {
  it("a (T, S) visibility mask selects exactly the marked slots (Sirius tree verification)", () =>
    fc.assert(
      fc.asyncProperty(
        fc.record({
          Hkv: fc.integer({ min: 1, max: 2 }),
          group: fc.integer({ min: 1, max: 6 }),
          Dh: fc.integer({ min: 1, max: 40 }),
          T: fc.integer({ min: 1, max: 17 }),
          past: fc.integer({ min: 0, max: 30 }),
          seed: fc.integer(),
          maskSeed: fc.integer()
        }),
        async ({ Hkv, group, Dh, T, past, seed, maskSeed }) => {
          const H = Hkv * group
          const S = past + T
          const q = seeded(seed, T * H * Dh, 2)
          const keys = seeded(seed + 1, S * Hkv * Dh, 2)
          const values = seeded(seed + 2, S * Hkv * Dh, 2)
          const bits = seeded(maskSeed, T * S, 1)
          const mask = Uint8Array.from(bits, (b) => (b > 0 ? 1 : 0))
          for (let t = 0; t < T; t++) mask[t * S + ((maskSeed >>> 0) + t) % S] = 1 // every query sees a slot
          const positions = Int32Array.from({ length: T }, (_, t) => past + t)
          const c = { T, H, Hkv, Dh, S, positions, mask }
          const got = await attend(two, q, keys, values, c)
          const want = await attend(ref, q, keys, values, c)
          assertClose(`masked attention T=${T} S=${S}`, got, want, { atol: 0, rtol: 0, c: 1 }, attentionTerms(q, keys, values, c))
          bitsEqual("masked attention 1 vs 2 threads", await attend(one, q, keys, values, c), got)
        }
      ),
      { numRuns: 40 }
    ))
})

describe("simd whole model", () => {
  /**
   * Greedy decoding of `steps` tokens after `prompt`. Returns the ids and, per step, the reference-free
   * margin between the two best logits (to tell a real disagreement from a near-tie).
   */
  const greedy = (kernels: KernelsShape, config: LlamaConfig, seed: number, dtype: DType, prompt: ReadonlyArray<number>, steps: number) =>
    Effect.gen(function* () {
      const model = yield* Effect.provideService(Model.fromWeights(config, randomWeights(config, { seed, dtype })), Kernels, kernels)
      const cache = yield* KvCache.make(kernels, config, prompt.length + steps)
      let logits = yield* Forward.forward(model, cache, Int32Array.from(prompt), 0, "last")
      const ids: Array<number> = []
      const margins: Array<number> = []
      for (let i = 0; i < steps; i++) {
        const id = argmax(logits)
        const sorted = Float32Array.from(logits).sort()
        margins.push(sorted[sorted.length - 1]! - sorted[sorted.length - 2]!)
        ids.push(id)
        if (i + 1 < steps) logits = yield* Forward.forward(model, cache, Int32Array.of(id), prompt.length + i, "last")
      }
      return { ids, margins }
    })

  it("greedy tokens are identical to the reference backend's (f32, bf16, f16 weights; 1 and 2 threads)", () =>
    fc.assert(
      fc.asyncProperty(
        tinyConfig,
        fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        fc.constantFrom(...dtypes),
        fc.array(fc.nat(), { minLength: 1, maxLength: 6 }),
        async (config, seed, dtype, raw) => {
          const prompt = raw.map((p) => p % config.vocabSize)
          const steps = 8
          const want = await run(Effect.scoped(greedy(ref, config, seed, dtype, prompt, steps)))
          for (const k of [one, two]) {
            const got = await run(Effect.scoped(greedy(k, config, seed, dtype, prompt, steps)))
            for (let i = 0; i < steps; i++) {
              if (got.ids[i] === want.ids[i]) continue
              // Only a near-tie in the reference may flip (its two best logits closer than f32 noise).
              expect(want.margins[i], `${k.name} step ${i}: ${got.ids[i]} vs ${want.ids[i]}`).toBeLessThan(1e-4)
              break
            }
          }
        }
      ),
      { numRuns: 20 }
    ))

  // The simd kernels are batch-invariant (see the matmul property above), so these hold exactly.
  const exact = { atol: 0, rtol: 0 }
  it("a multi-token forward equals token-by-token decode, bitwise", () => multiTokenEqualsDecode(Layer.orDie(SimdKernels.layer({ threads: 2 })), exact, 10))
  it("overwriting a window then truncating equals a fresh prefill, bitwise", () => overwriteEqualsFreshPrefill(Layer.orDie(SimdKernels.layer({ threads: 2 })), exact, 10))
})

describe("simd keeps activations and the KV cache in its memory", () => {
  const config: LlamaConfig = {
    architecture: "llama", vocabSize: 300, hiddenSize: 128, intermediateSize: 256, numHiddenLayers: 3, numAttentionHeads: 4, numKeyValueHeads: 2, headDim: 32,
    maxPositionEmbeddings: 512, rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: undefined, tieWordEmbeddings: false, attentionBias: false, bosTokenId: undefined, eosTokenIds: []
  }

  it("a decode step copies in only its position and copies out only the logits", async () => {
    const traffic = await run(
      Effect.scoped(
        Effect.gen(function* () {
          const model = yield* Effect.provideService(Model.fromWeights(config, randomWeights(config, { seed: 4, dtype: "BF16" })), Kernels, two)
          const cache = yield* KvCache.make(two, config, 64)
          yield* Forward.forward(model, cache, Int32Array.of(1, 2, 3, 4, 5), 0, "last")
          const before = { ...two.runtime.traffic }
          yield* Forward.forward(model, cache, Int32Array.of(6), 5, "last")
          return { toWasm: two.runtime.traffic.toWasm - before.toWasm, fromWasm: two.runtime.traffic.fromWasm - before.fromWasm }
        })
      )
    )
    expect(traffic).toEqual({ toWasm: 4, fromWasm: config.vocabSize * 4 })
  })

  it("a forward pass frees its activations, and a request its KV cache, when their scopes close", async () => {
    const used = await run(
      Effect.scoped(
        Effect.gen(function* () {
          const model = yield* Effect.provideService(Model.fromWeights(config, randomWeights(config, { seed: 5, dtype: "BF16" })), Kernels, two)
          // a first request fills the RoPE table (cos/sin per position, kept for the runtime's life)
          yield* Stream.runDrain(Generation.generate(model, { prompt: [1, 2, 3], maxNewTokens: 20 }))
          const base = two.memory!().usedBytes
          const events = yield* Stream.runCollect(Generation.generate(model, { prompt: [4, 5, 6], maxNewTokens: 20, mode: "sparse", sparsity: { granularity: "coarse", density: 0.5 } }))
          return { base, after: two.memory!().usedBytes, finished: Array.from(events).at(-1)!._tag }
        })
      )
    )
    expect(used.finished).toBe("Finished")
    expect(used.after).toBe(used.base)
  })
})

describe("simd memory and build", () => {
  it("refuses weights beyond the memory limit with a KernelError that suggests bf16", async () => {
    const small = await run(Effect.scoped(Effect.flatMap(SimdKernels.make({ threads: 1, maxMemoryBytes: 1 << 20 }), (k) =>
      Effect.flip(k.matrix(fromFloat32("big", "F32", [512, 1024], new Float32Array(512 * 1024)))))))
    expect(small._tag).toBe("KernelError")
    expect(small.message).toMatch(/bf16/)
  })

  it("the embedded wasm is what kernels.wat compiles to (run `node simd/build.mjs` after editing it)", async () => {
    const wat = readFileSync(new URL("../simd/kernels.wat", import.meta.url), "utf8")
    const generated = readFileSync(new URL("../simd/kernels.wasm.ts", import.meta.url), "utf8")
    expect(generated).toBe(renderModule(await compileWat(wat)))
  })

  it("build.mjs expands ;; @inline functions at their calls: params, locals and labels renamed per call, return → br", async () => {
    const source = `(module
      ;; @inline
      (func $clamp (param $x i32) (result i32) (local $y i32)
        (local.set $y (local.get $x))
        (block $done (br_if $done (i32.lt_s (local.get $y) (i32.const 10))) (return (i32.const 10)))
        (local.get $y))
      (func (export "f") (param $a i32) (param $b i32) (result i32)
        (i32.add (call $clamp (local.get $a)) (call $clamp (call $clamp (local.get $b))))))`
    const inlined = inlineFunctions(source)
    expect(inlined.slice(inlined.indexOf('(export "f")'))).not.toMatch(/\(call /)
    const { relaxed } = await compileWat(source)
    const f = (new WebAssembly.Instance(new WebAssembly.Module(new Uint8Array(relaxed))).exports as { f: (a: number, b: number) => number }).f
    expect([f(3, 20), f(12, 4), f(-5, -7)]).toEqual([13, 14, -12])
  })

  it("names the backend with its threads and weight dtypes", () => {
    expect(two.name).toMatch(/^simd\(2 threads, /)
    expect(one.name).toMatch(/^simd\(1 thread, /)
  })
})
