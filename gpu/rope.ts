// rope on gpu.js: HF `rotate_half` rotary embedding on x (T, heads·Dh) at positions (T).
// T = tokens, Dh = head dim; pairs (i, i + Dh/2) rotate by θ = positions[t] · invFreq[i], i < Dh/2.
// Must agree with reference/rope.ts. cos θ and sin θ are computed on the host in float64 (T·Dh/2 values,
// like HF's rotary_emb cache): positions reach thousands of radians, where f32 argument reduction on a
// GPU loses digits; the kernel only rotates.
import type { KernelFunction } from "gpu.js"
import type { Effect } from "effect"
import type { KernelError } from "../src/Kernels.ts"
import type { GpuRuntime } from "./GpuRuntime.ts"
import type { KernelThis } from "./types.ts"

/** Cell (x = j in heads·Dh, y = t): the rotated element j of token t. */
function ropeKernel(this: KernelThis<{ W: number; Dh: number; half: number }>, x: Float32Array, cos: Float32Array, sin: Float32Array): number {
  const t = this.thread.y
  const j = this.thread.x
  const d = j - Math.floor(j / this.constants.Dh) * this.constants.Dh
  const o = t * this.constants.W + j
  if (d < this.constants.half) {
    const f = t * this.constants.half + d
    return x[o] * cos[f] - x[o + this.constants.half] * sin[f]
  }
  const f = t * this.constants.half + d - this.constants.half
  return x[o] * cos[f] + x[o - this.constants.half] * sin[f]
}

/** (T, Dh/2) tables of cos θ and sin θ, θ = positions[t] · invFreq[i], computed in float64. */
export const ropeTables = (positions: Int32Array, invFreq: Float32Array): { cos: Float32Array; sin: Float32Array } => {
  const half = invFreq.length
  const cos = new Float32Array(positions.length * half)
  const sin = new Float32Array(positions.length * half)
  positions.forEach((p, t) => {
    for (let i = 0; i < half; i++) {
      cos[t * half + i] = Math.cos(p * invFreq[i]!)
      sin[t * half + i] = Math.sin(p * invFreq[i]!)
    }
  })
  return { cos, sin }
}

export const rope = (
  rt: GpuRuntime,
  x: Float32Array,
  T: number,
  heads: number,
  headDim: number,
  positions: Int32Array,
  invFreq: Float32Array
): Effect.Effect<Float32Array, KernelError> => {
  const W = heads * headDim
  const kernel = rt.kernel(`rope:${heads}:${headDim}`, (create) =>
    create(ropeKernel as unknown as KernelFunction, { output: [W, 1], constants: { W, Dh: headDim, half: headDim / 2 }, loopMaxIterations: 1 })
  )
  const { cos, sin } = ropeTables(positions, invFreq)
  return rt.run("rope", kernel, [W, T], [x, cos, sin])
}
