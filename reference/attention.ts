// attention: causal grouped-query attention of q (T, H·Dh) over a KV cache keys/values (S, Hkv·Dh).
// T = tokens, H = query heads, Hkv = key/value heads, Dh = head dim, S = slots (kvLength).
// Query t (absolute position positions[t]) attends slots 0..positions[t], or exactly the slots its mask row
// marks (tree attention) when a mask (T, S) is given; query head h reads KV head
// floor(h / (H/Hkv)); scores are scaled by 1/sqrt(Dh) and max-subtracted before exp (stability).

import type { AttentionShape } from "./host.ts"

export const attention = (q: Float32Array, keys: Float32Array, values: Float32Array, dims: AttentionShape): Float32Array => {
  const { T, numHeads: H, numKeyValueHeads: Hkv, headDim: Dh, positions, mask, kvLength: S } = dims
  const out = new Float32Array(T * H * Dh)
  const group = H / Hkv
  const scale = 1 / Math.sqrt(Dh)
  const att = new Float64Array(dims.kvLength) // (S) scores of one head
  for (let t = 0; t < T; t++) {
    const visible = mask === undefined ? positions[t]! + 1 : S
    const sees = (s: number) => mask === undefined || mask[t * S + s] === 1
    for (let h = 0; h < H; h++) {
      const qo = (t * H + h) * Dh
      const kvh = Math.floor(h / group)
      let max = -Infinity
      for (let s = 0; s < visible; s++) {
        if (!sees(s)) {
          att[s] = -Infinity
          continue
        }
        const ko = (s * Hkv + kvh) * Dh
        let dot = 0
        for (let i = 0; i < Dh; i++) dot += q[qo + i]! * keys[ko + i]!
        att[s] = dot * scale
        max = Math.max(max, att[s]!)
      }
      let sum = 0
      for (let s = 0; s < visible; s++) {
        att[s] = sees(s) ? Math.exp(att[s]! - max) : 0
        sum += att[s]!
      }
      for (let i = 0; i < Dh; i++) {
        let acc = 0
        for (let s = 0; s < visible; s++) if (att[s]! !== 0) acc += att[s]! * values[(s * Hkv + kvh) * Dh + i]!
        out[qo + i] = acc / sum
      }
    }
  }
  return out
}
