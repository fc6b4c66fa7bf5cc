// swiglu: out (N) = silu(gate) ⊙ up with silu(g) = g / (1 + e^(−g)); N = T · intermediate.
// swigluRows: fine sparsity's version over the selected neurons: out (T, n) = silu(gate[:, rows]) ⊙ up.
import { silu } from "../src/Sparsity.ts"

export { silu }

export const swiglu = (gate: Float32Array, up: Float32Array): Float32Array => {
  const out = new Float32Array(gate.length)
  for (let i = 0; i < gate.length; i++) out[i] = silu(gate[i]!) * up[i]!
  return out
}

/** gate (T, F), up (T, n), rows (n) ascending: out[t, i] = silu(gate[t, rows[i]]) · up[t, i]. */
export const swigluRows = (gate: Float32Array, F: number, up: Float32Array, rows: Int32Array): Float32Array => {
  const n = rows.length
  const T = n === 0 ? 0 : up.length / n
  const out = new Float32Array(T * n)
  for (let t = 0; t < T; t++) for (let i = 0; i < n; i++) out[t * n + i] = silu(gate[t * F + rows[i]!]!) * up[t * n + i]!
  return out
}
