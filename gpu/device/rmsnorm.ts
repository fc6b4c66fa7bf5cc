// rmsnorm on the device: out (T, D) = x / sqrt(mean(x²) + eps) ⊙ weight, per row. Must agree with
// reference/rmsnorm.ts. Two kernels, as on the host path (gpu/rmsnorm.ts), so no cell repeats the D-long
// reduction: the per-row sum of squares ([1, T]), then the elementwise scale ([D, T]).
import type { KernelFunction } from "gpu.js"
import { Effect } from "effect"
import type { KernelError } from "../../src/Kernels.ts"
import type { GpuRuntime } from "../GpuRuntime.ts"
import type { Counts } from "../Traffic.ts"
import type { DeviceBuffer, Grid, KernelThis } from "../types.ts"

/** Cell (x = 0, y = t): Σ_i x[t][i]². */
function sumSquaresKernel(this: KernelThis<{ D: number }>, x: Grid): number {
  let ss = 0
  for (let i = 0; i < this.constants.D; i++) {
    const v = x[this.thread.y][i]
    ss += v * v
  }
  return ss
}

/** Cell (x = i, y = t): x[t][i] · (1 / sqrt(ss[t] / D + eps)) · w[i]. */
function scaleKernel(this: KernelThis<{ D: number }>, x: Grid, ss: Grid, w: Grid, eps: number): number {
  const scale = 1 / Math.sqrt(ss[this.thread.y][0] / this.constants.D + eps)
  return x[this.thread.y][this.thread.x] * scale * w[0][this.thread.x]
}

export const rmsnorm = (rt: GpuRuntime, x: DeviceBuffer, weight: DeviceBuffer, T: number, D: number, eps: number, forward?: Counts): Effect.Effect<DeviceBuffer, KernelError> => {
  const sumSquares = rt.kernel(`device.rmsnorm.sumSquares:${D}`, (c) =>
    c(sumSquaresKernel as unknown as KernelFunction, { output: [1, 1], constants: { D }, loopMaxIterations: D, pipeline: true })
  )
  const scale = rt.kernel(`device.rmsnorm.scale:${D}`, (c) => c(scaleKernel as unknown as KernelFunction, { output: [1, 1], constants: { D }, loopMaxIterations: 1, pipeline: true }))
  return Effect.acquireUseRelease(
    rt.dispatch("rmsnorm", sumSquares, [1, T], [x.value], forward),
    (ss) => rt.dispatch("rmsnorm", scale, [D, T], [x.value, ss.value, weight.value, eps], forward),
    (ss) => Effect.sync(() => rt.release(ss))
  )
}
