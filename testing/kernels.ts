/**
 * `kernelsAgreeWithReference`: every Kernels op of a backend against reference/, under the one tolerance
 * rule (properties/tolerance.ts):
 *
 *   |backend − reference| ≤ atol + rtol·|reference| + c·2⁻²⁴·bound
 *
 * where `bound` is, per output element, the first-order worst-case error of a float32 implementation
 * of that op in units of 2⁻²⁴ (Higham's γₙ for sums, the GLSL/WGSL ulp allowances for exp, sqrt and
 * division), computed here in float64 from the case's inputs. Any f32 evaluation order, SIMD or GPU
 * stays inside it; a wrong index, a truncated loop or a dropped term does not. With `c = 1` the backend
 * is held to that worst case; measured errors are typically 10–100× below it, and the report says how
 * much of the bound each op used (`maxRatio`).
 *
 * The reference is the oracle: the bounds are written independently of both implementations.
 */
import { Effect, Layer, type Scope } from "effect"
import fc from "fast-check"
import { ReferenceKernels } from "../reference/index.ts"
import { Kernels, type KernelError, type KernelsShape } from "../src/Kernels.ts"
import { ropeInvFreq } from "../src/Rope.ts"
import { fromFloat32, toFloat32 } from "../src/Tensor.ts"
import { assertClose, type Tolerance } from "./tolerance.ts"
import {
  attentionCase,
  elementwiseCase,
  neuronsCase,
  embeddingCase,
  matmulCase,
  matmulRowsCase,
  rmsnormCase,
  ropeCase,
  seeded
} from "./arbitraries.ts"

export const kernelOps = [
  "matmul",
  "matmulRows",
  "matmulTransposedRows",
  "gather",
  "embedding",
  "rmsnorm",
  "rope",
  "attention",
  "swiglu",
  "swigluRows",
  "accumulate",
  "selectNeurons",
  "neuronStatistic",
  "kvCache"
] as const
export type KernelOp = (typeof kernelOps)[number]

/**
 * The default: the f32 worst case itself (c = 1). atol covers GPUs that flush subnormals to zero (each
 * of up to ~1000 flushed terms is below 2⁻¹²⁶ ≈ 1.2e-38).
 */
export const f32Bound: Tolerance = { atol: 1e-34, rtol: 0, c: 1 }

export interface OpReport {
  readonly runs: number
  readonly maxAbs: number
  readonly maxRel: number
  /** Largest |Δ| / (2⁻²⁴·bound) seen: the fraction of the f32 worst case used (0 = exact). */
  readonly maxRatio: number
}

export interface KernelsReport {
  /** `KernelsShape.name` of the backend that ran: a test asserts it (a fallback is not coverage). */
  readonly backend: string
  readonly ops: Readonly<Partial<Record<KernelOp, OpReport>>>
}

export interface KernelsAgreeOptions {
  /** Runs per op (default 20). */
  readonly numRuns?: number
  /** Which ops to check (default all of `kernelOps`). */
  readonly ops?: ReadonlyArray<KernelOp>
  /** Tolerance for every op (default `f32Bound`), or per op. */
  readonly tolerance?: Tolerance
  readonly tolerances?: Readonly<Partial<Record<KernelOp, Tolerance>>>
  /** fast-check seed, for replaying a failure. */
  readonly seed?: number
}

// ---------------------------------------------------------------------------------------------------
// First-order f32 error bounds (units of 2⁻²⁴), per output element, in float64

/** Σ_c |w[r, c]·x[t, c]| · (n + 1): n products and n − 1 additions, each rounding once. */
const dotBound = (w: Float32Array, x: Float32Array, T: number, rowsSel: ReadonlyArray<number>, cols: number): Float64Array => {
  const out = new Float64Array(T * rowsSel.length)
  for (let t = 0; t < T; t++)
    rowsSel.forEach((r, i) => {
      let s = 0
      for (let c = 0; c < cols; c++) s += Math.abs(w[r * cols + c]! * x[t * cols + c]!)
      out[t * rowsSel.length + i] = s * (cols + 1)
    })
  return out
}

/** Transposed rows: Σ_i |h[t, i]·wT[sel[i], d]| · (n + 1). */
const transposedBound = (wT: Float32Array, h: Float32Array, T: number, sel: ReadonlyArray<number>, D: number): Float64Array => {
  const n = sel.length
  const out = new Float64Array(T * D)
  for (let t = 0; t < T; t++)
    for (let d = 0; d < D; d++) {
      let s = 0
      for (let i = 0; i < n; i++) s += Math.abs(h[t * n + i]! * wT[sel[i]! * D + d]!)
      out[t * D + d] = s * (n + 1)
    }
  return out
}

/**
 * rmsnorm: the sum of D squares has relative error ≤ (D + 1); /D, +eps, sqrt (≤ 3 ulp in GLSL) and the
 * reciprocal (≤ 3) add 8, halved except the last by the square root's ½ derivative; two products add 2.
 * So |Δ| ≤ ((D + 9)/2 + 6)·|out|; bound = (D/2 + 12)·|exact out|.
 */
const rmsnormBound = (x: Float32Array, w: Float32Array, T: number, eps: number): Float64Array => {
  const D = w.length
  const out = new Float64Array(T * D)
  for (let t = 0; t < T; t++) {
    let ss = 0
    for (let i = 0; i < D; i++) ss += x[t * D + i]! ** 2
    const scale = 1 / Math.sqrt(ss / D + eps)
    for (let i = 0; i < D; i++) out[t * D + i] = (D / 2 + 12) * Math.abs(x[t * D + i]! * scale * w[i]!)
  }
  return out
}

/** rope: a·cos θ − b·sin θ (and b·cos θ + a·sin θ) with cos, sin rounded to f32 (1 each), two products, one sum: 4·(|a cos| + |b sin|). */
const ropeBound = (x: Float32Array, T: number, heads: number, Dh: number, positions: Int32Array, invFreq: Float32Array): Float64Array => {
  const out = new Float64Array(x.length)
  const half = Dh / 2
  for (let t = 0; t < T; t++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < half; i++) {
        const o = (t * heads + h) * Dh
        const theta = positions[t]! * invFreq[i]!
        const a = x[o + i]!
        const b = x[o + i + half]!
        const cos = Math.abs(Math.cos(theta))
        const sin = Math.abs(Math.sin(theta))
        out[o + i] = 4 * (Math.abs(a) * cos + Math.abs(b) * sin)
        out[o + i + half] = 4 * (Math.abs(b) * cos + Math.abs(a) * sin)
      }
  return out
}

/**
 * attention, per output element j of (t, h) with n visible slots and reference weights pₛ:
 *  - a score is a Dh-term dot times a rounded 1/√Dh: error ≤ (Dh + 2)·S1ₛ, S1ₛ = Σ|q·kₛ|/√Dh;
 *  - xₛ = sₛ − max then has error ≤ 2(Dh + 2)·max S1 + |xₛ|, and exp adds (3 + 2|xₛ|) ulp (GLSL, WGSL):
 *    each unnormalised weight eₛ has relative error ≤ aₛ = 2(Dh + 2)·max S1 + 4 + 3|xₛ|;
 *  - Σ eₛ (n additions) has relative error ≤ Σ pₛaₛ + n; Σ eₛvₛⱼ (products, n additions) has absolute
 *    error ≤ Σ eₛ|vₛⱼ|(aₛ + n + 1); the division adds 3 ulp.
 *  bound = Σ pₛ|vₛⱼ|(aₛ + n + 1) + Σ pₛ|vₛⱼ| · (Σ pₛaₛ + n + 3).
 */
const attentionBound = (q: Float32Array, keys: Float32Array, values: Float32Array, T: number, H: number, Hkv: number, Dh: number, positions: Int32Array): Float64Array => {
  const scale = 1 / Math.sqrt(Dh)
  const out = new Float64Array(T * H * Dh)
  for (let t = 0; t < T; t++)
    for (let h = 0; h < H; h++) {
      const kvh = Math.floor(h / (H / Hkv))
      const n = positions[t]! + 1
      const s = new Float64Array(n)
      let max = -Infinity
      let maxS1 = 0
      for (let j = 0; j < n; j++) {
        let dot = 0
        let abs = 0
        for (let i = 0; i < Dh; i++) {
          const p = q[(t * H + h) * Dh + i]! * keys[(j * Hkv + kvh) * Dh + i]!
          dot += p
          abs += Math.abs(p)
        }
        s[j] = dot * scale
        max = Math.max(max, s[j]!)
        maxS1 = Math.max(maxS1, abs * scale)
      }
      let sum = 0
      for (let j = 0; j < n; j++) sum += Math.exp(s[j]! - max)
      const p = s.map((v) => Math.exp(v - max) / sum)
      const a = s.map((v) => 2 * (Dh + 2) * maxS1 + 4 + 3 * Math.abs(v - max))
      let pa = 0
      for (let j = 0; j < n; j++) pa += p[j]! * a[j]!
      for (let i = 0; i < Dh; i++) {
        let first = 0
        let pv = 0
        for (let j = 0; j < n; j++) {
          const v = Math.abs(values[(j * Hkv + kvh) * Dh + i]!)
          first += p[j]! * v * (a[j]! + n + 1)
          pv += p[j]! * v
        }
        out[(t * H + h) * Dh + i] = first + pv * (pa + n + 3)
      }
    }
  return out
}

/**
 * swiglu: exp(−g) has (3 + 2|g|) ulp, 1 + e adds 1 (and scales exp's error by e/(1+e) ≤ 1), the division
 * 3, the product 1, and the reference's own f32 rounding ½: bound = (10 + 2|g|)·|silu(g)·up|. For
 * g < −88.7 exp overflows in f32 and the backend returns −0 for a value below 1e-36: atol.
 */
const swigluBound = (gate: Float32Array, up: Float32Array): Float64Array =>
  Float64Array.from(gate, (g, i) => (10 + 2 * Math.abs(g)) * Math.abs((g / (1 + Math.exp(-g))) * up[i]!))

/**
 * neuronStatistic: per row the L2 norm (F squares and additions, a sqrt: F/2 + 3 in relative terms), the
 * division and square (3), the sum over T rows (T), the final sqrt (½ of all that, + 1):
 * bound = (F/2 + T + 8)·|out|.
 */
const neuronStatisticBound = (hb: Float32Array, T: number, F: number): Float64Array => {
  const out = new Float64Array(F)
  for (let t = 0; t < T; t++) {
    let norm = 0
    for (let j = 0; j < F; j++) norm += hb[t * F + j]! ** 2
    norm = Math.sqrt(norm)
    if (norm > 0) for (let j = 0; j < F; j++) out[j] = out[j]! + (hb[t * F + j]! / norm) ** 2
  }
  return out.map((v) => (F / 2 + T + 8) * Math.sqrt(v))
}

/** add: one rounding of the exact sum (the reference rounds the same sum once: usually bitwise equal). */
const addBound = (a: Float32Array, b: Float32Array): Float64Array => Float64Array.from(a, (v, i) => Math.abs(v + b[i]!))

// ---------------------------------------------------------------------------------------------------
// The factory

interface Accumulator {
  runs: number
  maxAbs: number
  maxRel: number
  maxRatio: number
}

const record = (acc: Accumulator, actual: Float32Array, expected: Float32Array, bound: Float64Array | undefined): void => {
  acc.runs++
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!)
    if (!Number.isFinite(d)) continue
    acc.maxAbs = Math.max(acc.maxAbs, d)
    if (expected[i] !== 0) acc.maxRel = Math.max(acc.maxRel, d / Math.abs(expected[i]!))
    const b = bound === undefined ? 0 : bound[i]! * 2 ** -24
    if (d > 0) acc.maxRatio = Math.max(acc.maxRatio, b > 0 ? d / b : Infinity)
  }
}

const runE = <A, E>(e: Effect.Effect<A, E>): Promise<A> => Effect.runPromise(e)

/** The reference on the same RawTensors: the backend and the oracle widen the very same stored values. */
const ref = ReferenceKernels.make()

const checks = (k: KernelsShape, tol: (op: KernelOp) => Tolerance, acc: (op: KernelOp) => Accumulator) => {
  const check = (op: KernelOp, label: string, actual: Float32Array, expected: Float32Array, bound?: Float64Array) => {
    assertClose(`${k.name} ${op} ${label}`, actual, expected, tol(op), bound)
    record(acc(op), actual, expected, bound)
  }
  /** Run the same program on the backend and on the reference, each in its own scope (activations freed after). */
  const both = async <A>(f: (kernels: KernelsShape) => Effect.Effect<A, KernelError, Scope.Scope>): Promise<[A, A]> => [
    await runE(Effect.scoped(f(k))),
    await runE(Effect.scoped(f(ref)))
  ]
  /** Upload, apply, read back. */
  const up = (b: KernelsShape, x: Float32Array, rows: number) => b.upload(x, rows, x.length / rows)
  const positionsOf = (T: number, start = 0) => Int32Array.from({ length: T }, (_, t) => start + t)

  return {
    matmul: fc.asyncProperty(matmulCase, async ({ rows, cols, T, dtype, seed }) => {
      const t = fromFloat32("w", dtype, [rows, cols], seeded(seed, rows * cols))
      const x = seeded(seed ^ 0x5bd1e995, T * cols, 4)
      // odd seeds add a bias (Qwen2's q/k/v), its one rounding inside the bound
      const bias = seed % 2 === 1 ? fromFloat32("b", "F32", [rows], seeded(seed + 9, rows, 2)) : undefined
      const [got, want] = await both((b) =>
        Effect.gen(function* () {
          const m = yield* b.matrix(t)
          const v = bias === undefined ? undefined : yield* b.vector(bias)
          return yield* b.read(yield* b.matmul(m, yield* up(b, x, T), v))
        })
      )
      const all = Array.from({ length: rows }, (_, i) => i)
      const bound = dotBound(toFloat32(t), x, T, all, cols)
      if (bias !== undefined) {
        const bv = toFloat32(bias)
        for (let i = 0; i < bound.length; i++) bound[i] = bound[i]! + Math.abs(bv[i % rows]!) * (cols + 2)
      }
      check("matmul", `${dtype} ${rows}×${cols} T=${T}${bias ? " +bias" : ""}`, got, want, bound)
    }),
    matmulRows: fc.asyncProperty(matmulRowsCase, async ({ rows, cols, T, dtype, seed, select }) => {
      const t = fromFloat32("w", dtype, [rows, cols], seeded(seed, rows * cols))
      const x = seeded(seed + 1, T * cols, 4)
      const sorted = [...select].sort((a, b) => a - b)
      const [got, want] = await both((b) =>
        Effect.gen(function* () {
          return yield* b.read(yield* b.matmulRows(yield* b.matrix(t), yield* up(b, x, T), yield* b.selection(Int32Array.from(sorted))))
        })
      )
      check("matmulRows", `${dtype} ${rows}×${cols} T=${T} rows=[${sorted}]`, got, want, dotBound(toFloat32(t), x, T, sorted, cols))
    }),
    matmulTransposedRows: fc.asyncProperty(matmulRowsCase, async ({ rows: F, cols: D, T, dtype, seed, select }) => {
      const t = fromFloat32("wT", dtype, [F, D], seeded(seed, F * D))
      const sorted = [...select].sort((a, b) => a - b)
      const h = seeded(seed + 2, T * sorted.length, 4)
      const [got, want] = await both((b) =>
        Effect.gen(function* () {
          return yield* b.read(yield* b.matmulTransposedRows(yield* b.matrix(t), yield* up(b, h, T), yield* b.selection(Int32Array.from(sorted))))
        })
      )
      check("matmulTransposedRows", `${dtype} ${F}×${D} T=${T} rows=[${sorted}]`, got, want, transposedBound(toFloat32(t), h, T, sorted, D))
    }),
    // a gather is checked through the matmul that consumes it (coarse sparsity): rows of W (rows, cols), then
    // columns of W (cols, rows): the same selection read along the other axis
    gather: fc.asyncProperty(matmulRowsCase, async ({ rows, cols, T, dtype, seed, select }) => {
      const sorted = [...select].sort((a, b) => a - b)
      const sel = Int32Array.from(sorted)
      const n = sorted.length
      const byRows = fromFloat32("w", dtype, [rows, cols], seeded(seed, rows * cols))
      const x = seeded(seed + 4, T * cols, 4)
      const [gotRows, wantRows] = await both((b) =>
        Effect.gen(function* () {
          return yield* b.read(yield* b.matmul(yield* b.gather(yield* b.matrix(byRows), sel, "rows"), yield* up(b, x, T)))
        })
      )
      check("gather", `rows ${dtype} ${rows}×${cols} T=${T} rows=[${sorted}]`, gotRows, wantRows, dotBound(toFloat32(byRows), x, T, sorted, cols))
      const byCols = fromFloat32("w", dtype, [cols, rows], seeded(seed + 5, rows * cols))
      const h = seeded(seed + 6, T * n, 4)
      const [gotCols, wantCols] = await both((b) =>
        Effect.gen(function* () {
          return yield* b.read(yield* b.matmul(yield* b.gather(yield* b.matrix(byCols), sel, "columns"), yield* up(b, h, T)))
        })
      )
      const w = toFloat32(byCols) // (cols, rows): its transpose (rows, cols) read by selected rows
      const wT = new Float32Array(rows * cols)
      for (let c = 0; c < cols; c++) for (let r = 0; r < rows; r++) wT[r * cols + c] = w[c * rows + r]!
      check("gather", `columns ${dtype} ${cols}×${rows} T=${T} cols=[${sorted}]`, gotCols, wantCols, transposedBound(wT, h, T, sorted, cols))
    }),
    embedding: fc.asyncProperty(embeddingCase, async ({ vocab, dim, ids, dtype, seed }) => {
      const t = fromFloat32("e", dtype, [vocab, dim], seeded(seed, vocab * dim))
      const tokens = Int32Array.from(ids)
      const [got, want] = await both((b) =>
        Effect.gen(function* () {
          const input = yield* b.input(tokens, positionsOf(tokens.length), tokens.length)
          const x = yield* b.embedding(yield* b.matrix(t), input)
          // slice is a view or a copy: the last row of the embedding must read back as the last row
          const last = yield* b.read(yield* b.slice(x, tokens.length - 1, 1))
          return Float32Array.of(...(yield* b.read(x)), ...last)
        })
      )
      check("embedding", `${dtype} ${vocab}×${dim} ids=[${ids}]`, got, want)
    }),
    rmsnorm: fc.asyncProperty(rmsnormCase, async ({ T, D, eps, seed }) => {
      const w = fromFloat32("n", "F32", [D], seeded(seed, D, 1.5))
      const x = seeded(seed + 3, T * D, 4)
      const [got, want] = await both((b) =>
        Effect.gen(function* () {
          return yield* b.read(yield* b.rmsnorm(yield* up(b, x, T), yield* b.vector(w), eps))
        })
      )
      check("rmsnorm", `T=${T} D=${D} eps=${eps}`, got, want, rmsnormBound(x, toFloat32(w), T, eps))
    }),
    rope: fc.asyncProperty(ropeCase, async ({ T, heads, half, theta, positions, seed }) => {
      const Dh = 2 * half
      const x = seeded(seed, T * heads * Dh, 4)
      const pos = Int32Array.from(positions)
      const invFreq = ropeInvFreq(Dh, theta, undefined)
      const [got, want] = await both((b) =>
        Effect.gen(function* () {
          const input = yield* b.input(new Int32Array(T), pos, Math.max(...positions) + 1)
          return yield* b.read(yield* b.rope(yield* up(b, x, T), heads, Dh, input, invFreq))
        })
      )
      check("rope", `T=${T} heads=${heads} Dh=${Dh} positions=[${positions}]`, got, want, ropeBound(x, T, heads, Dh, pos, invFreq))
    }),
    attention: fc.asyncProperty(attentionCase, async ({ T, H, Hkv, Dh, past, seed }) => {
      const S = past + T
      const q = seeded(seed, T * H * Dh, 2)
      const keys = seeded(seed + 1, S * Hkv * Dh, 2)
      const values = seeded(seed + 2, S * Hkv * Dh, 2)
      const positions = positionsOf(T, past)
      const [got, want] = await both((b) =>
        Effect.gen(function* () {
          // a cache with room beyond kvLength, written as a forward pass would: the past, then this call's slots
          const kv = yield* b.kvStore(1, Hkv, Dh, S + 3)
          yield* b.kvWrite(kv, 0, 0, yield* up(b, keys, S), yield* up(b, values, S))
          const input = yield* b.input(new Int32Array(T), positions, S)
          return yield* b.read(yield* b.attention(yield* up(b, q, T), kv, 0, input, { numHeads: H, numKeyValueHeads: Hkv, headDim: Dh }))
        })
      )
      check("attention", `H=${H} Hkv=${Hkv} Dh=${Dh} T=${T} S=${S}`, got, want, attentionBound(q, keys, values, T, H, Hkv, Dh, positions))
    }),
    swiglu: fc.asyncProperty(elementwiseCase, async ({ n, seed }) => {
      const gate = seeded(seed, n, 12)
      const upv = seeded(seed + 1, n, 4)
      const [got, want] = await both((b) =>
        Effect.gen(function* () {
          return yield* b.read(yield* b.swiglu(yield* up(b, gate, 1), yield* up(b, upv, 1)))
        })
      )
      check("swiglu", `n=${n}`, got, want, swigluBound(gate, upv))
    }),
    swigluRows: fc.asyncProperty(matmulRowsCase, async ({ rows: F, T, seed, select }) => {
      const sorted = [...select].sort((a, b) => a - b)
      const gate = seeded(seed, T * F, 12)
      const upv = seeded(seed + 1, T * sorted.length, 4)
      const [got, want] = await both((b) =>
        Effect.gen(function* () {
          return yield* b.read(yield* b.swigluRows(yield* up(b, gate, T), yield* up(b, upv, T), yield* b.selection(Int32Array.from(sorted))))
        })
      )
      const picked = Float32Array.from({ length: T * sorted.length }, (_, i) => gate[Math.floor(i / sorted.length) * F + sorted[i % sorted.length]!]!)
      check("swigluRows", `T=${T} F=${F} rows=[${sorted}]`, got, want, swigluBound(picked, upv))
    }),
    accumulate: fc.asyncProperty(elementwiseCase, async ({ n, seed }) => {
      const a = seeded(seed, n, 4)
      const b2 = seeded(seed + 1, n, 4)
      const [got, want] = await both((b) =>
        Effect.gen(function* () {
          const x = yield* up(b, a, 1)
          yield* b.accumulate(x, yield* up(b, b2, 1))
          return yield* b.read(x)
        })
      )
      check("accumulate", `n=${n}`, got, want, addBound(a, b2))
    }),
    // the selection is a set: exact agreement, on gates whose scores are well apart (no near-ties to flip)
    selectNeurons: fc.asyncProperty(neuronsCase, async ({ T, F, keep, gates, threshold }) => {
      const gate = Float32Array.from(gates)
      for (const rule of [{ _tag: "TopK", count: keep } as const, { _tag: "Threshold", threshold } as const]) {
        const [got, want] = await both((b) =>
          Effect.gen(function* () {
            const sel = yield* b.selectNeurons(yield* up(b, gate, T), rule)
            // the selection, as the rows it makes matmulRows read from an identity-like matrix
            const n = yield* b.count(sel)
            const eye = fromFloat32("eye", "F32", [F, 1], Float32Array.from({ length: F }, (_, i) => i + 1))
            const picked = n === 0 ? new Float32Array(0) : yield* b.read(yield* b.matmulRows(yield* b.matrix(eye), yield* up(b, Float32Array.of(1), 1), sel))
            return Float32Array.from(picked, (v) => v - 1)
          })
        )
        check("selectNeurons", `${rule._tag} T=${T} F=${F} keep=${keep} threshold=${threshold}`, got, want)
      }
    }),
    neuronStatistic: fc.asyncProperty(matmulCase, async ({ rows: F, T, seed }) => {
      const hb = seeded(seed, T * F, 4)
      const [got, want] = await both((b) =>
        Effect.gen(function* () {
          return yield* b.read(yield* b.neuronStatistic(yield* up(b, hb, T)))
        })
      )
      check("neuronStatistic", `T=${T} F=${F}`, got, want, neuronStatisticBound(hb, T, F))
    }),
    // the cache moves bytes: exact, for writes over a window, reads and a tree-style compaction
    kvCache: fc.asyncProperty(attentionCase, async ({ T, Hkv, Dh, past, seed }) => {
      const S = past + T
      const d = Hkv * Dh
      const first = seeded(seed, S * d, 2)
      const window = seeded(seed + 1, T * d, 2)
      const from = Int32Array.from({ length: Math.min(T, S) }, (_, i) => S - 1 - i * 2 >= 0 ? S - 1 - i * 2 : i)
      const [got, want] = await both((b) =>
        Effect.gen(function* () {
          const kv = yield* b.kvStore(2, Hkv, Dh, S + 2)
          yield* b.kvWrite(kv, 1, 0, yield* up(b, first, S), yield* up(b, first.map((v) => -v), S))
          yield* b.kvWrite(kv, 1, past, yield* up(b, window, T), yield* up(b, window.map((v) => 2 * v), T))
          const written = yield* b.kvRead(kv, 1, S)
          yield* b.kvCompact(kv, from, Math.max(0, past - 1))
          const compacted = yield* b.kvRead(kv, 1, Math.max(0, past - 1) + from.length)
          return Float32Array.of(...written.keys, ...written.values, ...compacted.keys, ...compacted.values)
        })
      )
      check("kvCache", `Hkv=${Hkv} Dh=${Dh} past=${past} T=${T} from=[${from}]`, got, want)
    })
  } satisfies Record<KernelOp, fc.IAsyncProperty<[unknown]>>
}

/**
 * Property: every op of the backend provided by `layer` agrees with the reference within the f32 bound.
 *
 * **When to use**: in a vitest suite, to check a Kernels backend (your own, or one of sirius-ts's) against
 * the reference implementation, op by op, on random shapes (1 to ~1100 along reductions), dtypes (f32,
 * bf16, f16 storage) and values.
 *
 * **Details**: builds the layer once, runs `numRuns` cases per op, throws on the first disagreement
 * (fast-check shrinks it and prints the seed and path to replay it), and resolves to a report naming the
 * backend that ran (`KernelsShape.name`) with the largest errors seen per op. Non-finite inputs are not
 * generated: GPU shading languages do not promise IEEE infinities and NaNs.
 *
 * **Example**
 * ```ts
 * it("my backend agrees with the reference", async () => {
 *   const report = await kernelsAgreeWithReference(MyKernels.layer, { numRuns: 30 })
 *   expect(report.backend).toBe("my-backend")
 * })
 * ```
 *
 * @category properties
 */
export const kernelsAgreeWithReference = async (layer: Layer.Layer<Kernels, unknown>, options: KernelsAgreeOptions = {}): Promise<KernelsReport> => {
  const accumulators = new Map<KernelOp, Accumulator>()
  const acc = (op: KernelOp): Accumulator => {
    let a = accumulators.get(op)
    if (a === undefined) {
      a = { runs: 0, maxAbs: 0, maxRel: 0, maxRatio: 0 }
      accumulators.set(op, a)
    }
    return a
  }
  const tol = (op: KernelOp): Tolerance => options.tolerances?.[op] ?? options.tolerance ?? f32Bound
  const backend = await runE(
    Effect.provide(
      Effect.gen(function* () {
        const k = yield* Kernels
        const properties: Record<KernelOp, fc.IAsyncProperty<[unknown]>> = checks(k, tol, acc)
        for (const op of options.ops ?? kernelOps)
          yield* Effect.promise(() =>
            fc.assert(properties[op], { numRuns: options.numRuns ?? 20, includeErrorInReport: true, ...(options.seed === undefined ? {} : { seed: options.seed }) })
          )
        return k.name
      }),
      layer
    )
  )
  return { backend, ops: Object.fromEntries(accumulators) }
}
