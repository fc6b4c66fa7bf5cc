/**
 * simd's quantized kernels (Q8_0, Q4_0, Q4_K, Q6_K weights on integer dot products) against the reference's
 * exact dequantization, op by op: dense matmul, selected rows, fine sparsity's transposed down_proj, coarse
 * sparsity's gathers, embedding rows; thread-count independence and batch invariance bitwise.
 *
 * The kernels round activations the way llama.cpp's CPU path does before a quantized matmul (Q8_0 blocks of
 * 32 for Q8_0/Q4_0 weights, Q8_K blocks of 256 for the K-quants; docs/gguf.md), while the reference
 * multiplies exact f32 activations. So each comparison has a derived bound with three parts, per output
 * element (row r, token t), w the reference's dequantized weights, x the exact activations, x̂ the rounded
 * ones (properties/ggmlActivations.ts computes them; the step bound below is checked against it):
 *
 * 1. Activation rounding: |S(x̂) − S(x)| ≤ Σ_c |w_c|·e(c), with e the bound on |x̂_c − x_c| in c's block,
 *    from the Q8 step (amax = max |x| of the block, u = 2⁻²⁴):
 *    - Q8_0 (x86 quantize_row_q8_0): q = rne(fl(x·fl(127/amax))) is within ½ + 127·2u of x·127/amax, and
 *      the stored d = fp16(fl(amax/127)) within amax/127·(2⁻¹¹ + u) + 2⁻²⁵ (f16 rounding, subnormal
 *      spacing 2⁻²⁴) of amax/127; |d·q − x| ≤ amax/254 + amax·2⁻²² + 127·(amax/127·(2⁻¹¹ + u) + 2⁻²⁵),
 *      so e = amax·(1/254 + 2⁻¹¹ + 2⁻²¹) + 2⁻¹⁸.
 *    - Q8_K (quantize_row_q8_K_ref): iscale = fl(−127/max), q = min(127, rne(fl(iscale·x))) is within ½ +
 *      127·2u of iscale·x (the cap only moves values above 127 by at most that), d = fl(1/iscale) within
 *      2u·amax/127 of amax/127: e = amax·(1/254 + 2⁻²⁰).
 * 2. The kernel's float roundings, relative to Σ|terms| = Σ_c |x̂_c|·A_c, A_c the magnitude of the
 *    weight's parts as the kernel multiplies them (Q8_0, Q4_0: |w_c|, exact; Q4_K: |d·sc·q| + |dmin·m|, two
 *    terms; Q6_K: |d·sc·(q − 32)|). Each block's term passes through fl(d_w·d_x), the i32 → f32
 *    conversion (exact below 2²⁴), the multiply (fused with the add under FMA), one accumulation per later
 *    block (Q4_K: two, sc and min terms) and the two lane sums: c_q = nb + 5 (Q4_K 2·nb + 5) roundings for
 *    nb blocks per row. The reference's f32 dequantization differs from the kernel's exact integer
 *    arithmetic by ≤ 3u·A_c (Q4_K fl(fl(d·sc)·q) − fl(dmin·m), Q6_K fl(fl(d·sc)·(q − 32))), so c = c_q + 3.
 * 3. The reference's own rounding of its float64 sum: 2u·Σ_c |w_c·x_c|.
 *
 * The tight check feeds the reference x̂ itself (the emulation): then only parts 2 and 3 remain, a bound
 * some 10⁴ times smaller, which a wrong scale or nibble does not fit (each was planted once while writing
 * this file: nibble halves swapped in $q4kc, a Q4_K sub-block scale index off by one, the Q6_K −32
 * offset dropped, a Q8_0 block scale taken from the next block; every one failed here).
 */
import { Effect, Exit, Scope } from "effect"
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ReferenceKernels } from "../reference/index.ts"
import { SimdKernels } from "../simd/index.ts"
import { matrixLayout, packQuantMatrix, quantRowBlocks, quantRowBytes, storageOf } from "../simd/layout.ts"
import { type KernelError, Kernels, type KernelsShape, type WeightShape } from "../src/Kernels.ts"
import type { LlamaConfig } from "../src/Config.ts"
import * as Model from "../src/Model.ts"
import { randomWeights } from "../testing/RandomModel.ts"
import { q4kScaleMin, type QuantType, quantLayouts } from "../src/Quant.ts"
import { f16BitsToF32Bits, f32BitsToF16Bits } from "../src/Half.ts"
import { f16ToF32, fromFloat32, type RawTensor, toFloat32, transpose } from "../src/Tensor.ts"
import { seeded } from "../testing/arbitraries.ts"
import { assertClose, bitsEqual } from "../testing/tolerance.ts"
import { roundActivations } from "./ggmlActivations.ts"
import { mm, on, rowGatherEqualsMatmulRows, run, type Simd } from "./simdHarness.ts"

const U = 2 ** -24
const ref = ReferenceKernels.make()

let scope: Scope.Closeable
let one: Simd
let two: Simd
beforeAll(async () => {
  scope = await run(Scope.make())
  one = await run(Scope.provide(SimdKernels.make({ threads: 1 }), scope))
  two = await run(Scope.provide(SimdKernels.make({ threads: 2 }), scope))
})
afterAll(() => run(Scope.close(scope, Exit.void)))

const quantTypes: ReadonlyArray<QuantType> = ["Q8_0", "Q4_0", "Q4_K", "Q6_K"]
const blockOf = (q: QuantType): number => quantLayouts[q].blockSize

/** A quantized matmul case: cols a whole number of blocks (up to 24 Q8_0/Q4_0 blocks, 3 super-blocks), any rows, T = 1..17. */
const quantCase = fc
  .record({ type: fc.constantFrom(...quantTypes), rows: fc.oneof(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 13, max: 150 })), blocks: fc.integer({ min: 1, max: 24 }), T: fc.integer({ min: 1, max: 17 }), seed: fc.integer() })
  .map(({ blocks, ...c }) => ({ ...c, cols: blockOf(c.type) === 256 ? 256 * (1 + (blocks % 3)) : 32 * blocks }))

/** Weights with a spread of magnitudes across rows and blocks (so block scales differ), as a quantized tensor. */
const weights = (type: QuantType, rows: number, cols: number, seed: number): RawTensor => {
  const v = seeded(seed, rows * cols)
  const s = seeded(seed ^ 0x2545f491, rows * cols / 32, 1)
  for (let i = 0; i < v.length; i++) v[i] = v[i]! * (1 + s[i >> 5]!) // block magnitudes 0..2×
  return fromFloat32("w", type, [rows, cols], v)
}

/** e(c): the bound on |x̂_c − x_c| of each activation (see the header), (T, cols). */
const activationStep = (type: QuantType, x: Float32Array): Float64Array => {
  const block = type === "Q8_0" || type === "Q4_0" ? 32 : 256
  const e = new Float64Array(x.length)
  for (let at = 0; at < x.length; at += block) {
    let amax = 0
    for (let j = 0; j < block; j++) amax = Math.max(amax, Math.abs(x[at + j]!))
    const bound = block === 32 ? amax * (1 / 254 + 2 ** -11 + 2 ** -21) + 2 ** -18 : amax * (1 / 254 + 2 ** -20)
    e.fill(bound, at, at + block)
  }
  return e
}

/** A_c: the magnitude of each weight's parts as the kernel multiplies them (see the header), (rows, cols). */
const partMagnitudes = (t: RawTensor): Float64Array => {
  const type = t.dtype as QuantType
  const [rows, cols] = t.shape as [number, number]
  const { blockSize, blockBytes } = quantLayouts[type]
  const out = new Float64Array(rows * cols)
  const d16 = (at: number) => f16ToF32(t.data[at]! | (t.data[at + 1]! << 8))
  for (let b = 0; b < (rows * cols) / blockSize; b++) {
    const at = b * blockBytes
    const y = b * blockSize
    if (type === "Q8_0" || type === "Q4_0") {
      const w = toFloat32({ ...t, shape: [blockSize], data: t.data.subarray(at, at + blockBytes) })
      for (let j = 0; j < blockSize; j++) out[y + j] = Math.abs(w[j]!)
    } else if (type === "Q4_K") {
      const d = d16(at)
      const dmin = d16(at + 2)
      for (let j = 0; j < 256; j++) {
        const [sc, m] = q4kScaleMin(t.data, at + 4, j >> 5)
        const chunk = j >> 6
        const byte = t.data[at + 16 + 32 * chunk + (j & 31)]!
        const q = (j & 32) === 0 ? byte & 15 : byte >> 4
        out[y + j] = Math.abs(d * sc * q) + Math.abs(dmin * m)
      }
    } else {
      const w = toFloat32({ ...t, shape: [256], data: t.data.subarray(at, at + blockBytes) })
      for (let j = 0; j < 256; j++) out[y + j] = Math.abs(w[j]!) * (1 + 2 * U)
    }
  }
  return out
}

/**
 * The per-element bound of the header, as absTerms for assertClose with c = 1: parts 1 (when `step` is
 * given: comparing against exact activations), 2 and 3.
 */
const quantBound = (t: RawTensor, x: Float32Array, xHat: Float32Array, T: number, step: Float64Array | undefined): Float64Array => {
  const type = t.dtype as QuantType
  const [rows, cols] = t.shape as [number, number]
  const w = toFloat32(t)
  const A = partMagnitudes(t)
  const nb = cols / blockOf(type)
  const c = (type === "Q4_K" ? 2 * nb : nb) + 5 + 3
  const out = new Float64Array(T * rows)
  for (let tk = 0; tk < T; tk++)
    for (let r = 0; r < rows; r++) {
      let act = 0
      let kernel = 0
      let own = 0
      for (let j = 0; j < cols; j++) {
        const wi = r * cols + j
        const xi = tk * cols + j
        if (step) act += Math.abs(w[wi]!) * step[xi]!
        kernel += Math.abs(xHat[xi]!) * A[wi]!
        own += Math.abs(w[wi]! * x[xi]!)
      }
      out[tk * rows + r] = (act + c * U * kernel + 2 * U * own) / U
    }
  return out
}

describe("simd quantized matmul", () => {
  it("the activation step bound holds for llama.cpp's rounding (ggmlActivations)", () =>
    fc.assert(
      fc.property(fc.constantFrom<QuantType>("Q8_0", "Q4_K"), fc.integer(), fc.double({ min: 1e-6, max: 1e4, noNaN: true }), (type, seed, range) => {
        const x = seeded(seed, 512, range)
        const xHat = roundActivations(type, x)
        const e = activationStep(type, x)
        for (let i = 0; i < x.length; i++) expect(Math.abs(xHat[i]! - x[i]!)).toBeLessThanOrEqual(e[i]!)
      }),
      { numRuns: 100 }
    ))

  it("agrees with the reference's exact dequantization on exact activations (activation rounding in the bound)", () =>
    fc.assert(
      fc.asyncProperty(quantCase, async ({ type, rows, cols, T, seed }) => {
        const t = weights(type, rows, cols, seed)
        const x = seeded(seed ^ 0x5bd1e995, T * cols, 4)
        const got = await mm(two, t, x, T)
        const want = await mm(ref, t, x, T)
        assertClose(`${type} ${rows}×${cols} T=${T}`, got, want, { atol: 0, rtol: 0, c: 1 }, quantBound(t, x, roundActivations(type, x), T, activationStep(type, x)))
      }),
      { numRuns: 60 }
    ))

  it("agrees with the reference fed llama.cpp's rounded activations to the float bound (tight)", () =>
    fc.assert(
      fc.asyncProperty(quantCase, async ({ type, rows, cols, T, seed }) => {
        const t = weights(type, rows, cols, seed)
        const x = seeded(seed ^ 0x5bd1e995, T * cols, 4)
        const xHat = roundActivations(type, x)
        const got = await mm(two, t, x, T)
        const want = await mm(ref, t, xHat, T)
        assertClose(`${type} ${rows}×${cols} T=${T} (tight)`, got, want, { atol: 0, rtol: 0, c: 1 }, quantBound(t, xHat, xHat, T, undefined))
      }),
      { numRuns: 60 }
    ))

  it("is bitwise independent of the thread count and of T (a token's row never depends on its batch)", () =>
    fc.assert(
      fc.asyncProperty(quantCase, async ({ type, rows, cols, T, seed }) => {
        const t = weights(type, rows, cols, seed)
        const x = seeded(seed + 1, T * cols, 3)
        const a = await mm(one, t, x, T)
        const b = await mm(two, t, x, T)
        bitsEqual("1 vs 2 threads", a, b)
        for (let i = 0; i < T; i++) bitsEqual(`token ${i} alone vs in a batch of ${T}`, await mm(two, t, x.slice(i * cols, (i + 1) * cols), 1), b.subarray(i * rows, (i + 1) * rows))
      }),
      { numRuns: 30 }
    ))

  it("the worker takes part in a quantized matmul (so the bitwise property is not vacuous)", async () => {
    const t = weights("Q4_K", 1024, 1024, 3)
    const x = seeded(4, 1024)
    const before = two.runtime.chunkCounts()[1]!
    const deadline = Date.now() + 20_000
    while (two.runtime.chunkCounts()[1]! === before && Date.now() < deadline) await mm(two, t, x, 1)
    expect(two.runtime.chunkCounts()[1]).toBeGreaterThan(before)
  })

  it("Q8_0 takes the full code range (−128 codes), and Q8_0 and Q4_0 scales at the f16 extremes are exact", async () => {
    // rows of −128 codes (not produced by ggml's quantizer, but valid in a file) and tiny/huge f16 scales
    const rows = 6
    const data = new Uint8Array(rows * 2 * 34)
    const scales = [0x0001, 0x03ff, 0x0400, 0x3c00, 0x7bff, 0xbc00] // subnormal min/max, min normal, 1, max, −1
    for (let r = 0; r < rows; r++)
      for (let b = 0; b < 2; b++) {
        const at = (r * 2 + b) * 34
        data[at] = scales[r]! & 0xff
        data[at + 1] = scales[r]! >> 8
        for (let j = 0; j < 32; j++) data[at + 2 + j] = (j + b) % 3 === 0 ? 0x80 : (j * 37 + r) & 0xff
      }
    const t: RawTensor = { name: "w", dtype: "Q8_0", shape: [rows, 64], data }
    // the same scales on Q4_0 blocks: its T = 1 kernel widens them four rows at a time (vector), T = 4 one
    // row at a time (scalar); Q8_0's are widened once at load (layout.ts)
    const data4 = new Uint8Array(rows * 2 * 18)
    for (let r = 0; r < rows; r++)
      for (let b = 0; b < 2; b++) {
        const at = (r * 2 + b) * 18
        data4[at] = scales[r]! & 0xff
        data4[at + 1] = scales[r]! >> 8
        for (let j = 0; j < 16; j++) data4[at + 2 + j] = (j * 37 + r + b) & 0xff
      }
    const t4: RawTensor = { name: "w4", dtype: "Q4_0", shape: [rows, 64], data: data4 }
    for (const w of [t, t4])
      for (const T of [1, 4]) {
        const x = seeded(11, T * 64, 1)
        const xHat = roundActivations(w.dtype as QuantType, x)
        assertClose(`${w.dtype} edge scales T=${T}`, await mm(two, w, x, T), await mm(ref, w, xHat, T), { atol: 0, rtol: 0, c: 1 }, quantBound(w, xHat, xHat, T, undefined))
      }
  })

  it("scales widened at load to f32 (Q8_0, Q4_K, Q6_K) and back are the file's f16, for every one of the 65536 halves", () => {
    const f = new Float32Array(1)
    const bits = new Uint32Array(f.buffer)
    for (let h = 0; h < 65536; h++) {
      bits[0] = f16BitsToF32Bits(h)
      const want = f16ToF32(h)
      if (!(Object.is(f[0], want) || (Number.isNaN(f[0]) && Number.isNaN(want)))) throw new Error(`half 0x${h.toString(16)}: ${f[0]} vs ${want}`)
      if (f32BitsToF16Bits(bits[0]!) !== h) throw new Error(`half 0x${h.toString(16)} does not come back`)
    }
  })
})

describe("simd quantized sparse products", () => {
  const rowsCase = quantCase.chain((c) => fc.record({ c: fc.constant(c), sel: fc.uniqueArray(fc.integer({ min: 0, max: c.rows - 1 }), { minLength: 1, maxLength: c.rows }) }))

  it("matmulRows equals the selected rows of the dense matmul, bitwise (1 and 2 threads)", () =>
    fc.assert(
      fc.asyncProperty(rowsCase, async ({ c: { type, rows, cols, T, seed }, sel }) => {
        const t = weights(type, rows, cols, seed)
        const x = seeded(seed + 3, T * cols, 4)
        const picked = Int32Array.from(sel).sort()
        const rowsOf = (k: KernelsShape) =>
          on(k, (b) => Effect.gen(function* () {
            return yield* b.read(yield* b.matmulRows(yield* b.matrix(t), yield* b.upload(x, T, cols), yield* b.selection(picked)))
          }))
        const got = await rowsOf(two)
        const dense = await mm(two, t, x, T)
        const n = picked.length
        for (let tk = 0; tk < T; tk++) bitsEqual(`token ${tk}`, got.subarray(tk * n, (tk + 1) * n), Float32Array.from(picked, (r) => dense[tk * rows + r]!))
        bitsEqual("1 vs 2 threads", await rowsOf(one), got)
      }),
      { numRuns: 30 }
    ))

  /**
   * Fine sparsity's down_proj on a quantized W (D, F): simd keeps W as it is and runs its dense kernel on h
   * scattered to F columns, so the bound is the dense one for W·h_full (h_full zero off the selection, and
   * zeros round to zeros): compared with the reference's transposed rows over the exact Wᵀ.
   */
  it("matmulTransposedRows over a quantized down_proj agrees with the reference (dense bound on the scattered h)", () =>
    fc.assert(
      fc.asyncProperty(rowsCase, async ({ c: { type, rows: D, cols: F, T, seed }, sel }) => {
        const picked = Int32Array.from(sel.map((s) => s % F)).filter((v, i, a) => a.indexOf(v) === i).sort()
        const w = weights(type, D, F, seed)
        const n = picked.length
        const h = seeded(seed + 5, T * n, 4)
        const viaTransposed = (k: KernelsShape, wT: (b: KernelsShape) => Effect.Effect<unknown, KernelError>) =>
          on(k, (b) => Effect.gen(function* () {
            const m = (yield* wT(b)) as Parameters<KernelsShape["matmulTransposedRows"]>[0]
            return yield* b.read(yield* b.matmulTransposedRows(m, yield* b.upload(h, T, n), yield* b.selection(picked)))
          }))
        const got = await viaTransposed(two, (b) => b.transposed!(w))
        const want = await viaTransposed(ref, (b) => b.matrix(transpose(w)))
        const full = new Float32Array(T * F)
        for (let tk = 0; tk < T; tk++) picked.forEach((f, i) => (full[tk * F + f] = h[tk * n + i]!))
        assertClose(`fine down_proj ${type} ${D}×${F} n=${n}`, got, want, { atol: 0, rtol: 0, c: 1 }, quantBound(w, full, roundActivations(type, full), T, activationStep(type, full)))
        bitsEqual("1 vs 2 threads", await viaTransposed(one, (b) => b.transposed!(w)), got)
      }),
      { numRuns: 30 }
    ))

  it("a quantized down_proj's transposed handle costs no memory (it is the resident W)", async () => {
    const w = weights("Q6_K", 64, 512, 9)
    await run(
      Effect.gen(function* () {
        yield* two.matrix(w)
        const before = two.runtime.allocatedBytes
        yield* two.transposed!(w)
        expect(two.runtime.allocatedBytes).toBe(before)
      })
    )
  })
})

describe("simd quantized gathers and embedding", () => {
  it("a row gather's dense matmul equals matmulRows over the same selection, bitwise", () =>
    fc.assert(
      fc.asyncProperty(quantCase.chain((c) => fc.record({ c: fc.constant(c), sel: fc.uniqueArray(fc.integer({ min: 0, max: c.rows - 1 }), { minLength: 1, maxLength: c.rows }) })), async ({ c: { type, rows, cols, T, seed }, sel }) => {
        const t = weights(type, rows, cols, seed)
        const x = seeded(seed + 1, T * cols, 4)
        await rowGatherEqualsMatmulRows(two, t, x, T, Int32Array.from(sel).sort(), `${type} ${rows}×${cols} T=${T}`)
      }),
      { numRuns: 30 }
    ))

  /**
   * Coarse sparsity's column gather re-blocks the kept columns as Q8_0 (ggml's quantize_row_q8_0_ref of
   * the exact values; layout.ts), so w' differs from w by one Q8_0 rounding: |w' − w| ≤ amax'·(1/254 +
   * 2⁻¹¹ + 2⁻²²) + 2⁻¹⁸ per new block of 32 (the same step as the activations', with roundf and an f16
   * d). The bound is then the Q8_0 matmul's on w' plus Σ_c |x_c|·|w'_c − w_c|.
   */
  it("a column gather (re-blocked to Q8_0) agrees with the reference's exact columns within the requantization bound", () =>
    fc.assert(
      fc.asyncProperty(quantCase.chain((c) => fc.record({ c: fc.constant(c), sel: fc.uniqueArray(fc.integer({ min: 0, max: c.cols - 1 }), { minLength: 1, maxLength: c.cols }) })), async ({ c: { type, rows: D, cols: F, T, seed }, sel }) => {
        const t = weights(type, D, F, seed)
        const indices = Int32Array.from(sel).sort()
        const n = indices.length
        const h = seeded(seed + 2, T * n, 4)
        const viaGather = (k: KernelsShape) =>
          run(Effect.scoped(Effect.gen(function* () {
            const g = yield* k.gather(yield* k.matrix(t), indices, "columns")
            return yield* k.read(yield* k.matmul(g, yield* k.upload(h, T, n)))
          })))
        const got = await viaGather(two)
        const want = await viaGather(ref)
        // w' (D, n32): the exact kept columns requantized, as the gather does
        const n32 = Math.ceil(n / 32) * 32
        const w = toFloat32(t)
        const kept = new Float32Array(D * n32)
        for (let r = 0; r < D; r++) indices.forEach((c, j) => (kept[r * n32 + j] = w[r * F + c]!))
        const requant = fromFloat32("w'", "Q8_0", [D, n32], kept)
        const h32 = new Float32Array(T * n32)
        for (let tk = 0; tk < T; tk++) h32.set(h.subarray(tk * n, (tk + 1) * n), tk * n32)
        const bound = quantBound(requant, h32, roundActivations("Q8_0", h32), T, activationStep("Q8_0", h32))
        const wq = toFloat32(requant)
        for (let tk = 0; tk < T; tk++)
          for (let r = 0; r < D; r++) {
            let s = 0
            for (let j = 0; j < n; j++) s += Math.abs(h[tk * n + j]!) * Math.abs(wq[r * n32 + j]! - kept[r * n32 + j]!)
            bound[tk * D + r]! += s / U
          }
        assertClose(`${type} ${D}×${F} columns n=${n} T=${T}`, got, want, { atol: 0, rtol: 0, c: 1 }, bound)
        // and the re-blocking is ggml's reference Q8_0 quantizer on the exact values, byte for byte
        await run(Effect.scoped(Effect.gen(function* () {
          const g = (yield* two.gather(yield* two.matrix(t), indices, "columns")) as unknown as { address: number; layout: ReturnType<typeof matrixLayout> }
          const packed = two.runtime.u8.subarray(g.address, g.address + g.layout.bytes)
          const bytes = quantRowBytes(g.layout)
          for (let r = 0; r < D; r++) expect(quantRowBlocks(packed, g.layout, r, new Uint8Array(bytes))).toEqual(requant.data.subarray(r * bytes, (r + 1) * bytes))
        })))
      }),
      { numRuns: 30 }
    ))

  it("embedding rows of a quantized table equal the reference's exact dequantization, bitwise", () =>
    fc.assert(
      fc.asyncProperty(fc.constantFrom(...quantTypes), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 3 }), fc.integer(), fc.array(fc.nat(), { minLength: 1, maxLength: 9 }), async (type, rows, k, seed, picks) => {
        const t = weights(type, rows, blockOf(type) * k, seed)
        const tokens = Int32Array.from(picks, (p) => p % rows)
        const embed = (b: KernelsShape) =>
          on(b, (k) => Effect.gen(function* () {
            return yield* k.read(yield* k.embedding(yield* k.matrix(t), yield* k.input(tokens, Int32Array.from(tokens, (_, i) => i), tokens.length)))
          }))
        bitsEqual(`embedding ${type}`, await embed(two), await embed(ref))
      }),
      { numRuns: 30 }
    ))

  it("the packed layout gives every row's ggml blocks back, byte for byte", () =>
    fc.assert(
      fc.property(fc.constantFrom(...quantTypes), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 3 }), fc.integer(), (type, rows, k, seed) => {
        const t = weights(type, rows, blockOf(type) * k * (blockOf(type) === 32 ? 5 : 1), seed)
        const layout = matrixLayout(rows, t.shape[1]!, storageOf[type])
        const packed = new Uint8Array(layout.bytes)
        packQuantMatrix(t.data, layout, packed)
        const bytes = quantRowBytes(layout)
        for (let r = 0; r < rows; r++) expect(quantRowBlocks(packed, layout, r, new Uint8Array(bytes))).toEqual(t.data.subarray(r * bytes, (r + 1) * bytes))
      }),
      { numRuns: 60 }
    ))

  it("names the quantized storages", async () => {
    await run(Effect.scoped(two.matrix(weights("Q4_K", 4, 256, 1))))
    expect(two.name).toMatch(/q4_k/)
  })
})

describe("simd refuses models beyond its memory before allocating", () => {
  /** Llama-3-8B as a Q4_K_M GGUF holds it (4.9 GB): Q4_K matrices, Q6_K attn_v, ffn_down and output. */
  const llama3_8b: Array<WeightShape> = (() => {
    const [D, F, V, L, kv] = [4096, 14336, 128256, 32, 1024]
    const out: Array<WeightShape> = [{ name: "token_embd.weight", dtype: "Q4_K", shape: [V, D] }, { name: "output.weight", dtype: "Q6_K", shape: [V, D] }, { name: "output_norm.weight", dtype: "F32", shape: [D] }]
    for (let l = 0; l < L; l++)
      out.push(
        { name: `blk.${l}.attn_q.weight`, dtype: "Q4_K", shape: [D, D] },
        { name: `blk.${l}.attn_k.weight`, dtype: "Q4_K", shape: [kv, D] },
        { name: `blk.${l}.attn_v.weight`, dtype: "Q6_K", shape: [kv, D] },
        { name: `blk.${l}.attn_output.weight`, dtype: "Q4_K", shape: [D, D] },
        { name: `blk.${l}.ffn_gate.weight`, dtype: "Q4_K", shape: [F, D] },
        { name: `blk.${l}.ffn_up.weight`, dtype: "Q4_K", shape: [F, D] },
        { name: `blk.${l}.ffn_down.weight`, dtype: "Q6_K", shape: [D, F] },
        { name: `blk.${l}.attn_norm.weight`, dtype: "F32", shape: [D] },
        { name: `blk.${l}.ffn_norm.weight`, dtype: "F32", shape: [D] }
      )
    return out
  })()

  it("an 8B Q4_K_M model is refused with its size and the 4 GiB limit, and nothing is allocated", async () => {
    const before = two.runtime.allocatedBytes
    const error = await run(Effect.flip(two.admit!(llama3_8b)))
    expect(error._tag).toBe("KernelError")
    expect(error.op).toBe("weights")
    expect(error.limitBytes).toBe(2 ** 32)
    expect(error.neededBytes).toBeGreaterThan(4.5 * 2 ** 30)
    expect(error.message).toMatch(/needs \d\.\d\d GiB of wasm memory .* the limit is 4\.00 GiB \(one wasm32 memory\)/)
    expect(two.runtime.allocatedBytes).toBe(before)
  })

  it("Model.fromWeights refuses before uploading anything; a model that fits is admitted", async () => {
    const config: LlamaConfig = {
      architecture: "llama", vocabSize: 512, hiddenSize: 256, intermediateSize: 512, numHiddenLayers: 2, numAttentionHeads: 4, numKeyValueHeads: 2, headDim: 64,
      maxPositionEmbeddings: 256, rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: undefined, tieWordEmbeddings: false, attentionBias: false, bosTokenId: undefined, eosTokenIds: []
    }
    const result = await run(
      Effect.scoped(
        Effect.gen(function* () {
          const small = yield* SimdKernels.make({ threads: 1, maxMemoryBytes: 2 << 20 })
          const exit = yield* Effect.exit(Effect.provideService(Model.fromWeights(config, randomWeights(config, { seed: 1, dtype: "Q8_0" })), Kernels, small))
          const roomy = yield* SimdKernels.make({ threads: 1, maxMemoryBytes: 256 << 20 })
          const ok = yield* Effect.exit(Effect.provideService(Model.fromWeights(config, randomWeights(config, { seed: 1, dtype: "Q8_0" })), Kernels, roomy))
          return { exit, allocated: small.runtime.allocatedBytes, ok: Exit.isSuccess(ok) }
        })
      )
    )
    expect(Exit.isFailure(result.exit)).toBe(true)
    const failure = Exit.isFailure(result.exit) ? (result.exit.cause.reasons[0] as { error?: KernelError }).error : undefined
    expect(failure?.op).toBe("weights")
    expect(failure?.limitBytes).toBe(2 << 20)
    expect(result.allocated).toBe(0)
    expect(result.ok).toBe(true)
  })
})
