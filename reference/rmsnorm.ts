// rmsnorm: out (T, D) = x / sqrt(mean(x²) + eps) ⊙ weight, per row. T = tokens, D = hidden.
// Like HF's LlamaRMSNorm, which normalises in fp32; here the mean is accumulated in float64.

export const rmsnorm = (x: Float32Array, weight: Float32Array, T: number, eps: number): Float32Array => {
  const D = weight.length
  const out = new Float32Array(T * D)
  for (let t = 0; t < T; t++) {
    let ss = 0
    for (let i = 0; i < D; i++) ss += x[t * D + i]! * x[t * D + i]!
    const scale = 1 / Math.sqrt(ss / D + eps)
    for (let i = 0; i < D; i++) out[t * D + i] = x[t * D + i]! * scale * weight[i]!
  }
  return out
}
