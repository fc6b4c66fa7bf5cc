// gather: a copy of selected rows or columns of a row-major (rows, cols) matrix. Coarse sparsity gathers a
// request's neurons once (gate/up rows, down_proj columns) and then runs dense matmuls on the copies.

/** out (n, cols) = w[indices[i], :] */
export const gatherRows = (w: Float32Array, cols: number, indices: Int32Array): Float32Array => {
  const out = new Float32Array(indices.length * cols)
  indices.forEach((r, i) => out.set(w.subarray(r * cols, (r + 1) * cols), i * cols))
  return out
}

/** out (rows, n) = w[:, indices[j]] */
export const gatherColumns = (w: Float32Array, rows: number, cols: number, indices: Int32Array): Float32Array => {
  const n = indices.length
  const out = new Float32Array(rows * n)
  for (let r = 0; r < rows; r++) for (let j = 0; j < n; j++) out[r * n + j] = w[r * cols + indices[j]!]!
  return out
}

/** A row-major f32 matrix (the reference's handle, and any backend's that holds the same). */
export interface F32Rows {
  readonly rows: number
  readonly cols: number
  readonly data: Float32Array // (rows, cols)
}

/** Kernels.gather on a row-major f32 matrix: rows `indices` (n, cols) or columns `indices` (rows, n). */
export const gather = (w: F32Rows, indices: Int32Array, axis: "rows" | "columns"): F32Rows =>
  axis === "rows"
    ? { rows: indices.length, cols: w.cols, data: gatherRows(w.data, w.cols, indices) }
    : { rows: w.rows, cols: indices.length, data: gatherColumns(w.data, w.rows, w.cols, indices) }
