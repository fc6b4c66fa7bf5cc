// attention on the device: grouped-query attention of q (T, H·Dh) over one layer of the device KV cache
// (kv.ts: [Hkv·Dh, capacity] keys and values), slots 0..S-1, S = the input's kvLength. Must agree with
// reference/attention.ts. Three kernels, so no cell repeats another's reduction:
//   scores [S, H, T]: q·k / sqrt(Dh) for the visible slots, −1e30 for the others (never read as a weight);
//   stats [2, H, T]: per (t, h) the max visible score and Σ exp(score − max) (max-subtracted for stability);
//   mix [H·Dh, T]: Σ exp(score − max)·v over the visible slots, divided by the sum: the same arithmetic, in
//     the same order, as the host path's fused kernel (gpu/attention.ts).
// Visibility comes from the forward's input buffer: causal (slot s ≤ position t) or the tree mask row.
// The slot loops run to S, bounded at compile time by a power-of-two bucket ≥ S (GLSL needs a constant
// loop bound), so decoding compiles nothing new until S crosses a power of two.
import type { KernelFunction } from "gpu.js"
import { Effect } from "effect"
import type { KernelError } from "../../src/Kernels.ts"
import type { GpuRuntime } from "../GpuRuntime.ts"
import type { Counts } from "../Traffic.ts"
import type { DeviceBuffer, Grid, Grid3, KernelThis } from "../types.ts"

interface Geometry {
  readonly H: number
  readonly Dh: number
  readonly group: number
  readonly scale: number
}

/**
 * Cell (x = s, y = h, z = t): q[t, h] · k[s, h / group] / sqrt(Dh), or −1e30 where slot s is invisible to
 * query t. The input buffer's row holds tokens (T), positions (T), then the mask (T, S) when `masked`.
 */
function scoresKernel(this: KernelThis<Geometry>, q: Grid, keys: Grid, input: Grid, T: number, S: number, masked: number): number {
  const s = this.thread.x
  const h = this.thread.y
  const t = this.thread.z
  let visible = 0
  if (masked > 0.5) {
    if (input[0][2 * T + t * S + s] > 0.5) visible = 1
  } else if (s <= input[0][T + t]) visible = 1
  if (visible < 1) return -1e30
  const kvh = Math.floor(h / this.constants.group)
  let dot = 0
  for (let i = 0; i < this.constants.Dh; i++) dot += q[t][h * this.constants.Dh + i] * keys[s][kvh * this.constants.Dh + i]
  return dot * this.constants.scale
}

/** Cell (x = 0 | 1, y = h, z = t): the max visible score (x = 0), or Σ exp(score − max) over them (x = 1). */
function statsKernel(this: KernelThis<object>, scores: Grid3, S: number): number {
  const h = this.thread.y
  const t = this.thread.z
  let max = -1e30
  for (let s = 0; s < S; s++) {
    const v = scores[t][h][s]
    if (v > -1e29) max = Math.max(max, v)
  }
  if (this.thread.x === 0) return max
  let sum = 0
  for (let j = 0; j < S; j++) {
    const w = scores[t][h][j]
    if (w > -1e29) sum += Math.exp(w - max)
  }
  return sum
}

/** Cell (x = h·Dh + i, y = t): Σ_s exp(score − max) · v[s, h / group, i] over the visible slots, / the sum. */
function mixKernel(this: KernelThis<Geometry>, scores: Grid3, stats: Grid3, values: Grid, S: number): number {
  const t = this.thread.y
  const h = Math.floor(this.thread.x / this.constants.Dh)
  const i = this.thread.x - h * this.constants.Dh
  const kvh = Math.floor(h / this.constants.group)
  const max = stats[t][h][0]
  let acc = 0
  for (let s = 0; s < S; s++) {
    const v = scores[t][h][s]
    if (v > -1e29) acc += Math.exp(v - max) * values[s][kvh * this.constants.Dh + i]
  }
  return acc / stats[t][h][1]
}

/** The smallest power of two ≥ n, at least 64: the slot loops' compile-time bound. */
export const bucket = (n: number): number => Math.max(64, 2 ** Math.ceil(Math.log2(n)))

export interface AttentionCall {
  readonly T: number
  readonly S: number
  readonly H: number
  readonly Hkv: number
  readonly Dh: number
  readonly masked: boolean
}

export const attention = (
  rt: GpuRuntime,
  q: DeviceBuffer,
  keys: DeviceBuffer,
  values: DeviceBuffer,
  input: DeviceBuffer,
  call: AttentionCall,
  forward?: Counts
): Effect.Effect<DeviceBuffer, KernelError> => {
  const { T, S, H, Hkv, Dh } = call
  const geometry: Geometry = { H, Dh, group: H / Hkv, scale: 1 / Math.sqrt(Dh) }
  const key = `${H}:${Hkv}:${Dh}`
  const Sb = bucket(S)
  const scores = rt.kernel(`device.attention.scores:${key}`, (c) =>
    c(scoresKernel as unknown as KernelFunction, { output: [1, 1, 1], constants: { ...geometry }, loopMaxIterations: Dh, pipeline: true })
  )
  const stats = rt.kernel(`device.attention.stats:${Sb}`, (c) => c(statsKernel as unknown as KernelFunction, { output: [2, 1, 1], loopMaxIterations: Sb, pipeline: true }))
  const mix = rt.kernel(`device.attention.mix:${key}:${Sb}`, (c) =>
    c(mixKernel as unknown as KernelFunction, { output: [1, 1], constants: { ...geometry }, loopMaxIterations: Sb, pipeline: true })
  )
  const free = (b: DeviceBuffer) => Effect.sync(() => rt.release(b))
  return Effect.acquireUseRelease(
    rt.dispatch("attention", scores, [S, H, T], [q.value, keys.value, input.value, T, S, call.masked ? 1 : 0], forward),
    (sc) =>
      Effect.acquireUseRelease(
        rt.dispatch("attention", stats, [2, H, T], [sc.value, S], forward),
        (st) => rt.dispatch("attention", mix, [H * Dh, T], [sc.value, st.value, values.value, S], forward),
        free
      ),
    free
  )
}
