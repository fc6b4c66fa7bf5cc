// matmul on gpu.js: out (T, n) = x (T, cols) · W[sel]ᵀ, W (rows, cols) resident as a kernel constant.
// T = tokens, cols = input features, n = selected output rows (all rows for a dense matmul).
// Must agree with reference/matmul.ts `matmul` (sel = 0..rows-1) and `matmulRows`, and `matmulTransposedRows`
// below with reference `matmulTransposedRows`. Accumulates in f32 (the reference: f64).
//
// Dense and row-sparse matmul share ONE kernel per matrix (a dense call passes the identity selection):
// a kernel constant is one device copy of W (one wasm memory on webasm), so a second kernel over the
// same W would hold a second copy.
import type { IKernelRunShortcut, KernelFunction } from "gpu.js"
import type { Effect } from "effect"
import type { KernelError } from "../src/Kernels.ts"
import type { GpuRuntime } from "./GpuRuntime.ts"
import type { GpuMatrix, KernelThis } from "./types.ts"

/** Row views of a flat (rows, cols) matrix: gpu.js takes nested arrays as 2D constants without copying. */
export const rowViews = (data: Float32Array, rows: number, cols: number): Array<Float32Array> =>
  Array.from({ length: rows }, (_, r) => data.subarray(r * cols, (r + 1) * cols))

/** Cell (x = i, y = t): Σ_c W[sel[i], c] · x[t, c]. */
function matmulKernel(this: KernelThis<{ cols: number; w: Array<Float32Array> }>, x: Float32Array, sel: Float32Array): number {
  const row = sel[this.thread.x]
  let sum = 0
  for (let c = 0; c < this.constants.cols; c++) sum += this.constants.w[row][c] * x[this.thread.y * this.constants.cols + c]
  return sum
}

/** Cell (x = d, y = t): Σ_i h[t, i] · Wᵀ[sel[i], d], for the transposed down projection wT (F, D). */
function matmulTransposedKernel(this: KernelThis<{ w: Array<Float32Array> }>, h: Float32Array, sel: Float32Array, n: number): number {
  let sum = 0
  for (let i = 0; i < n; i++) sum += h[this.thread.y * n + i] * this.constants.w[sel[i]][this.thread.x]
  return sum
}

/** Cell (x = r, y = t): Σ_j W[r, sel[j]] · x[t, j], for a column gather of W (coarse down_proj). */
function matmulColumnsKernel(this: KernelThis<{ w: Array<Float32Array> }>, x: Float32Array, sel: Float32Array, n: number): number {
  let sum = 0
  for (let j = 0; j < n; j++) sum += this.constants.w[this.thread.x][sel[j]] * x[this.thread.y * n + j]
  return sum
}

const kernelOf = (rt: GpuRuntime, w: GpuMatrix): IKernelRunShortcut =>
  rt.kernel(`matmul#${w.id}`, (create) =>
    create(matmulKernel as unknown as KernelFunction, {
      output: [w.rows, 1],
      constants: { cols: w.cols, w: rowViews(w.data, w.rows, w.cols) },
      loopMaxIterations: w.cols
    })
  )

/** out (T, n) = x (T, cols) · W[sel]ᵀ; `sel` holds row indices as floats. */
export const matmulRows = (rt: GpuRuntime, w: GpuMatrix, x: Float32Array, T: number, sel: Float32Array): Effect.Effect<Float32Array, KernelError> =>
  rt.run("matmul", kernelOf(rt, w), [sel.length, T], [x, sel])

/** out (T, D) = Σ_i h[t, i] · wT[sel[i], :], reading only the selected rows of wT (F, D). */
export const matmulTransposedRows = (rt: GpuRuntime, wT: GpuMatrix, h: Float32Array, T: number, sel: Float32Array): Effect.Effect<Float32Array, KernelError> => {
  const kernel = rt.kernel(`matmulTransposed#${wT.id}`, (create) =>
    create(matmulTransposedKernel as unknown as KernelFunction, {
      output: [wT.cols, 1],
      constants: { w: rowViews(wT.data, wT.rows, wT.cols) },
      loopMaxIterations: wT.rows
    })
  )
  return rt.run("matmulTransposedRows", kernel, [wT.cols, T], [h, sel, sel.length])
}

/**
 * out (T, rows) = x (T, n) · W[:, sel]ᵀ: the dense matmul of a column gather, reading only the selected
 * columns. Its own kernel over W (compiled once per matrix, so a second device copy of that W).
 */
export const matmulColumns = (rt: GpuRuntime, w: GpuMatrix, x: Float32Array, T: number, sel: Float32Array): Effect.Effect<Float32Array, KernelError> => {
  const kernel = rt.kernel(`matmulColumns#${w.id}`, (create) =>
    create(matmulColumnsKernel as unknown as KernelFunction, {
      output: [w.rows, 1],
      constants: { w: rowViews(w.data, w.rows, w.cols) },
      loopMaxIterations: w.cols
    })
  )
  return rt.run("matmulColumns", kernel, [w.rows, T], [x, sel, sel.length])
}
