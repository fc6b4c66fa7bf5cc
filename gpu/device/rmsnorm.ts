// rmsnorm on the device: out (T, D) = x / sqrt(mean(x²) + eps) ⊙ weight, per row. Must agree with
// reference/rmsnorm.ts. One kernel: each cell sums its row's squares itself (D reads of a row every cell of
// that row shares, from cache) rather than a second launch doing it once per row: a launch costs more than
// the D multiply-adds on any device (≈ 1 ms on SwiftShader, 5–20 µs through a browser on a real GPU), and
// every cell adds the squares in the same order, so the result is the two-kernel one, bit for bit.
import type { KernelFunction } from "gpu.js"
import type { Effect } from "effect"
import type { KernelError } from "../../src/Kernels.ts"
import type { GpuRuntime } from "../GpuRuntime.ts"
import type { Counts } from "../Traffic.ts"
import type { DeviceBuffer, Grid, KernelThis } from "../types.ts"

/** Cell (x = i, y = t): x[t][i] · (1 / sqrt(Σ_j x[t][j]² / D + eps)) · w[i]. */
function rmsnormKernel(this: KernelThis<{ D: number }>, x: Grid, w: Grid, eps: number): number {
  const t = this.thread.y
  let ss = 0
  for (let j = 0; j < this.constants.D; j++) {
    const v = x[t][j]
    ss += v * v
  }
  const scale = 1 / Math.sqrt(ss / this.constants.D + eps)
  return x[t][this.thread.x] * scale * w[0][this.thread.x]
}

export const rmsnorm = (rt: GpuRuntime, x: DeviceBuffer, weight: DeviceBuffer, T: number, D: number, eps: number, forward?: Counts): Effect.Effect<DeviceBuffer, KernelError> => {
  const kernel = rt.kernel(`device.rmsnorm:${D}`, (c) => c(rmsnormKernel as unknown as KernelFunction, { output: [1, 1], constants: { D }, loopMaxIterations: D, pipeline: true }))
  return rt.dispatch("rmsnorm", kernel, [D, T], [x.value, weight.value, eps], forward)
}
