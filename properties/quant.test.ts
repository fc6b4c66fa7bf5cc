/**
 * Quantized block formats (src/Quant.ts, src/Tensor.ts): hand-built blocks whose values are worked out
 * by hand from ggml's layouts (nibble order, Q4_K's packed 6-bit scales and mins, Q6_K's split bits),
 * the unpacking of Q4_K scales against an independent packer, and dequantize(quantize(x)) error bounds
 * per type derived from each quantizer's rounding rule.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { f16ToF32, f32ToF16Bits } from "../src/Half.ts"
import { dequantize, nearestInt, q4kScaleMin, quantize, quantLayouts } from "../src/Quant.ts"
import type { QuantType } from "../src/Quant.ts"
import { fitsBlocks, fromFloat32, rowBytes, tensorBytes, toFloat32, transpose } from "../src/Tensor.ts"

const f16Bytes = (x: number): [number, number] => {
  const h = f32ToF16Bits(x)
  return [h & 0xff, h >>> 8]
}
const asF16 = (x: number) => f16ToF32(f32ToF16Bits(x))

/** Seeded values: a normal body with occasional outliers (mulberry32 + Box–Muller). */
const values = (seed: number, n: number, scale = 1): Float32Array => {
  let a = seed | 0
  const u = () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const out = new Float32Array(n)
  for (let i = 0; i < n; i++) {
    const g = Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u())
    out[i] = (u() < 0.02 ? 8 * g : g) * scale
  }
  return out
}

describe("hand-built blocks", () => {
  it("Q8_0: f16 d then 32 signed bytes, value d·q", () => {
    const block = new Uint8Array(34)
    block.set(f16Bytes(0.5), 0)
    const qs = Array.from({ length: 32 }, (_, j) => j * 8 - 128) // -128, -120, …, 120
    qs.forEach((q, j) => (block[2 + j] = q & 0xff))
    expect([...dequantize("Q8_0", block, 32)]).toEqual(qs.map((q) => q * 0.5))
  })

  it("Q4_0: low nibbles are values 0..15, high nibbles 16..31, value d·(q − 8)", () => {
    const block = new Uint8Array(18)
    block.set(f16Bytes(0.25), 0)
    for (let j = 0; j < 16; j++) block[2 + j] = j | ((15 - j) << 4)
    const expected = [...Array.from({ length: 16 }, (_, j) => (j - 8) * 0.25), ...Array.from({ length: 16 }, (_, j) => (15 - j - 8) * 0.25)]
    expect([...dequantize("Q4_0", block, 32)]).toEqual(expected)
  })

  // Scales and mins chosen so that j ≥ 4 use all six bits: sc = 40 = 0b10_1000, m = 33 = 0b10_0001, ...
  const sc = [1, 2, 3, 63, 40, 17, 60, 5]
  const m = [7, 0, 62, 9, 33, 48, 2, 21]
  /**
   * The 12 packed bytes, written out by hand from ggml's layout: bytes 0..3 = sc[0..3] | (sc[4..7] >> 4) << 6;
   * bytes 4..7 = m[0..3] | (m[4..7] >> 4) << 6; bytes 8..11 = (sc[4..7] & 15) | (m[4..7] & 15) << 4.
   */
  const packed = [
    1 | (2 << 6), //  sc0 = 1,  sc4 = 40 → high bits 2
    2 | (1 << 6), //  sc1 = 2,  sc5 = 17 → high bits 1
    3 | (3 << 6), //  sc2 = 3,  sc6 = 60 → high bits 3
    63 | (0 << 6), // sc3 = 63, sc7 = 5  → high bits 0
    7 | (2 << 6), //  m0 = 7,   m4 = 33  → high bits 2
    0 | (3 << 6), //  m1 = 0,   m5 = 48  → high bits 3
    62 | (0 << 6), // m2 = 62,  m6 = 2   → high bits 0
    9 | (1 << 6), //  m3 = 9,   m7 = 21  → high bits 1
    8 | (1 << 4), //  sc4 & 15 = 8,  m4 & 15 = 1
    1 | (0 << 4), //  sc5 & 15 = 1,  m5 & 15 = 0
    12 | (2 << 4), // sc6 & 15 = 12, m6 & 15 = 2
    5 | (5 << 4) //   sc7 & 15 = 5,  m7 & 15 = 5
  ]

  it("Q4_K: the 6-bit scales and mins unpack from the hand-packed bytes", () => {
    const s = Uint8Array.from(packed)
    for (let j = 0; j < 8; j++) expect(q4kScaleMin(s, 0, j), `sub-block ${j}`).toEqual([sc[j], m[j]])
  })

  it("Q4_K: value d·sc·q − dmin·m; each 32 bytes hold sub-block 2i (low nibbles) and 2i+1 (high)", () => {
    const d = 0.125
    const dmin = 0.5
    const block = new Uint8Array(144)
    block.set(f16Bytes(d), 0)
    block.set(f16Bytes(dmin), 2)
    block.set(packed, 4)
    for (let i = 0; i < 128; i++) block[16 + i] = (i % 16) | (((i * 7) % 16) << 4)
    const out = dequantize("Q4_K", block, 256)
    for (let v = 0; v < 256; v++) {
      const sub = Math.floor(v / 32) // sub-block
      const pair = Math.floor(sub / 2) // which 32 bytes
      const l = v % 32
      const byte = block[16 + 32 * pair + l]!
      const q = sub % 2 === 0 ? byte & 15 : byte >> 4
      expect(out[v], `value ${v}`).toBe(d * sc[sub]! * q - dmin * m[sub]!)
    }
    // Spot checks written out: value 0 = 0.125·1·0 − 0.5·7; value 32 (sub-block 1, high nibble of byte 0 = 0).
    expect(out[0]).toBe(-3.5)
    expect(out[32]).toBe(0)
    expect(out[33]).toBe(0.125 * 2 * 7) // byte 1 = 1 | 7 << 4
    expect(out[4 * 32 + 1]).toBe(0.125 * 40 * 1 - 0.5 * 33) // sub-block 4, low nibble of byte 64 + 1
  })

  it("Q6_K: ql/qh split bits and i8 scales; value d·sc·(q − 32)", () => {
    const block = new Uint8Array(210)
    const scales = [1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12, 13, -14, 15, -128]
    scales.forEach((s, i) => (block[192 + i] = s & 0xff))
    block.set(f16Bytes(0.5), 208)
    // Positions 0, 32, 64, 96 of the first half all read ql[0]/ql[32] and qh[0].
    block[0] = 0x3 | (0xa << 4) // q(0) low 4 = 3, q(64) low 4 = 10
    block[32] = 0xf | (0x1 << 4) // q(32) low 4 = 15, q(96) low 4 = 1
    block[128] = 1 | (2 << 2) | (3 << 4) | (0 << 6) // high 2 bits: q(0) 1, q(32) 2, q(64) 3, q(96) 0
    // Second half: position 128 + 17 reads ql[64 + 17], qh[32 + 17], scale index 8 + 1.
    block[64 + 17] = 0x9
    block[128 + 32 + 17] = 2
    const out = dequantize("Q6_K", block, 256)
    expect(out[0]).toBe(0.5 * 1 * (((1 << 4) | 3) - 32)) // sub-block 0 (scale 1): q = 19
    expect(out[32]).toBe(0.5 * 3 * (((2 << 4) | 15) - 32)) // sub-block 2 (scale 3): q = 47
    expect(out[64]).toBe(0.5 * 5 * (((3 << 4) | 10) - 32)) // sub-block 4 (scale 5): q = 58
    expect(out[96]).toBe(0.5 * 7 * ((0 | 1) - 32)) // sub-block 6 (scale 7): q = 1
    expect(out[128 + 17]).toBe(0.5 * -10 * (((2 << 4) | 9) - 32)) // sub-block 9 (scale -10): q = 41
    expect(out[1]).toBe(0.5 * 1 * -32) // zero bits everywhere else: q = 0
    expect(out[255]).toBe(0.5 * -128 * -32)
  })
})

describe("Q4_K scale/min packing", () => {
  /** An independent packer, straight from ggml-common.h's description of `scales[12]`. */
  const pack = (sc: ReadonlyArray<number>, m: ReadonlyArray<number>): Uint8Array => {
    const s = new Uint8Array(12)
    for (let j = 0; j < 4; j++) {
      s[j] = sc[j]! | ((sc[j + 4]! >> 4) << 6)
      s[j + 4] = m[j]! | ((m[j + 4]! >> 4) << 6)
      s[j + 8] = (sc[j + 4]! & 15) | ((m[j + 4]! & 15) << 4)
    }
    return s
  }
  it("property: any 6-bit scales and mins unpack to themselves", () => {
    const six = fc.array(fc.integer({ min: 0, max: 63 }), { minLength: 8, maxLength: 8 })
    fc.assert(
      fc.property(six, six, (sc, m) => {
        const s = pack(sc, m)
        for (let j = 0; j < 8; j++) expect(q4kScaleMin(s, 0, j)).toEqual([sc[j], m[j]])
      })
    )
  })
  it("the quantizer packs that way: unpacking its scales reproduces its own dequantization", () => {
    const x = values(7, 256)
    const block = quantize("Q4_K", x)
    const d = f16ToF32(block[0]! | (block[1]! << 8))
    const dmin = f16ToF32(block[2]! | (block[3]! << 8))
    const out = dequantize("Q4_K", block, 256)
    for (let j = 0; j < 8; j++) {
      const [sc, m] = q4kScaleMin(block, 4, j)
      for (let l = 0; l < 32; l++) {
        const v = 32 * j + l
        const byte = block[16 + 32 * (j >> 1) + l]!
        const q = j % 2 === 0 ? byte & 15 : byte >> 4
        expect(out[v]).toBeCloseTo(d * sc * q - dmin * m, 6)
      }
    }
  })
})

describe("ggml's nearest_int", () => {
  it("rounds to nearest, ties to even, like adding 1.5·2²³ in f32", () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, 7.6, -7.6].map(nearestInt)).toEqual([0, 2, 2, 0, -2, -2, 2, 8, -8])
  })
})

/**
 * dequantize(quantize(x)) error bounds, from each quantizer's rounding rule:
 * - Q8_0: q = round(x/d), d = amax/127 stored as f16 (error ≤ d·2⁻¹¹, or ≤ 2⁻²⁵ once d is an f16
 *   subnormal, below 2⁻¹⁴): |x − x̂| ≤ d/2 + 127·max(d·2⁻¹¹, 2⁻²⁵).
 * - Q4_0: d = −max/8 (signed largest magnitude) maps max to q = 0 exactly; q = trunc(x/d + 8.5) clamped
 *   to 15, so |x − x̂| ≤ |d|/2 except for x/d in (7.5, 8] (values near −max), clamped to 7·d: ≤ |d|;
 *   plus 8 times the f16 scale's error.
 * - Q4_K, Q6_K: values are requantized against the stored scales, so each x̂ is the level of its
 *   sub-block nearest to x (levels d·sc·q − dmin·m, q ∈ 0..15; d·sc·(q − 32), q ∈ 0..63). That is checked
 *   exactly; the scale search itself only shows in the error size, bounded by the typical-case RMS
 *   (16 levels over a Gaussian block: ≈ 0.1σ; 64 levels: ≈ 0.03σ) with margin.
 */
describe("dequantize(quantize(x)) error bounds", () => {
  const rows = fc.record({ seed: fc.integer(), blocks: fc.integer({ min: 1, max: 3 }), scale: fc.constantFrom(1e-3, 1, 40) })

  it("Q8_0: |x − x̂| ≤ d/2 + 127·max(d·2⁻¹¹, 2⁻²⁵) per block", () => {
    fc.assert(
      fc.property(rows, ({ seed, blocks, scale }) => {
        const x = values(seed, 32 * blocks, scale)
        const xh = dequantize("Q8_0", quantize("Q8_0", x), x.length)
        for (let b = 0; b < blocks; b++) {
          const amax = Math.max(...x.subarray(32 * b, 32 * b + 32).map(Math.abs))
          const d = amax / 127
          for (let j = 32 * b; j < 32 * b + 32; j++) expect(Math.abs(x[j]! - xh[j]!)).toBeLessThanOrEqual(d / 2 + 127 * Math.max(d * 2 ** -11, 2 ** -25) + 1e-7 * amax)
        }
      })
    )
  })

  it("Q4_0: max maps exactly; |x − x̂| ≤ |d|/2 (≤ |d| for x near −max) plus the f16 scale error", () => {
    fc.assert(
      fc.property(rows, ({ seed, blocks, scale }) => {
        const x = values(seed, 32 * blocks, scale)
        const xh = dequantize("Q4_0", quantize("Q4_0", x), x.length)
        for (let b = 0; b < blocks; b++) {
          const block = x.subarray(32 * b, 32 * b + 32)
          let max = 0
          for (const v of block) if (Math.abs(v) > Math.abs(max)) max = v
          const d = Math.abs(max / 8)
          for (let j = 0; j < 32; j++) {
            const v = block[j]!
            const err = Math.abs(v - xh[32 * b + j]!)
            const clamped = -v / (max / 8) > 7.5 // x/d in (7.5, 8] with d = −max/8
            expect(err).toBeLessThanOrEqual((clamped ? d : d / 2) + 8 * Math.max(d * 2 ** -11, 2 ** -25) + 1e-7 * d)
          }
          const at = block.indexOf(max)
          expect(xh[32 * b + at]).toBe(asF16(max / -8) * -8)
        }
      })
    )
  })

  const nearestLevel = (type: "Q4_K" | "Q6_K") => (x: Float32Array, block: Uint8Array, xh: Float32Array) => {
    const subs = type === "Q4_K" ? 8 : 16
    const size = 256 / subs
    for (let j = 0; j < subs; j++) {
      let levels: Array<number>
      if (type === "Q4_K") {
        const d = f16ToF32(block[0]! | (block[1]! << 8))
        const dmin = f16ToF32(block[2]! | (block[3]! << 8))
        const [sc, m] = q4kScaleMin(block, 4, j)
        levels = Array.from({ length: 16 }, (_, q) => Math.fround(Math.fround(d * sc) * q) - Math.fround(dmin * m))
      } else {
        const d = f16ToF32(block[208]! | (block[209]! << 8))
        const sc = (block[192 + j]! << 24) >> 24
        levels = Array.from({ length: 64 }, (_, q) => Math.fround(d * sc) * (q - 32))
      }
      if (levels.every((l) => l === levels[0])) continue // a zero scale keeps the search's levels: not requantized
      for (let i = 0; i < size; i++) {
        const v = x[size * j + i]!
        const best = Math.min(...levels.map((l) => Math.abs(l - v)))
        expect(Math.abs(xh[size * j + i]! - v), `sub-block ${j} value ${i}`).toBeLessThanOrEqual(best * (1 + 1e-5) + 1e-6 * Math.abs(v))
      }
    }
  }

  for (const [type, rmsBound] of [
    ["Q4_K", 0.15],
    ["Q6_K", 0.04]
  ] as const) {
    it(`${type}: every value is its sub-block's nearest level; RMS error ≤ ${rmsBound}·σ`, () => {
      fc.assert(
        fc.property(fc.record({ seed: fc.integer(), scale: fc.constantFrom(1e-3, 1, 40) }), ({ seed, scale }) => {
          const x = values(seed, 256, scale)
          const block = quantize(type, x)
          const xh = dequantize(type, block, 256)
          nearestLevel(type)(x, block, xh)
          let se = 0
          let ss = 0
          for (let i = 0; i < 256; i++) {
            se += (x[i]! - xh[i]!) ** 2
            ss += x[i]! ** 2
          }
          expect(Math.sqrt(se / 256)).toBeLessThanOrEqual(rmsBound * Math.sqrt(ss / 256))
        }),
        { numRuns: 40 }
      )
    })
  }

  it("zero blocks quantize to zeros", () => {
    for (const type of Object.keys(quantLayouts) as Array<QuantType>) {
      const n = quantLayouts[type].blockSize
      expect([...dequantize(type, quantize(type, new Float32Array(n)), n)].every((v) => v === 0), type).toBe(true)
    }
  })
})

describe("quantized RawTensors", () => {
  it("rows are whole blocks: byte counts, fitsBlocks, and round trips through fromFloat32/toFloat32", () => {
    expect(rowBytes("Q8_0", 64)).toBe(68)
    expect(rowBytes("Q4_K", 512)).toBe(288)
    expect(tensorBytes("Q6_K", [3, 256])).toBe(630)
    expect(tensorBytes("Q4_0", [2, 64])).toBe(72)
    expect(fitsBlocks("Q4_K", [4, 128])).toBe(false)
    expect(fitsBlocks("Q8_0", [4, 96])).toBe(true)
    expect(fitsBlocks("F16", [3, 5])).toBe(true)
    const x = values(3, 4 * 256)
    for (const type of ["Q8_0", "Q4_0", "Q4_K", "Q6_K"] as const) {
      const t = fromFloat32("w", type, [4, 256], x)
      expect(t.data.byteLength).toBe(tensorBytes(type, [4, 256]))
      // Row r's blocks are exactly the quantization of row r alone.
      expect(t.data.subarray(rowBytes(type, 256), 2 * rowBytes(type, 256))).toEqual(quantize(type, x.subarray(256, 512)))
      const back = toFloat32(t)
      expect(back).toEqual(dequantize(type, t.data, 1024))
    }
    expect(() => fromFloat32("w", "Q4_K", [2, 100], new Float32Array(200))).toThrow(/multiple of 256/)
  })

  it("transpose of a quantized tensor is the F32 transpose of its exact values", () => {
    const t = fromFloat32("w", "Q8_0", [3, 32], values(5, 96))
    const tt = transpose(t)
    expect(tt.dtype).toBe("F32")
    expect(tt.shape).toEqual([32, 3])
    const a = toFloat32(t)
    const b = toFloat32(tt)
    for (let r = 0; r < 3; r++) for (let c = 0; c < 32; c++) expect(b[c * 3 + r]).toBe(a[r * 32 + c])
  })
})
