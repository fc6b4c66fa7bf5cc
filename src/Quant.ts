/**
 * Quant: ggml's block-quantized weight formats Q8_0, Q4_0, Q4_K and Q6_K — their byte layouts, exact
 * dequantization, and quantizers that follow ggml's reference (`quantize_row_*_ref`) quantizers.
 *
 * Layouts (ggml `ggml-common.h`; all little-endian, f16 = IEEE half):
 * - Q8_0, 32 values in 34 bytes: `f16 d; i8 qs[32]`; value `d·q`.
 * - Q4_0, 32 values in 18 bytes: `f16 d; u8 qs[16]`; the low nibbles hold values 0..15, the high
 *   nibbles values 16..31 (halves, not interleaved); value `d·(q − 8)`.
 * - Q4_K, 256 values in 144 bytes: `f16 d; f16 dmin; u8 scales[12]; u8 qs[128]`: 8 sub-blocks of 32
 *   with 6-bit scale `sc` and min `m` packed in `scales` (see `q4kScaleMin`); each 32 bytes of `qs` hold
 *   sub-block 2i in the low nibbles and 2i+1 in the high nibbles; value `d·sc·q − dmin·m`.
 * - Q6_K, 256 values in 210 bytes: `u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d`: 16 sub-blocks of 16
 *   with an i8 scale; 6-bit q = 4 low bits from `ql` | 2 high bits from `qh`; value `d·sc·(q − 32)`.
 *
 * Dequantization reproduces ggml's `dequantize_row_*` in f32 step by step (Math.fround where ggml
 * rounds), so `toFloat32` of a quantized tensor gives the very floats llama.cpp's dequantizer gives.
 *
 * The quantizers mirror ggml's reference quantizers without an importance matrix — what
 * `llama-quantize` runs when given none: Q8_0 `d = amax/127`, round half away from zero; Q4_0
 * `d = −max/8` of the signed largest-magnitude value, truncation after +8.5; Q4_K the weighted
 * min/scale search of `make_qkx2_quants` (21 candidate scales per sub-block, weights `av_x + |x|`),
 * then 6-bit super-block scales; Q6_K `make_qx_quants` (19 candidate scales, weights x²), then i8
 * scales. Their float arithmetic is rounded to f32 where ggml's is, so results are close to
 * llama-quantize's; bit-identity is not promised (a C compiler may contract multiply-adds).
 *
 * This module knows nothing of tensors or files: it maps Float32Arrays to block bytes and back.
 * Tensor.ts wraps it for RawTensors; Gguf.ts stores the bytes.
 */
import { f16ToF32, f32ToF16Bits } from "./Half.ts"

/** The block-quantized types sirius-ts reads and writes (ggml type ids 8, 2, 12, 14). */
export type QuantType = "Q8_0" | "Q4_0" | "Q4_K" | "Q6_K"

export interface QuantLayout {
  /** Values per block; a quantized row's length must be a multiple of it. */
  readonly blockSize: number
  /** Bytes per block. */
  readonly blockBytes: number
}

export const quantLayouts: { readonly [Q in QuantType]: QuantLayout } = {
  Q8_0: { blockSize: 32, blockBytes: 34 },
  Q4_0: { blockSize: 32, blockBytes: 18 },
  Q4_K: { blockSize: 256, blockBytes: 144 },
  Q6_K: { blockSize: 256, blockBytes: 210 }
}

export const isQuantType = (s: string): s is QuantType => Object.hasOwn(quantLayouts, s)

const fr = Math.fround

/** Every f16 bit pattern widened once: block scales are decoded millions of times. */
let f16Table: Float32Array | undefined
const f16 = (bytes: Uint8Array, at: number): number => {
  if (f16Table === undefined) {
    f16Table = new Float32Array(65536)
    for (let h = 0; h < 65536; h++) f16Table[h] = f16ToF32(h)
  }
  return f16Table[bytes[at]! | (bytes[at + 1]! << 8)]!
}
const putF16 = (bytes: Uint8Array, at: number, x: number): void => {
  const h = f32ToF16Bits(x)
  bytes[at] = h & 0xff
  bytes[at + 1] = h >>> 8
}
/** The value a float is stored as in a block scale. */
const asF16 = (x: number): number => f16ToF32(f32ToF16Bits(x))
const i8 = (b: number): number => (b << 24) >> 24

/**
 * ggml's `nearest_int`: round an f32 to the nearest integer, ties to even (adding 1.5·2²³ in f32 and
 * reading the integer back). Valid for |x| < 2²²; ggml asserts the same.
 */
export const nearestInt = (x: number): number => fr(fr(x) + 12582912) - 12582912

/** C's roundf: half away from zero. */
const roundf = (x: number): number => (x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5))

/** ggml's GROUP_MAX_EPS (1e-15f): a group whose largest magnitude is below it quantizes to zeros. */
const GROUP_MAX_EPS = fr(1e-15)

/**
 * Q4_K's packed 6-bit scale and min of sub-block j (0..7) from the 12 `scales` bytes at `at`
 * (ggml `get_scale_min_k4`): j < 4: `sc = s[j] & 63`, `m = s[j+4] & 63`; j ≥ 4: the low 4 bits from
 * `s[j+4]` (low nibble for sc, high for m) and the high 2 bits from the top bits of `s[j−4]` (sc) and
 * `s[j]` (m).
 */
export const q4kScaleMin = (s: Uint8Array, at: number, j: number): readonly [sc: number, m: number] =>
  j < 4
    ? [s[at + j]! & 63, s[at + j + 4]! & 63]
    : [(s[at + j + 4]! & 0xf) | ((s[at + j - 4]! >> 6) << 4), (s[at + j + 4]! >> 4) | ((s[at + j]! >> 6) << 4)]

// ---------------------------------------------------------------------------------------------------
// Dequantization

/**
 * Dequantize `n` values (a multiple of the block size) from `data` into `out` (from index 0).
 *
 * @category dequantization
 */
export const dequantize = (type: QuantType, data: Uint8Array, n: number, out: Float32Array = new Float32Array(n)): Float32Array => {
  const { blockSize, blockBytes } = quantLayouts[type]
  if (n % blockSize !== 0) throw new RangeError(`${type}: ${n} values is not a multiple of the block size ${blockSize}`)
  const blocks = n / blockSize
  if (data.byteLength < blocks * blockBytes) throw new RangeError(`${type}: ${data.byteLength} bytes hold fewer than ${blocks} blocks`)
  for (let b = 0; b < blocks; b++) {
    const at = b * blockBytes
    const y = b * blockSize
    switch (type) {
      case "Q8_0": {
        const d = f16(data, at)
        for (let j = 0; j < 32; j++) out[y + j] = i8(data[at + 2 + j]!) * d
        break
      }
      case "Q4_0": {
        const d = f16(data, at)
        for (let j = 0; j < 16; j++) {
          const q = data[at + 2 + j]!
          out[y + j] = ((q & 0xf) - 8) * d
          out[y + j + 16] = ((q >> 4) - 8) * d
        }
        break
      }
      case "Q4_K": {
        const d = f16(data, at)
        const dmin = f16(data, at + 2)
        for (let half = 0; half < 4; half++) {
          const q = at + 16 + 32 * half
          const [sc1, m1] = q4kScaleMin(data, at + 4, 2 * half)
          const [sc2, m2] = q4kScaleMin(data, at + 4, 2 * half + 1)
          const d1 = fr(d * sc1)
          const min1 = fr(dmin * m1)
          const d2 = fr(d * sc2)
          const min2 = fr(dmin * m2)
          const o = y + 64 * half
          for (let l = 0; l < 32; l++) out[o + l] = fr(d1 * (data[q + l]! & 0xf)) - min1
          for (let l = 0; l < 32; l++) out[o + 32 + l] = fr(d2 * (data[q + l]! >> 4)) - min2
        }
        break
      }
      case "Q6_K": {
        const d = f16(data, at + 208)
        for (let part = 0; part < 2; part++) {
          const ql = at + 64 * part
          const qh = at + 128 + 32 * part
          const sc = at + 192 + 8 * part
          const o = y + 128 * part
          for (let l = 0; l < 32; l++) {
            const is = l >> 4
            const h = data[qh + l]!
            const q1 = ((data[ql + l]! & 0xf) | ((h & 3) << 4)) - 32
            const q2 = ((data[ql + l + 32]! & 0xf) | (((h >> 2) & 3) << 4)) - 32
            const q3 = ((data[ql + l]! >> 4) | (((h >> 4) & 3) << 4)) - 32
            const q4 = ((data[ql + l + 32]! >> 4) | (((h >> 6) & 3) << 4)) - 32
            out[o + l] = fr(d * i8(data[sc + is]!)) * q1
            out[o + l + 32] = fr(d * i8(data[sc + is + 2]!)) * q2
            out[o + l + 64] = fr(d * i8(data[sc + is + 4]!)) * q3
            out[o + l + 96] = fr(d * i8(data[sc + is + 6]!)) * q4
          }
        }
        break
      }
    }
  }
  return out
}

// ---------------------------------------------------------------------------------------------------
// Quantization (ggml's reference quantizers, f32 arithmetic emulated)

const quantizeQ8_0 = (x: Float32Array, xo: number, out: Uint8Array, at: number): void => {
  let amax = 0
  for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[xo + j]!))
  const d = fr(amax / 127)
  const id = d !== 0 ? fr(1 / d) : 0
  putF16(out, at, d)
  for (let j = 0; j < 32; j++) out[at + 2 + j] = roundf(fr(x[xo + j]! * id)) & 0xff
}

const quantizeQ4_0 = (x: Float32Array, xo: number, out: Uint8Array, at: number): void => {
  // d comes from the signed value of largest magnitude (the first one on ties), so it maps to q = 0.
  let amax = 0
  let max = 0
  for (let j = 0; j < 32; j++) {
    const v = x[xo + j]!
    if (amax < Math.abs(v)) {
      amax = Math.abs(v)
      max = v
    }
  }
  const d = fr(max / -8)
  const id = d !== 0 ? fr(1 / d) : 0
  putF16(out, at, d)
  for (let j = 0; j < 16; j++) {
    const x0 = fr(x[xo + j]! * id)
    const x1 = fr(x[xo + 16 + j]! * id)
    const q0 = Math.min(15, Math.trunc(fr(x0 + 8.5)))
    const q1 = Math.min(15, Math.trunc(fr(x1 + 8.5)))
    out[at + 2 + j] = q0 | (q1 << 4)
  }
}

/**
 * ggml's `make_qkx2_quants` for n values at x[xo..]: the levels L (0..nmax) and (scale, min) minimising
 * the weighted error of `scale·L − min`, over the initial range fit and nstep+1 candidate scales.
 * Returns [scale, theMin] with theMin ≥ 0 (the value subtracted).
 */
const makeQkx2Quants = (
  n: number,
  nmax: number,
  x: Float32Array,
  xo: number,
  weights: Float32Array,
  L: Uint8Array,
  lo: number,
  Laux: Uint8Array,
  rmin: number,
  rdelta: number,
  nstep: number
): readonly [number, number] => {
  let min = x[xo]!
  let max = x[xo]!
  let sumW = weights[0]!
  let sumX = fr(sumW * x[xo]!)
  for (let i = 1; i < n; i++) {
    const v = x[xo + i]!
    if (v < min) min = v
    if (v > max) max = v
    const w = weights[i]!
    sumW = fr(sumW + w)
    sumX = fr(sumX + fr(w * v))
  }
  if (min > 0) min = 0
  if (max === min) {
    L.fill(0, lo, lo + n)
    return [0, -min]
  }
  let iscale = fr(nmax / fr(max - min))
  let scale = fr(1 / iscale)
  let bestError = 0
  for (let i = 0; i < n; i++) {
    const l = Math.max(0, Math.min(nmax, nearestInt(fr(iscale * fr(x[xo + i]! - min)))))
    L[lo + i] = l
    const diff = fr(fr(fr(scale * l) + min) - x[xo + i]!)
    bestError = fr(bestError + fr(weights[i]! * fr(diff * diff)))
  }
  for (let is = 0; is <= nstep; is++) {
    iscale = fr(fr(fr(rmin + fr(rdelta * is)) + nmax) / fr(max - min))
    let sumL = 0
    let sumL2 = 0
    let sumXL = 0
    for (let i = 0; i < n; i++) {
      const v = x[xo + i]!
      const l = Math.max(0, Math.min(nmax, nearestInt(fr(iscale * fr(v - min)))))
      Laux[i] = l
      const wl = fr(weights[i]! * l)
      sumL = fr(sumL + wl)
      sumL2 = fr(sumL2 + fr(wl * l))
      sumXL = fr(sumXL + fr(wl * v))
    }
    const D = fr(fr(sumW * sumL2) - fr(sumL * sumL))
    if (D > 0) {
      let thisScale = fr(fr(fr(sumW * sumXL) - fr(sumX * sumL)) / D)
      let thisMin = fr(fr(fr(sumL2 * sumX) - fr(sumL * sumXL)) / D)
      if (thisMin > 0) {
        thisMin = 0
        thisScale = fr(sumXL / sumL2)
      }
      let curError = 0
      for (let i = 0; i < n; i++) {
        const diff = fr(fr(fr(thisScale * Laux[i]!) + thisMin) - x[xo + i]!)
        curError = fr(curError + fr(weights[i]! * fr(diff * diff)))
      }
      if (curError < bestError) {
        for (let i = 0; i < n; i++) L[lo + i] = Laux[i]!
        bestError = curError
        scale = thisScale
        min = thisMin
      }
    }
  }
  return [scale, -min]
}

const q4kWork = { L: new Uint8Array(256), Laux: new Uint8Array(32), weights: new Float32Array(32), scales: new Float32Array(8), mins: new Float32Array(8) }

const quantizeQ4_K = (x: Float32Array, xo: number, out: Uint8Array, at: number): void => {
  const { L, Laux, weights, scales, mins } = q4kWork
  let maxScale = 0
  let maxMin = 0
  for (let j = 0; j < 8; j++) {
    const so = xo + 32 * j
    let sumX2 = 0
    for (let l = 0; l < 32; l++) sumX2 = fr(sumX2 + fr(x[so + l]! * x[so + l]!))
    const avX = fr(Math.sqrt(fr(sumX2 / 32)))
    for (let l = 0; l < 32; l++) weights[l] = fr(avX + Math.abs(x[so + l]!))
    const [scale, min] = makeQkx2Quants(32, 15, x, so, weights, L, 32 * j, Laux, -1, fr(0.1), 20)
    scales[j] = scale
    mins[j] = min
    if (scale > maxScale) maxScale = scale
    if (min > maxMin) maxMin = min
  }
  const invScale = maxScale > 0 ? fr(63 / maxScale) : 0
  const invMin = maxMin > 0 ? fr(63 / maxMin) : 0
  const s = at + 4
  out.fill(0, s, s + 12)
  for (let j = 0; j < 8; j++) {
    const ls = Math.min(63, nearestInt(fr(invScale * scales[j]!)) & 0xff)
    const lm = Math.min(63, nearestInt(fr(invMin * mins[j]!)) & 0xff)
    if (j < 4) {
      out[s + j] = ls
      out[s + j + 4] = lm
    } else {
      out[s + j + 4] = (ls & 0xf) | ((lm & 0xf) << 4)
      out[s + j - 4] = out[s + j - 4]! | ((ls >> 4) << 6)
      out[s + j] = out[s + j]! | ((lm >> 4) << 6)
    }
  }
  putF16(out, at, fr(maxScale / 63))
  putF16(out, at + 2, fr(maxMin / 63))
  const d = f16(out, at)
  const dmin = f16(out, at + 2)
  // Requantize every value against the scales as stored (6-bit sc and m, f16 d and dmin).
  for (let j = 0; j < 8; j++) {
    const [sc, m] = q4kScaleMin(out, s, j)
    const dj = fr(d * sc)
    if (dj === 0) continue
    const dm = fr(dmin * m)
    for (let ii = 0; ii < 32; ii++) L[32 * j + ii] = Math.max(0, Math.min(15, nearestInt(fr(fr(x[xo + 32 * j + ii]! + dm) / dj))))
  }
  for (let half = 0; half < 4; half++)
    for (let l = 0; l < 32; l++) out[at + 16 + 32 * half + l] = L[64 * half + l]! | (L[64 * half + 32 + l]! << 4)
}

/** ggml's `make_qx_quants` with rmse_type 1 (weights x²) and no importance: levels into L (0..2·nmax−1). */
const makeQxQuants = (n: number, nmax: number, x: Float32Array, xo: number, L: Int8Array, lo: number): number => {
  let max = 0
  let amax = 0
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i]!)
    if (ax > amax) {
      amax = ax
      max = x[xo + i]!
    }
  }
  if (amax < GROUP_MAX_EPS) {
    L.fill(0, lo, lo + n)
    return 0
  }
  let iscale = fr(-nmax / max)
  let sumlx = 0
  let suml2 = 0
  for (let i = 0; i < n; i++) {
    const v = x[xo + i]!
    const l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(fr(iscale * v))))
    L[lo + i] = l + nmax
    const w = fr(v * v)
    sumlx = fr(sumlx + fr(fr(w * v) * l))
    suml2 = fr(suml2 + fr(fr(w * l) * l))
  }
  let scale = suml2 !== 0 ? fr(sumlx / suml2) : 0
  let best = fr(scale * sumlx)
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue
    iscale = fr(-fr(nmax + fr(fr(0.1) * is)) / max)
    sumlx = 0
    suml2 = 0
    for (let i = 0; i < n; i++) {
      const v = x[xo + i]!
      const l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(fr(iscale * v))))
      const w = fr(v * v)
      sumlx = fr(sumlx + fr(fr(w * v) * l))
      suml2 = fr(suml2 + fr(fr(w * l) * l))
    }
    if (suml2 > 0 && fr(sumlx * sumlx) > fr(best * suml2)) {
      for (let i = 0; i < n; i++) L[lo + i] = nmax + Math.max(-nmax, Math.min(nmax - 1, nearestInt(fr(iscale * x[xo + i]!))))
      scale = fr(sumlx / suml2)
      best = fr(scale * sumlx)
    }
  }
  return scale
}

const q6kWork = { L: new Int8Array(256), scales: new Float32Array(16) }

const quantizeQ6_K = (x: Float32Array, xo: number, out: Uint8Array, at: number): void => {
  const { L, scales } = q6kWork
  let maxScale = 0
  let maxAbsScale = 0
  for (let ib = 0; ib < 16; ib++) {
    const scale = makeQxQuants(16, 32, x, xo + 16 * ib, L, 16 * ib)
    scales[ib] = scale
    if (Math.abs(scale) > maxAbsScale) {
      maxAbsScale = Math.abs(scale)
      maxScale = scale
    }
  }
  out.fill(0, at, at + 210)
  if (maxAbsScale < GROUP_MAX_EPS) return
  const iscale = fr(-128 / maxScale)
  putF16(out, at + 208, fr(1 / iscale))
  for (let ib = 0; ib < 16; ib++) out[at + 192 + ib] = Math.min(127, nearestInt(fr(iscale * scales[ib]!))) & 0xff
  const d = f16(out, at + 208)
  for (let j = 0; j < 16; j++) {
    const dj = fr(d * i8(out[at + 192 + j]!))
    if (dj === 0) continue
    for (let ii = 0; ii < 16; ii++) L[16 * j + ii] = Math.max(-32, Math.min(31, nearestInt(fr(x[xo + 16 * j + ii]! / dj)))) + 32
  }
  for (let part = 0; part < 2; part++) {
    const ql = at + 64 * part
    const qh = at + 128 + 32 * part
    const j = 128 * part
    for (let l = 0; l < 32; l++) {
      const q1 = L[j + l]!
      const q2 = L[j + l + 32]!
      const q3 = L[j + l + 64]!
      const q4 = L[j + l + 96]!
      out[ql + l] = (q1 & 0xf) | ((q3 & 0xf) << 4)
      out[ql + l + 32] = (q2 & 0xf) | ((q4 & 0xf) << 4)
      out[qh + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6)
    }
  }
}

const quantizers: { readonly [Q in QuantType]: (x: Float32Array, xo: number, out: Uint8Array, at: number) => void } = {
  Q8_0: quantizeQ8_0,
  Q4_0: quantizeQ4_0,
  Q4_K: quantizeQ4_K,
  Q6_K: quantizeQ6_K
}

/**
 * Quantize `values` (f32; length a multiple of the block size) into consecutive blocks.
 *
 * **When to use**: writing quantized GGUF files (`sirius quantize`) and quantizing an HF checkpoint
 * at load time. Values are taken as f32 (they are Float32Array elements already).
 *
 * @category quantization
 */
export const quantize = (type: QuantType, values: Float32Array): Uint8Array => {
  const { blockSize, blockBytes } = quantLayouts[type]
  if (values.length % blockSize !== 0) throw new RangeError(`${type}: ${values.length} values is not a multiple of the block size ${blockSize}`)
  const blocks = values.length / blockSize
  const out = new Uint8Array(blocks * blockBytes)
  const q = quantizers[type]
  for (let b = 0; b < blocks; b++) q(values, b * blockSize, out, b * blockBytes)
  return out
}

/** The f16 rounding a block scale undergoes (exported for tests and error bounds). */
export const f16Scale = asF16
