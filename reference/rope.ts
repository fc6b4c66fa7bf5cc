// rope: HF `rotate_half` rotary embedding on x (T, heads·Dh) at positions (T).
// T = tokens, Dh = head dim; pairs (i, i + Dh/2) rotate by θ = positions[t] · invFreq[i], i < Dh/2.
//   x'[i]      = x[i]·cos θ − x[i+Dh/2]·sin θ
//   x'[i+Dh/2] = x[i+Dh/2]·cos θ + x[i]·sin θ

export const rope = (
  x: Float32Array,
  T: number,
  heads: number,
  headDim: number,
  positions: Int32Array,
  invFreq: Float32Array
): Float32Array => {
  const out = new Float32Array(x.length)
  const half = headDim / 2
  for (let t = 0; t < T; t++)
    for (let h = 0; h < heads; h++) {
      const o = (t * heads + h) * headDim
      for (let i = 0; i < half; i++) {
        const theta = positions[t]! * invFreq[i]!
        const cos = Math.cos(theta)
        const sin = Math.sin(theta)
        const a = x[o + i]!
        const b = x[o + i + half]!
        out[o + i] = a * cos - b * sin
        out[o + i + half] = b * cos + a * sin
      }
    }
  return out
}
