// gather on the device: coarse sparsity's resident copies of a weight's kept rows or columns (Kernels.gather),
// made from the resident weight by one kernel, so a request's gather moves only its index list to the
// device. Must agree exactly with reference/gather.ts (copies, no arithmetic).
import type { KernelFunction } from "gpu.js"
import type { Effect } from "effect"
import type { KernelError } from "../../src/Kernels.ts"
import type { GpuRuntime } from "../GpuRuntime.ts"
import type { DeviceBuffer, Grid, KernelThis } from "../types.ts"

/** Cell (x = c, y = i): W[idx[i]][c]. */
function gatherRowsKernel(this: KernelThis<object>, w: Grid, idx: Grid): number {
  return w[idx[0][this.thread.y]][this.thread.x]
}

/** Cell (x = j, y = r): W[r][idx[j]]. */
function gatherColumnsKernel(this: KernelThis<object>, w: Grid, idx: Grid): number {
  return w[this.thread.y][idx[0][this.thread.x]]
}

/** W (rows, cols) → rows `idx` (n, cols), or columns `idx` (rows, n). */
export const gather = (rt: GpuRuntime, w: DeviceBuffer, rows: number, cols: number, idx: DeviceBuffer, n: number, axis: "rows" | "columns"): Effect.Effect<DeviceBuffer, KernelError> =>
  axis === "rows"
    ? rt.dispatch("gather", rt.kernel("device.gatherRows", (c) => c(gatherRowsKernel as unknown as KernelFunction, { output: [1, 1], loopMaxIterations: 1, pipeline: true })), [cols, n], [w.value, idx.value])
    : rt.dispatch("gather", rt.kernel("device.gatherColumns", (c) => c(gatherColumnsKernel as unknown as KernelFunction, { output: [1, 1], loopMaxIterations: 1, pipeline: true })), [n, rows], [w.value, idx.value])
