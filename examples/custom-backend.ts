/**
 * A user-written Kernels backend, as simple as one gets: the reference's host ops with the matrix products
 * swapped for a naive loop that accumulates in float32 (Math.fround after every step), as a GPU or a
 * SIMD kernel would, lifted into the Kernels interface by `fromHost` (sirius-ts/reference). examples/custom-backend.test.ts checks it against the reference with
 * sirius-ts/testing, which is how you would check your own backend.
 *
 * Run a model on it:
 *   Effect.runPromise(Effect.provide(program, NaiveF32Kernels.layer))
 */
import { Effect, Layer } from "effect"
import { fromHost, gather, type HostKernelsShape, referenceHost } from "../reference/index.ts"
import { Kernels, type KernelsShape, type Matrix } from "../src/Kernels.ts"
import { toFloat32 } from "../src/Tensor.ts"

/** Our matrix handle: the weights widened to f32 once (Kernels treats handles as opaque). */
interface F32Matrix extends Matrix {
  readonly data: Float32Array // (rows, cols)
}

/** out (T, n) = x (T, cols) · W[rows]ᵀ, summing in f32: every product and partial sum rounded. */
const matmulF32 = (w: F32Matrix, x: Float32Array, T: number, rows: ArrayLike<number>): Float32Array => {
  const { cols } = w
  const n = rows.length
  const out = new Float32Array(T * n)
  for (let t = 0; t < T; t++)
    for (let i = 0; i < n; i++) {
      const wo = rows[i]! * cols
      let sum = 0
      for (let c = 0; c < cols; c++) sum = Math.fround(sum + Math.fround(w.data[wo + c]! * x[t * cols + c]!))
      out[t * n + i] = sum
    }
  return out
}

/** out (T, D) = Σ_i h[t, i] · wT[rows[i], :], in f32 too. */
const matmulTransposedF32 = (wT: F32Matrix, h: Float32Array, T: number, rows: Int32Array): Float32Array => {
  const D = wT.cols
  const n = rows.length
  const out = new Float32Array(T * D)
  for (let t = 0; t < T; t++)
    for (let i = 0; i < n; i++) {
      const hv = h[t * n + i]!
      const wo = rows[i]! * D
      for (let d = 0; d < D; d++) out[t * D + d] = Math.fround(out[t * D + d]! + Math.fround(hv * wT.data[wo + d]!))
    }
  return out
}

/**
 * The host-array ops of the backend (each takes Float32Arrays and returns a fresh one); `make` lifts them
 * into the Kernels interface with `fromHost`, which supplies activations, the KV cache and the sparsity ops.
 */
const host = (): HostKernelsShape => {
  const all = (n: number) => Int32Array.from({ length: n }, (_, i) => i)
  return {
    ...referenceHost,
    name: "naive-f32",
    // Our own handle, so the matmuls below do not depend on the reference's internals.
    matrix: (t) => Effect.sync((): F32Matrix => ({ rows: t.shape[0]!, cols: t.shape[1]!, data: toFloat32(t) })),
    // embedding reads the table through our handle too.
    embedding: (table, tokens) =>
      Effect.sync(() => {
        const { cols, data } = table as F32Matrix
        const out = new Float32Array(tokens.length * cols)
        tokens.forEach((id, t) => out.set(data.subarray(id * cols, (id + 1) * cols), t * cols))
        return out
      }),
    // coarse sparsity's per-request copies, in our handle too (the reference's copy, same row-major shape)
    gather: (w, indices, axis) => Effect.sync((): F32Matrix => gather(w as F32Matrix, indices, axis)),
    matmul: (w, x, T) => Effect.sync(() => matmulF32(w as F32Matrix, x, T, all(w.rows))),
    matmulRows: (w, x, T, rows) => Effect.sync(() => matmulF32(w as F32Matrix, x, T, rows)),
    matmulTransposedRows: (wT, h, T, rows) => Effect.sync(() => matmulTransposedF32(wT as F32Matrix, h, T, rows))
  }
}

const make = (): KernelsShape => fromHost(host())

export const NaiveF32Kernels = {
  host,
  make,
  layer: Layer.succeed(Kernels, make())
} as const
