// swiglu on gpu.js: out (N) = silu(gate) ⊙ up, silu(g) = g / (1 + e^(−g)); N = T · intermediate.
// Must agree with reference/swiglu.ts (f32 exp; GLSL/WGSL allow (3 + 2|g|) ulp for exp).
import type { KernelFunction } from "gpu.js"
import type { Effect } from "effect"
import type { KernelError } from "../src/Kernels.ts"
import type { GpuRuntime } from "./GpuRuntime.ts"
import type { KernelThis } from "./types.ts"

function swigluKernel(this: KernelThis<object>, gate: Float32Array, up: Float32Array): number {
  const g = gate[this.thread.x]
  return (g / (1 + Math.exp(-g))) * up[this.thread.x]
}

export const swiglu = (rt: GpuRuntime, gate: Float32Array, up: Float32Array): Effect.Effect<Float32Array, KernelError> => {
  const kernel = rt.kernel("swiglu", (create) => create(swigluKernel as unknown as KernelFunction, { output: [1], loopMaxIterations: 1 }))
  return rt.run("swiglu", kernel, [gate.length], [gate, up])
}
