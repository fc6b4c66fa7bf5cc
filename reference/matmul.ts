// matmul: out (T, rows) = x (T, cols) · Wᵀ, W row-major (rows, cols) = HF nn.Linear [out, in].
// T = tokens, rows = output features, cols = input features. Accumulates in float64, stores float32.

/** out[t·rows + r] = Σ_c w[r·cols + c] · x[t·cols + c] */
export const matmul = (w: Float32Array, x: Float32Array, T: number, rows: number, cols: number): Float32Array => {
  const out = new Float32Array(T * rows)
  for (let t = 0; t < T; t++) {
    const xo = t * cols
    for (let r = 0; r < rows; r++) {
      const wo = r * cols
      let sum = 0
      for (let c = 0; c < cols; c++) sum += w[wo + c]! * x[xo + c]!
      out[t * rows + r] = sum
    }
  }
  return out
}

/** Σ_c |w[r,c] · x[t,c]| per output: the magnitude term of the reduction tolerance (docs/testing.md). */
export const matmulAbsTerms = (w: Float32Array, x: Float32Array, T: number, rows: number, cols: number): Float32Array => {
  const out = new Float32Array(T * rows)
  for (let t = 0; t < T; t++)
    for (let r = 0; r < rows; r++) {
      let sum = 0
      for (let c = 0; c < cols; c++) sum += Math.abs(w[r * cols + c]! * x[t * cols + c]!)
      out[t * rows + r] = sum
    }
  return out
}

/** Sparse: out (T, n) = x (T, cols) · W[rows]ᵀ, reading only the selected rows. */
export const matmulRows = (w: Float32Array, x: Float32Array, T: number, cols: number, rows: Int32Array): Float32Array => {
  const n = rows.length
  const out = new Float32Array(T * n)
  for (let t = 0; t < T; t++)
    for (let i = 0; i < n; i++) {
      const wo = rows[i]! * cols
      let sum = 0
      for (let c = 0; c < cols; c++) sum += w[wo + c]! * x[t * cols + c]!
      out[t * n + i] = sum
    }
  return out
}

/** Sparse, transposed weight wT (F, D): out (T, D) = Σ_i h[t, i] · wT[rows[i], :], reading only the selected rows. */
export const matmulTransposedRows = (wT: Float32Array, h: Float32Array, T: number, D: number, rows: Int32Array): Float32Array => {
  const n = rows.length
  const out = new Float32Array(T * D)
  const acc = new Float64Array(D)
  for (let t = 0; t < T; t++) {
    acc.fill(0)
    for (let i = 0; i < n; i++) {
      const hv = h[t * n + i]!
      const wo = rows[i]! * D
      for (let d = 0; d < D; d++) acc[d] += hv * wT[wo + d]!
    }
    out.set(acc, t * D)
  }
  return out
}
