// softmax on gpu.js over each row of x (rows, n), max-subtracted for numerical stability.
// Must agree with reference/softmax.ts. Not a Kernels op (attention fuses its own softmax into the
// value mix); kept so gpu/ mirrors reference/ op by op, and as the smallest two-pass reduction example.
// Two kernels: per-row max and Σ exp (rows cells), then the normalised exponentials (rows·n cells).
import type { KernelFunction } from "gpu.js"
import { Effect } from "effect"
import type { KernelError } from "../src/Kernels.ts"
import type { GpuRuntime } from "./GpuRuntime.ts"
import type { KernelThis } from "./types.ts"

/** Cell (x = 0 max | 1 sum, y = r). */
function statsKernel(this: KernelThis<{ n: number }>, x: Float32Array): number {
  const o = this.thread.y * this.constants.n
  let max = x[o]
  for (let j = 1; j < this.constants.n; j++) max = Math.max(max, x[o + j])
  if (this.thread.x === 0) return max
  let sum = 0
  for (let i = 0; i < this.constants.n; i++) sum += Math.exp(x[o + i] - max)
  return sum
}

/** Cell (x = i, y = r): exp(x[r, i] − max[r]) / sum[r]. */
function normaliseKernel(this: KernelThis<{ n: number }>, x: Float32Array, stats: Float32Array): number {
  const r = this.thread.y
  return Math.exp(x[r * this.constants.n + this.thread.x] - stats[2 * r]) / stats[2 * r + 1]
}

export const softmax = (rt: GpuRuntime, x: Float32Array, rows: number, n: number): Effect.Effect<Float32Array, KernelError> => {
  const stats = rt.kernel(`softmax.stats:${n}`, (create) =>
    create(statsKernel as unknown as KernelFunction, { output: [2, 1], constants: { n }, loopMaxIterations: n })
  )
  const normalise = rt.kernel(`softmax.normalise:${n}`, (create) =>
    create(normaliseKernel as unknown as KernelFunction, { output: [n, 1], constants: { n }, loopMaxIterations: 1 })
  )
  return Effect.flatMap(rt.run("softmax", stats, [2, rows], [x]), (st) => rt.run("softmax", normalise, [n, rows], [x, st]))
}
