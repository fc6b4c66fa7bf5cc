/**
 * ggmlActivations: llama.cpp's CPU rounding of activations before a matmul, emulated on the reference
 * kernels — the model of why llama.cpp's probabilities differ from sirius-ts's on quantized weights.
 *
 * ggml's CPU backend multiplies a weight of type W by activations converted to W's `vec_dot_type`
 * (ggml-cpu.c `type_traits_cpu`): F32 weights take f32 activations; F16 and BF16 weights round them to
 * f16 / bf16; Q8_0 and Q4_0 weights quantize them to Q8_0 (blocks of 32, d = amax/127 stored as f16,
 * q = round-to-nearest-even(x·127/amax), the x86 `quantize_row_q8_0`); Q4_K and Q6_K weights to Q8_K
 * (blocks of 256, f32 d = −max/127 of the signed largest value, q = nearest_int(x/d) capped at 127,
 * `quantize_row_q8_K_ref`). The integer dot products that follow equal, up to f32 summation order,
 * dot(dequantized weights, dequantized activations). Weights are dequantized exactly on both sides
 * (ggml's embedding lookup dequantizes too, and is not rounded).
 *
 * So "reference kernels + this rounding" matches llama.cpp to float noise — except where an activation
 * lies so close to a rounding boundary that the two implementations' last-bit f32 differences round it
 * to different neighbours (a "flip") — and the distance from the exact reference to it is what
 * llama.cpp's activation rounding costs: the per-case bound of properties/llamaCppGguf.test.ts is
 * derived from it. Test code only.
 */
import { Effect, Layer } from "effect"
import { fromHost, type HostKernelsShape, referenceHost } from "../reference/index.ts"
import { roundToBf16, roundToF16 } from "../src/Half.ts"
import { Kernels, type KernelsShape, type Matrix } from "../src/Kernels.ts"
import { nearestInt } from "../src/Quant.ts"
import type { DType } from "../src/Tensor.ts"

const fr = Math.fround

/** Round half to even (x86 `_mm256_round_ps(…, _MM_ROUND_NEAREST)`). */
const roundEven = (x: number): number => {
  const r = Math.round(x)
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r
}

/** Q8_0 activations: blocks of 32 (ggml-cpu x86 `quantize_row_q8_0`). */
const q8_0 = (x: Float32Array, out: Float32Array, at: number): void => {
  let amax = 0
  for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[at + j]!))
  const d = roundToF16(fr(amax / 127))
  const id = amax !== 0 ? fr(127 / amax) : 0
  for (let j = 0; j < 32; j++) out[at + j] = roundEven(fr(x[at + j]! * id)) * d
}

/** Q8_K activations: blocks of 256 (`quantize_row_q8_K_ref`). */
const q8_K = (x: Float32Array, out: Float32Array, at: number): void => {
  let amax = 0
  let max = 0
  for (let j = 0; j < 256; j++) {
    const ax = Math.abs(x[at + j]!)
    if (ax > amax) {
      amax = ax
      max = x[at + j]!
    }
  }
  if (amax === 0) {
    out.fill(0, at, at + 256)
    return
  }
  const iscale = fr(-127 / max)
  const d = fr(1 / iscale)
  for (let j = 0; j < 256; j++) out[at + j] = Math.min(127, nearestInt(fr(iscale * x[at + j]!))) * d
}

/** x (T, cols) as llama.cpp rounds it before a matmul with weights of type `dtype`. */
export const roundActivations = (dtype: DType, x: Float32Array): Float32Array => {
  switch (dtype) {
    case "F32":
      return x
    case "F16":
      return x.map(roundToF16)
    case "BF16":
      return x.map(roundToBf16)
    case "Q8_0":
    case "Q4_0": {
      const out = new Float32Array(x.length)
      for (let at = 0; at < x.length; at += 32) q8_0(x, out, at)
      return out
    }
    case "Q4_K":
    case "Q6_K": {
      const out = new Float32Array(x.length)
      for (let at = 0; at < x.length; at += 256) q8_K(x, out, at)
      return out
    }
  }
}

interface Typed extends Matrix {
  readonly dtype: DType
  readonly inner: Matrix
}

/**
 * The reference kernels with llama.cpp's activation rounding before every matmul (the reference's host
 * ops, lifted with fromHost like the reference itself; biases are added after the matmul, as llama.cpp
 * does). Rows of a matmul's input are whole blocks, since every matmul input width (hidden,
 * heads·head_dim, intermediate) is a multiple of the weights' block size.
 */
export const ggmlRoundingKernels = (): KernelsShape => {
  const ref = referenceHost
  const inner = (w: Matrix) => (w as Typed).inner
  const host: HostKernelsShape = {
    ...ref,
    name: "reference + ggml activation rounding",
    matrix: (t) => Effect.map(ref.matrix(t), (m): Typed => ({ rows: m.rows, cols: m.cols, dtype: t.dtype, inner: m })),
    matmul: (w, x, T) => ref.matmul(inner(w), roundActivations((w as Typed).dtype, x), T),
    matmulRows: (w, x, T, rows) => ref.matmulRows(inner(w), roundActivations((w as Typed).dtype, x), T, rows),
    matmulTransposedRows: (wT, h, T, rows) => ref.matmulTransposedRows(inner(wT), h, T, rows),
    gather: (w, indices, axis) => Effect.map(ref.gather(inner(w), indices, axis), (m): Typed => ({ rows: m.rows, cols: m.cols, dtype: (w as Typed).dtype, inner: m })),
    embedding: (table, tokens) => ref.embedding(inner(table), tokens)
  }
  return fromHost(host)
}

export const ggmlRoundingLayer = (): Layer.Layer<Kernels> => Layer.succeed(Kernels, ggmlRoundingKernels())
