// rope on the device: HF `rotate_half` on x (T, heads·Dh) at the forward input's positions. Must agree with
// reference/rope.ts. cos θ and sin θ come from a resident table ([Dh, count]: row p holds cos of the Dh/2
// frequencies, then their sin, for position p), computed on the host in float64 once and rounded to f32
// (like HF's rotary_emb cache): positions reach thousands of radians, where f32 argument reduction on a GPU
// loses digits. The table is uploaded once, and again (doubled) only when a position passes its end.
import type { KernelFunction } from "gpu.js"
import type { Effect } from "effect"
import type { KernelError } from "../../src/Kernels.ts"
import type { GpuRuntime } from "../GpuRuntime.ts"
import type { Counts } from "../Traffic.ts"
import type { DeviceBuffer, Grid, KernelThis } from "../types.ts"

/** Cell (x = j in heads·Dh, y = t): the rotated element j of token t at position input[T + t]. */
function ropeKernel(this: KernelThis<{ Dh: number; half: number }>, x: Grid, input: Grid, table: Grid, T: number): number {
  const t = this.thread.y
  const j = this.thread.x
  const d = j - Math.floor(j / this.constants.Dh) * this.constants.Dh
  const p = input[0][T + t]
  if (d < this.constants.half) return x[t][j] * table[p][d] - x[t][j + this.constants.half] * table[p][this.constants.half + d]
  const f = d - this.constants.half
  return x[t][j] * table[p][f] + x[t][j - this.constants.half] * table[p][this.constants.half + f]
}

/** The table's host values (count, Dh): cos then sin of p·invFreq[i], computed in float64. */
export const ropeTable = (invFreq: Float32Array, count: number): Float32Array => {
  const half = invFreq.length
  const table = new Float32Array(count * 2 * half)
  for (let p = 0; p < count; p++)
    for (let i = 0; i < half; i++) {
      table[p * 2 * half + i] = Math.cos(p * invFreq[i]!)
      table[p * 2 * half + half + i] = Math.sin(p * invFreq[i]!)
    }
  return table
}

export const rope = (rt: GpuRuntime, x: DeviceBuffer, T: number, heads: number, headDim: number, input: DeviceBuffer, table: DeviceBuffer, forward?: Counts): Effect.Effect<DeviceBuffer, KernelError> => {
  const kernel = rt.kernel(`device.rope:${headDim}`, (c) =>
    c(ropeKernel as unknown as KernelFunction, { output: [1, 1], constants: { Dh: headDim, half: headDim / 2 }, loopMaxIterations: 1, pipeline: true })
  )
  return rt.dispatch("rope", kernel, [heads * headDim, T], [x.value, input.value, table.value, T], forward)
}
