// swiglu: out (N) = silu(gate) ⊙ up with silu(g) = g / (1 + e^(−g)); N = T · intermediate.

export const silu = (g: number): number => g / (1 + Math.exp(-g))

export const swiglu = (gate: Float32Array, up: Float32Array): Float32Array => {
  const out = new Float32Array(gate.length)
  for (let i = 0; i < gate.length; i++) out[i] = silu(gate[i]!) * up[i]!
  return out
}
