/**
 * Half-precision scalars: IEEE binary16 (f16) and bfloat16 (bf16) ↔ f32, bit patterns as numbers.
 *
 * Split out of Tensor.ts so that both Tensor.ts (widening f16/bf16 tensors) and Quant.ts (the f16
 * scales inside ggml's quantized blocks) can use them without importing each other. Tensor.ts
 * re-exports everything here, so existing imports from Tensor.ts keep working.
 */

/** IEEE half → f32 (subnormals, infinities and NaN included). */
export const f16ToF32 = (h: number): number => {
  const sign = h & 0x8000 ? -1 : 1
  const exp = (h >> 10) & 0x1f
  const frac = h & 0x3ff
  if (exp === 0) return sign * frac * 2 ** -24
  if (exp === 31) return frac === 0 ? sign * Infinity : NaN
  return sign * (1 + frac / 1024) * 2 ** (exp - 15)
}

/** One shared f32 slot and its bits: the conversions below run per element over whole tensors. */
const slot = new Float32Array(1)
const slotBits = new Uint32Array(slot.buffer)
const bitsOf = (x: number): number => {
  slot[0] = x
  return slotBits[0]!
}

/** f32 → bf16 bits with round-to-nearest-even (what torch's `.to(bfloat16)` does). */
export const f32ToBf16Bits = (x: number): number => {
  const u = bitsOf(x)
  if ((u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff) !== 0) return 0x7fc0 // NaN
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff
}

/** f32 → IEEE half bits, round-to-nearest-even, overflow to ±Inf. */
export const f32ToF16Bits = (x: number): number => {
  const u = bitsOf(x)
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

/** x rounded to the nearest f16 value (round-to-nearest-even), as a number. */
export const roundToF16 = (x: number): number => f16ToF32(f32ToF16Bits(x))

/** x rounded to the nearest bf16 value (round-to-nearest-even), as a number. */
export const roundToBf16 = (x: number): number => {
  slotBits[0] = f32ToBf16Bits(x) << 16
  return slot[0]!
}

/**
 * The f32 bits of an f16 (bits h), exact for every half, in integers only (subnormals normalized, NaN payloads
 * kept, which a round trip through a float may not): simd stores quantized scales widened this way.
 */
export const f16BitsToF32Bits = (h: number): number => {
  const sign = (h & 0x8000) << 16
  const e = (h >> 10) & 31
  let m = h & 0x3ff
  if (e === 31) return (sign | 0x7f800000 | (m << 13)) >>> 0
  if (e > 0) return (sign | ((e + 112) << 23) | (m << 13)) >>> 0
  if (m === 0) return sign >>> 0
  let e32 = 113
  while ((m & 0x400) === 0) {
    m <<= 1
    e32--
  }
  return (sign | (e32 << 23) | ((m & 0x3ff) << 13)) >>> 0
}

/** The f16 bits an f32 came from (the inverse of f16BitsToF32Bits on its results). */
export const f32BitsToF16Bits = (b: number): number => {
  const sign = (b >>> 16) & 0x8000
  const e = (b >>> 23) & 255
  const m = b & 0x7fffff
  if (e === 255) return sign | 0x7c00 | (m >>> 13)
  if (e === 0) return sign
  if (e >= 113) return sign | ((e - 112) << 10) | (m >>> 13)
  return sign | ((0x800000 | m) >>> (126 - e))
}
