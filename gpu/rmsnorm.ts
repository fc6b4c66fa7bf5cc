// rmsnorm on gpu.js: out (T, D) = x / sqrt(mean(x²) + eps) ⊙ weight, per row; weight resident as a constant.
// T = tokens, D = hidden. Must agree with reference/rmsnorm.ts. Two kernels: the per-row sum of squares
// (T cells, a D-long f32 reduction each), then the elementwise scale (T·D cells), so no cell repeats
// the reduction.
import type { KernelFunction } from "gpu.js"
import { Effect } from "effect"
import type { KernelError } from "../src/Kernels.ts"
import type { GpuRuntime } from "./GpuRuntime.ts"
import type { GpuVector, KernelThis } from "./types.ts"

/** Cell (x = t): Σ_i x[t, i]². */
function sumSquaresKernel(this: KernelThis<{ D: number }>, x: Float32Array): number {
  let ss = 0
  for (let i = 0; i < this.constants.D; i++) {
    const v = x[this.thread.x * this.constants.D + i]
    ss += v * v
  }
  return ss
}

/** Cell (x = i, y = t): x[t, i] · (1 / sqrt(ss[t] / D + eps)) · w[i]. */
function scaleKernel(this: KernelThis<{ D: number; w: Float32Array }>, x: Float32Array, ss: Float32Array, eps: number): number {
  const scale = 1 / Math.sqrt(ss[this.thread.y] / this.constants.D + eps)
  return x[this.thread.y * this.constants.D + this.thread.x] * scale * this.constants.w[this.thread.x]
}

export const rmsnorm = (rt: GpuRuntime, x: Float32Array, weight: GpuVector, T: number, eps: number): Effect.Effect<Float32Array, KernelError> => {
  const D = weight.length
  const sumSquares = rt.kernel(`rmsnorm.sumSquares:${D}`, (create) =>
    create(sumSquaresKernel as unknown as KernelFunction, { output: [1], constants: { D }, loopMaxIterations: D })
  )
  const scale = rt.kernel(`rmsnorm.scale#${weight.id}`, (create) =>
    create(scaleKernel as unknown as KernelFunction, { output: [D, 1], constants: { D, w: weight.data }, loopMaxIterations: 1 })
  )
  return Effect.flatMap(rt.run("rmsnorm", sumSquares, [T], [x]), (ss) => rt.run("rmsnorm", scale, [D, T], [x, ss, eps]))
}
