/**
 * Raw checkpoint tensors: bytes exactly as stored (little-endian, row-major), plus dtype and shape.
 *
 * Loading keeps tensors raw so each backend decides how to hold them: the reference widens to f32,
 * the wasm SIMD backend keeps bf16/f16 and widens in registers. This module only describes and widens;
 * it does not read files (see Safetensors.ts).
 */

/** The dtypes sirius-ts loads. Other safetensors dtypes are rejected at the boundary. */
export type DType = "F32" | "F16" | "BF16"

export const bytesPerElement: Record<DType, number> = { F32: 4, F16: 2, BF16: 2 }

export interface RawTensor {
  /** The checkpoint's tensor name, e.g. `model.layers.0.mlp.gate_proj.weight`. */
  readonly name: string
  readonly dtype: DType
  /** Row-major shape; HF linear weights are `[out, in]`. */
  readonly shape: ReadonlyArray<number>
  /** Little-endian element bytes; byteLength = product(shape) · bytesPerElement[dtype]. */
  readonly data: Uint8Array
}

export const numel = (shape: ReadonlyArray<number>): number => shape.reduce((a, b) => a * b, 1)

/** IEEE half → f32 (subnormals, infinities and NaN included). */
export const f16ToF32 = (h: number): number => {
  const sign = h & 0x8000 ? -1 : 1
  const exp = (h >> 10) & 0x1f
  const frac = h & 0x3ff
  if (exp === 0) return sign * frac * 2 ** -24
  if (exp === 31) return frac === 0 ? sign * Infinity : NaN
  return sign * (1 + frac / 1024) * 2 ** (exp - 15)
}

/** Widen any stored dtype to a fresh Float32Array (bf16: the u16 becomes the high half of the f32 bits). */
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
  }
}

/** f32 → bf16 bits with round-to-nearest-even (what torch's `.to(bfloat16)` does). */
export const f32ToBf16Bits = (x: number): number => {
  const f = new Float32Array([x])
  const u = new Uint32Array(f.buffer)[0]!
  if ((u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff) !== 0) return 0x7fc0 // NaN
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff
}

/** f32 → IEEE half bits, round-to-nearest-even, overflow to ±Inf. */
export const f32ToF16Bits = (x: number): number => {
  const f = new Float32Array([x])
  const u = new Uint32Array(f.buffer)[0]!
  const sign = (u >>> 16) & 0x8000
  const exp = (u >>> 23) & 0xff
  let mant = u & 0x7fffff
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0)
  let e = exp - 127 + 15
  if (e >= 31) return sign | 0x7c00
  if (e <= 0) {
    if (e < -10) return sign
    mant |= 0x800000
    const shift = 14 - e
    let half = mant >>> shift
    const rem = mant & ((1 << shift) - 1)
    const mid = 1 << (shift - 1)
    if (rem > mid || (rem === mid && half & 1)) half++
    return sign | half
  }
  let half = (e << 10) | (mant >>> 13)
  const rem = mant & 0x1fff
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++
  return sign | half
}

/** Encode f32 values as a tensor of the given dtype (used by writers, tests and the benchmark model script). */
export const fromFloat32 = (name: string, dtype: DType, shape: ReadonlyArray<number>, values: Float32Array): RawTensor => {
  const n = numel(shape)
  if (dtype === "F32") return { name, dtype, shape, data: new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + n * 4)) }
  const data = new Uint8Array(n * 2)
  const view = new DataView(data.buffer)
  const enc = dtype === "BF16" ? f32ToBf16Bits : f32ToF16Bits
  for (let i = 0; i < n; i++) view.setUint16(2 * i, enc(values[i]!), true)
  return { name, dtype, shape, data }
}

/** Transpose a 2-D tensor's bytes: (rows, cols) → (cols, rows), same dtype (e.g. down_proj for the sparse MLP). */
export const transpose = (t: RawTensor, name = `${t.name}.T`): RawTensor => {
  const [rows, cols] = t.shape as [number, number]
  const b = bytesPerElement[t.dtype]
  const out = new Uint8Array(rows * cols * b)
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) {
      const src = (r * cols + c) * b
      const dst = (c * rows + r) * b
      for (let k = 0; k < b; k++) out[dst + k] = t.data[src + k]!
    }
  return { name, dtype: t.dtype, shape: [cols, rows], data: out }
}
