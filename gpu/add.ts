// add on gpu.js: out (N) = a + b, elementwise (the residual connections). Must agree with reference/add.ts
// exactly on IEEE f32 backends (one rounding of an exact sum, like the reference's).
import type { KernelFunction } from "gpu.js"
import type { Effect } from "effect"
import type { KernelError } from "../src/Kernels.ts"
import type { GpuRuntime } from "./GpuRuntime.ts"
import type { KernelThis } from "./types.ts"

function addKernel(this: KernelThis<object>, a: Float32Array, b: Float32Array): number {
  return a[this.thread.x] + b[this.thread.x]
}

export const add = (rt: GpuRuntime, a: Float32Array, b: Float32Array): Effect.Effect<Float32Array, KernelError> => {
  const kernel = rt.kernel("add", (create) => create(addKernel as unknown as KernelFunction, { output: [1], loopMaxIterations: 1 }))
  return rt.run("add", kernel, [a.length], [a, b])
}
