// embedding: out (T, D) = table (V, D) rows at tokens (T). T = tokens, V = vocab, D = hidden.

export const embedding = (table: Float32Array, tokens: Int32Array, dim: number): Float32Array => {
  const out = new Float32Array(tokens.length * dim)
  tokens.forEach((id, t) => out.set(table.subarray(id * dim, (id + 1) * dim), t * dim))
  return out
}
