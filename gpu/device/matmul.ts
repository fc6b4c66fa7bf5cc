// matmul on the device (the pipeline, gpu/pipeline.ts): weights and activations are device buffers passed
// as arguments, outputs stay on the device. W (rows, cols) is a [cols, rows] buffer, x (T, cols) a [cols, T]
// one; out (T, n) is [n, T]. Must agree with reference/matmul.ts (the reference accumulates in f64, these
// in f32: the tolerance rule's Σ|terms| bound). Kernels are compiled per reduction length (`cols` or F), so
// every matrix of one width shares one kernel: weights are arguments, not constants, so a weight is stored
// once on the device whichever ops read it (dense, row-sparse, gathered).
import type { KernelFunction } from "gpu.js"
import type { Effect } from "effect"
import type { KernelError } from "../../src/Kernels.ts"
import type { GpuRuntime } from "../GpuRuntime.ts"
import type { Counts } from "../Traffic.ts"
import type { DeviceBuffer, Grid, KernelThis } from "../types.ts"

/** Cell (x = r, y = t): Σ_c W[r][c] · x[t][c]. */
function matmulKernel(this: KernelThis<{ cols: number }>, w: Grid, x: Grid): number {
  let sum = 0
  for (let c = 0; c < this.constants.cols; c++) sum += w[this.thread.x][c] * x[this.thread.y][c]
  return sum
}

/** Cell (x = r, y = t): Σ_c W[r][c] · x[t][c] + bias[r] (the reference's order: the sum, then the bias). */
function matmulBiasKernel(this: KernelThis<{ cols: number }>, w: Grid, x: Grid, bias: Grid): number {
  let sum = 0
  for (let c = 0; c < this.constants.cols; c++) sum += w[this.thread.x][c] * x[this.thread.y][c]
  return sum + bias[0][this.thread.x]
}

/** Cell (x = i, y = t): Σ_c W[sel[i]][c] · x[t][c]: only the selected rows of W are read. */
function matmulRowsKernel(this: KernelThis<{ cols: number }>, w: Grid, x: Grid, sel: Grid): number {
  const row = sel[0][this.thread.x]
  let sum = 0
  for (let c = 0; c < this.constants.cols; c++) sum += w[row][c] * x[this.thread.y][c]
  return sum
}

/** Cell (x = d, y = t): Σ_{i<n} h[t][i] · Wᵀ[sel[i]][d], over the transposed down projection wT (F, D). */
function matmulTransposedRowsKernel(this: KernelThis<{ F: number }>, wT: Grid, h: Grid, sel: Grid, n: number): number {
  let sum = 0
  for (let i = 0; i < n; i++) sum += h[this.thread.y][i] * wT[sel[0][i]][this.thread.x]
  return sum
}

/** out (T, rows) = x (T, cols) · Wᵀ (+ bias). */
export const matmul = (rt: GpuRuntime, w: DeviceBuffer, rows: number, cols: number, x: DeviceBuffer, T: number, bias: DeviceBuffer | undefined, forward?: Counts): Effect.Effect<DeviceBuffer, KernelError> => {
  const kernel =
    bias === undefined
      ? rt.kernel(`device.matmul:${cols}`, (c) => c(matmulKernel as unknown as KernelFunction, { output: [1, 1], constants: { cols }, loopMaxIterations: cols, pipeline: true }))
      : rt.kernel(`device.matmulBias:${cols}`, (c) => c(matmulBiasKernel as unknown as KernelFunction, { output: [1, 1], constants: { cols }, loopMaxIterations: cols, pipeline: true }))
  return rt.dispatch("matmul", kernel, [rows, T], bias === undefined ? [w.value, x.value] : [w.value, x.value, bias.value], forward)
}

/** out (T, n) = x (T, cols) · W[sel]ᵀ; sel holds n row indices. */
export const matmulRows = (rt: GpuRuntime, w: DeviceBuffer, cols: number, x: DeviceBuffer, T: number, sel: DeviceBuffer, n: number, forward?: Counts): Effect.Effect<DeviceBuffer, KernelError> => {
  const kernel = rt.kernel(`device.matmulRows:${cols}`, (c) => c(matmulRowsKernel as unknown as KernelFunction, { output: [1, 1], constants: { cols }, loopMaxIterations: cols, pipeline: true }))
  return rt.dispatch("matmulRows", kernel, [n, T], [w.value, x.value, sel.value], forward)
}

/** out (T, D) = Σ_{i<n} h[t, i] · wT[sel[i], :], wT (F, D); n ≥ 1 (the caller makes zeros for n = 0). */
export const matmulTransposedRows = (rt: GpuRuntime, wT: DeviceBuffer, F: number, D: number, h: DeviceBuffer, T: number, sel: DeviceBuffer, n: number, forward?: Counts): Effect.Effect<DeviceBuffer, KernelError> => {
  const kernel = rt.kernel(`device.matmulTransposedRows:${F}`, (c) =>
    c(matmulTransposedRowsKernel as unknown as KernelFunction, { output: [1, 1], constants: { F }, loopMaxIterations: F, pipeline: true })
  )
  return rt.dispatch("matmulTransposedRows", kernel, [D, T], [wT.value, h.value, sel.value, n], forward)
}
