/**
 * Raw checkpoint tensors: bytes exactly as stored (little-endian, row-major), plus dtype and shape.
 *
 * Loading keeps tensors raw so each backend decides how to hold them: the reference widens to f32,
 * the wasm SIMD backend keeps bf16/f16 and widens in registers. This module only describes, widens
 * and encodes; it does not read files (see Safetensors.ts, Gguf.ts).
 *
 * Besides the float dtypes, a tensor may be block-quantized (ggml's Q8_0, Q4_0, Q4_K, Q6_K; block
 * layouts in Quant.ts). A quantized tensor's `data` holds its blocks row by row: a row (the innermost
 * dimension, `cols`) is `cols / blockSize` whole blocks, so rows are contiguous byte runs of
 * `rowBytes(dtype, cols)` and can be permuted or gathered like float rows. The innermost dimension
 * must therefore be a multiple of the block size; readers check that at the boundary.
 */
import { f16ToF32, f32ToBf16Bits, f32ToF16Bits } from "./Half.ts"
import { dequantize, isQuantType, quantize, quantLayouts } from "./Quant.ts"
import type { QuantType } from "./Quant.ts"

export { f16ToF32, f32ToBf16Bits, f32ToF16Bits } from "./Half.ts"
export type { QuantType } from "./Quant.ts"

/** The float dtypes: one element per 4 or 2 bytes. */
export type FloatDType = "F32" | "F16" | "BF16"

/** The dtypes sirius-ts loads. Other safetensors/GGUF types are rejected at the boundary. */
export type DType = FloatDType | QuantType

const floatBytes: Record<FloatDType, number> = { F32: 4, F16: 2, BF16: 2 }

export const isQuantized = (dtype: DType): dtype is QuantType => isQuantType(dtype)

/** Elements per block: 1 for float dtypes, 32 or 256 for quantized ones. */
export const blockSize = (dtype: DType): number => (isQuantized(dtype) ? quantLayouts[dtype].blockSize : 1)

/** Bytes per block (per element for float dtypes). */
export const blockBytes = (dtype: DType): number => (isQuantized(dtype) ? quantLayouts[dtype].blockBytes : floatBytes[dtype])

/**
 * Bytes per element. For quantized dtypes this is the average over a whole block (34/32 for Q8_0, …),
 * exact for any whole number of blocks; use `rowBytes`/`tensorBytes` for byte counts.
 */
export const bytesPerElement: Record<DType, number> = {
  F32: 4,
  F16: 2,
  BF16: 2,
  Q8_0: quantLayouts.Q8_0.blockBytes / quantLayouts.Q8_0.blockSize,
  Q4_0: quantLayouts.Q4_0.blockBytes / quantLayouts.Q4_0.blockSize,
  Q4_K: quantLayouts.Q4_K.blockBytes / quantLayouts.Q4_K.blockSize,
  Q6_K: quantLayouts.Q6_K.blockBytes / quantLayouts.Q6_K.blockSize
}

export interface RawTensor {
  /** The checkpoint's tensor name, e.g. `model.layers.0.mlp.gate_proj.weight`. */
  readonly name: string
  readonly dtype: DType
  /** Row-major shape; HF linear weights are `[out, in]`. */
  readonly shape: ReadonlyArray<number>
  /** Little-endian bytes; byteLength = tensorBytes(dtype, shape). Quantized: blocks, row by row. */
  readonly data: Uint8Array
}

export const numel = (shape: ReadonlyArray<number>): number => shape.reduce((a, b) => a * b, 1)

/** Whether a shape can be stored in a dtype: its innermost dimension is a whole number of blocks. */
export const fitsBlocks = (dtype: DType, shape: ReadonlyArray<number>): boolean =>
  !isQuantized(dtype) || (shape.length > 0 && shape[shape.length - 1]! % blockSize(dtype) === 0)

/** Bytes of one row of `cols` elements (cols a multiple of the block size). */
export const rowBytes = (dtype: DType, cols: number): number => (cols / blockSize(dtype)) * blockBytes(dtype)

/** Bytes of a whole tensor (its innermost dimension a multiple of the block size). */
export const tensorBytes = (dtype: DType, shape: ReadonlyArray<number>): number => (numel(shape) / blockSize(dtype)) * blockBytes(dtype)

/**
 * Widen any stored dtype to a fresh Float32Array (bf16: the u16 becomes the high half of the f32 bits;
 * quantized: ggml's exact dequantization, Quant.dequantize).
 */
export const toFloat32 = (t: RawTensor): Float32Array => {
  const n = numel(t.shape)
  const { buffer, byteOffset } = t.data
  switch (t.dtype) {
    case "F32": {
      // Copy through bytes: the source offset need not be 4-byte aligned.
      const out = new Float32Array(n)
      new Uint8Array(out.buffer).set(t.data.subarray(0, n * 4))
      return out
    }
    case "BF16": {
      const view = new DataView(buffer, byteOffset, n * 2)
      const bits = new Uint32Array(n)
      for (let i = 0; i < n; i++) bits[i] = view.getUint16(2 * i, true) << 16
      return new Float32Array(bits.buffer)
    }
    case "F16": {
      const view = new DataView(buffer, byteOffset, n * 2)
      const out = new Float32Array(n)
      for (let i = 0; i < n; i++) out[i] = f16ToF32(view.getUint16(2 * i, true))
      return out
    }
    default:
      return dequantize(t.dtype, t.data, n)
  }
}

/**
 * Encode f32 values as a tensor of the given dtype (used by writers, tests and the benchmark model
 * script). Quantized dtypes use Quant.quantize (ggml's reference quantizers) and need the innermost
 * dimension to be a multiple of the block size (a RangeError otherwise: callers check `fitsBlocks`).
 */
export const fromFloat32 = (name: string, dtype: DType, shape: ReadonlyArray<number>, values: Float32Array): RawTensor => {
  const n = numel(shape)
  if (dtype === "F32") return { name, dtype, shape, data: new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + n * 4)) }
  if (isQuantized(dtype)) {
    if (!fitsBlocks(dtype, shape)) throw new RangeError(`${name}: shape [${shape.join(", ")}] cannot be stored as ${dtype} (innermost dimension not a multiple of ${blockSize(dtype)})`)
    return { name, dtype, shape, data: quantize(dtype, values.length === n ? values : values.subarray(0, n)) }
  }
  const data = new Uint8Array(n * 2)
  const view = new DataView(data.buffer)
  const enc = dtype === "BF16" ? f32ToBf16Bits : f32ToF16Bits
  for (let i = 0; i < n; i++) view.setUint16(2 * i, enc(values[i]!), true)
  return { name, dtype, shape, data }
}

/** Re-encode a tensor in another dtype through f32 (exact when widening; quantizing rounds). */
export const convertTensor = (t: RawTensor, dtype: DType, name = t.name): RawTensor =>
  t.dtype === dtype ? (name === t.name ? t : { ...t, name }) : fromFloat32(name, dtype, t.shape, toFloat32(t))

/**
 * A quantized tensor widened to F32 (exact dequantization); float tensors are returned unchanged.
 * For backends without quantized kernels yet.
 */
export const widenQuantized = (t: RawTensor): RawTensor & { readonly dtype: FloatDType } =>
  isQuantized(t.dtype) ? { name: t.name, dtype: "F32", shape: t.shape, data: new Uint8Array(toFloat32(t).buffer) } : (t as RawTensor & { readonly dtype: FloatDType })

/**
 * Transpose a 2-D tensor's bytes: (rows, cols) → (cols, rows), same dtype (e.g. down_proj for the
 * sparse MLP). Quantized blocks cannot be transposed: a quantized tensor is dequantized first and the
 * transpose is F32.
 */
export const transpose = (t: RawTensor, name = `${t.name}.T`): RawTensor => {
  const w = widenQuantized(t)
  const [rows, cols] = w.shape as [number, number]
  const b = floatBytes[w.dtype]
  const out = new Uint8Array(rows * cols * b)
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) {
      const src = (r * cols + c) * b
      const dst = (c * rows + r) * b
      for (let k = 0; k < b; k++) out[dst + k] = w.data[src + k]!
    }
  return { name, dtype: w.dtype, shape: [cols, rows], data: out }
}
