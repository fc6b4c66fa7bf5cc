/**
 * RoPE inverse frequencies, derived once per model from the config: base^(−2i/Dh) for i < Dh/2, with
 * optional Llama 3 scaling (docs/formats.md, as transformers' `_compute_llama3_parameters`)
 * or llama.cpp's per-frequency divisors (`rope_freqs.weight`, read from GGUF files).
 * Computed in float64, stored as float32. The rotation itself is the `rope` kernel.
 */
import type { Llama3RopeScaling, RopeFreqFactors } from "./Config.ts"

export const ropeInvFreq = (
  headDim: number,
  theta: number,
  scaling?: Omit<Llama3RopeScaling, "ropeType"> | RopeFreqFactors
): Float32Array => {
  const out = new Float32Array(headDim / 2)
  for (let i = 0; i < headDim / 2; i++) {
    let invFreq = Math.pow(theta, (-2 * i) / headDim)
    if (scaling !== undefined && "factors" in scaling) invFreq = invFreq / scaling.factors[i]!
    else if (scaling !== undefined) {
      const { factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: oldCtx } = scaling
      const wavelen = (2 * Math.PI) / invFreq
      const lowFreqWavelen = oldCtx / lowFreqFactor
      const highFreqWavelen = oldCtx / highFreqFactor
      if (wavelen > lowFreqWavelen) invFreq = invFreq / factor
      else if (wavelen >= highFreqWavelen) {
        const smooth = (oldCtx / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor)
        invFreq = (1 - smooth) * (invFreq / factor) + smooth * invFreq
      }
    }
    out[i] = invFreq
  }
  return out
}
