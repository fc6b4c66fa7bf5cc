// attention on gpu.js: causal grouped-query attention of q (T, H·Dh) over keys/values (S, Hkv·Dh).
// T = tokens, H = query heads, Hkv = key/value heads, Dh = head dim, S = visible slots (kvLength).
// Must agree with reference/attention.ts. Two kernels, so no cell repeats another's reduction:
//   scores (T, H, S): q·k / sqrt(Dh) for the visible slots (invisible ones are never read);
//   mix (T, H, Dh): max-subtracted softmax over the visible scores (stability), times values.
// Visibility is a (T, Sb) 0/1 array made on the host: causal (s ≤ positions[t]) or the tree mask.
// Only the valid slots of the cache move to the device per call, zero-padded to a power-of-two bucket Sb
// ≥ S: every size a kernel sees (arguments, the scores' output, the mix loop's bound) is then fixed per
// bucket, so decoding token after token compiles nothing new until S crosses a power of two (a size
// change rebuilds the module on webasm, and the mix loop's GLSL bound must be a compile-time constant).
import type { KernelFunction } from "gpu.js"
import { Effect } from "effect"
import type { AttentionShape } from "../reference/host.ts"
import type { KernelError } from "../src/Kernels.ts"
import type { GpuRuntime } from "./GpuRuntime.ts"
import type { KernelThis } from "./types.ts"

interface Geometry {
  readonly H: number
  readonly Hkv: number
  readonly Dh: number
  readonly group: number
  readonly scale: number
}

/** Cell (x = s, y = h, z = t): q[t, h] · k[s, h / group] / sqrt(Dh), or 0 where slot s is invisible to t. */
function scoresKernel(this: KernelThis<Geometry>, q: Float32Array, keys: Float32Array, visible: Float32Array, S: number): number {
  const s = this.thread.x
  const h = this.thread.y
  const t = this.thread.z
  if (visible[t * S + s] < 0.5) return 0
  const kvh = Math.floor(h / this.constants.group)
  const qo = (t * this.constants.H + h) * this.constants.Dh
  const ko = (s * this.constants.Hkv + kvh) * this.constants.Dh
  let dot = 0
  for (let i = 0; i < this.constants.Dh; i++) dot += q[qo + i] * keys[ko + i]
  return dot * this.constants.scale
}

/** Cell (x = i, y = h, z = t): Σ_s softmax(scores[t, h, visible s])_s · v[s, h / group, i]. */
function mixKernel(this: KernelThis<Geometry>, scores: Float32Array, values: Float32Array, visible: Float32Array, S: number): number {
  const i = this.thread.x
  const h = this.thread.y
  const t = this.thread.z
  const kvh = Math.floor(h / this.constants.group)
  const base = (t * this.constants.H + h) * S
  let max = -1e30
  for (let j = 0; j < S; j++) if (visible[t * S + j] > 0.5) max = Math.max(max, scores[base + j])
  let sum = 0
  let acc = 0
  for (let s = 0; s < S; s++) {
    if (visible[t * S + s] > 0.5) {
      const e = Math.exp(scores[base + s] - max)
      sum += e
      acc += e * values[(s * this.constants.Hkv + kvh) * this.constants.Dh + i]
    }
  }
  return acc / sum
}

/** The smallest power of two ≥ n, at least 64: the slot bucket. */
const bucket = (n: number): number => Math.max(64, 2 ** Math.ceil(Math.log2(n)))

export const attention = (
  rt: GpuRuntime,
  q: Float32Array,
  keys: Float32Array,
  values: Float32Array,
  shape: AttentionShape
): Effect.Effect<Float32Array, KernelError> => {
  const { T, numHeads: H, numKeyValueHeads: Hkv, headDim: Dh, kvLength: S } = shape
  const geometry: Geometry = { H, Hkv, Dh, group: H / Hkv, scale: 1 / Math.sqrt(Dh) }
  const key = `${H}:${Hkv}:${Dh}`
  const scores = rt.kernel(`attention.scores:${key}`, (create) =>
    create(scoresKernel as unknown as KernelFunction, { output: [1, H, 1], constants: { ...geometry }, loopMaxIterations: Dh })
  )
  const Sb = bucket(S)
  const mix = rt.kernel(`attention.mix:${key}:${Sb}`, (create) =>
    create(mixKernel as unknown as KernelFunction, { output: [Dh, H, 1], constants: { ...geometry }, loopMaxIterations: Sb })
  )
  const kvDim = Hkv * Dh
  // (T, Sb) visibility: the tree mask, or causal by position
  const visible = new Float32Array(T * Sb)
  for (let t = 0; t < T; t++)
    for (let s = 0; s < S; s++) visible[t * Sb + s] = shape.mask === undefined ? (s <= shape.positions[t]! ? 1 : 0) : shape.mask[t * S + s]!
  const k = new Float32Array(Sb * kvDim) // (Sb, Hkv·Dh): slots ≥ S are zeros and never read
  k.set(keys.subarray(0, S * kvDim))
  const v = new Float32Array(Sb * kvDim)
  v.set(values.subarray(0, S * kvDim))
  return Effect.flatMap(rt.run("attention", scores, [Sb, H, T], [q, k, visible, Sb]), (att) =>
    rt.run("attention", mix, [Dh, H, T], [att, v, visible, Sb])
  )
}
