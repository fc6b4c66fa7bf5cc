// softmax over each row of x (rows, n), max-subtracted for numerical stability, float64 sums.

export const softmax = (x: Float32Array, rows: number, n: number): Float32Array => {
  const out = new Float32Array(rows * n)
  for (let r = 0; r < rows; r++) {
    let max = -Infinity
    for (let i = 0; i < n; i++) max = Math.max(max, x[r * n + i]!)
    let sum = 0
    for (let i = 0; i < n; i++) sum += Math.exp(x[r * n + i]! - max)
    for (let i = 0; i < n; i++) out[r * n + i] = Math.exp(x[r * n + i]! - max) / sum
  }
  return out
}
