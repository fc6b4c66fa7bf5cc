/**
 * The memory layout shared by kernels.wat and the TS side of the simd/ backend: the control block at
 * address 0 (byte offsets, mirrored in the comments of kernels.wat), where weights start, and how a
 * weight matrix is laid out (row groups of 4, column tiles, one row's run of a tile after the other;
 * 16-bit weights permuted inside each 8-column block so one load widens to two f32x4; quantized
 * weights as ggml's quants in runs of 256 columns with their scales in a record per row), and the
 * quantized activation records the integer kernels read. Pure functions and constants only; no wasm here.
 */
import { dequantize, type QuantType, quantLayouts } from "../src/Quant.ts"
import type { DType } from "../src/Tensor.ts"
import { f16BitsToF32Bits, f16ToF32, f32BitsToF16Bits } from "../src/Half.ts"

// ---- control block (byte addresses) ----
/** Incremented by the main thread for every job; workers wait on it (spin, then Atomics.wait). */
export const WAKE = 0
/** Number of workers currently inside Atomics.wait (the main thread notifies only if > 0). */
export const SLEEPERS = 4
/** Set to 1 to make workers leave their loop. */
export const QUIT = 8
/** (seq << 16) | next chunk index; index 0xffff = closed. Own cache line: claimed by every thread. */
export const CLAIM = 64
/** Chunks finished in the current job. Own cache line. */
export const COMPLETED = 128
export const OP = 192
export const NCHUNKS = 196
/** ARG i at ARGS + 4i (i < 78: up to STATS). */
export const ARGS = 200
/** Chunks run by thread i at STATS + 4i (for tests: did the workers take part?). */
export const STATS = 512
/** 20 v128 constants the kernels load (kernels.wat: masks, the f16 widenings', the scale-splat swizzles), written once by SimdRuntime. */
export const CONSTANTS = 4096
/** i8x16 swizzle masks that splat i16 lane j (bytes 2j, 2j + 1) to all 8 lanes, j = 0..7: 4 words each. */
const pairSplatMasks = (): Array<number> =>
  Array.from({ length: 32 }, (_, word) => {
    const j = word >> 2
    const pair = (2 * j) | ((2 * j + 1) << 8)
    return (pair | (pair << 16)) >>> 0
  })
export const constantWords = (): Uint32Array =>
  Uint32Array.from([
    ...Array(4).fill(0x0f0f0f0f), ...Array(4).fill(0x30303030), ...Array(4).fill(0x00010001), ...Array(4).fill(0x7fff0000),
    ...Array(4).fill(0x38000000), ...Array(4).fill(0x0f7fffff), ...Array(4).fill(0x007fffff), ...Array(4).fill(0x80000000),
    ...Array(4).fill(0x2d000000),
    ...pairSplatMasks(),
    ...Array(4).fill(0x77800000), ...Array(4).fill(0x0f800000), ...Array(4).fill(0x7f800000)
  ])
/** Weights start here (after the control block). */
export const WEIGHTS_BASE = 65536
/** The largest chunk count of one job (index 0xffff means "closed"). */
export const MAX_CHUNKS = 0xfffe

export const OP_MATMUL = 0
export const OP_ATTENTION = 1
export const OP_PROBE = 2
export const OP_TRANSPOSED = 3
export const OP_GATHER = 4
export const OP_QUANTIZE = 5
export const OP_GATHER_QUANT = 6

export type FloatStorage = "f32" | "bf16" | "f16"
export type QuantStorage = "q8_0" | "q4_0" | "q4_k" | "q6_k"
export type Storage = FloatStorage | QuantStorage
export const storageOf: Record<DType, Storage> = { F32: "f32", BF16: "bf16", F16: "f16", Q8_0: "q8_0", Q4_0: "q4_0", Q4_K: "q4_k", Q6_K: "q6_k" }
/** The dtype code of the matmul job (kernels.wat `matmulBlock`, `qBlock`). */
export const storageCode: Record<Storage, number> = { f32: 0, bf16: 1, f16: 2, q8_0: 3, q4_0: 4, q4_k: 5, q6_k: 6 }
export const quantTypeOf: Record<QuantStorage, QuantType> = { q8_0: "Q8_0", q4_0: "Q4_0", q4_k: "Q4_K", q6_k: "Q6_K" }
export const isQuantStorage = (s: Storage): s is QuantStorage => s.startsWith("q")

// ---- matrix layout ----
export const roundUp = (n: number, m: number): number => Math.ceil(n / m) * m

/** Columns per tile of a float matrix: a row's run of a tile is 8 blocks of 8 columns (128 B in 16-bit, 256 B in f32). */
export const TILE = 64
/** Columns per tile of a quantized matrix: one K-quant super-block, eight Q8_0/Q4_0 blocks. */
export const QTILE = 256

/** Bytes of a row's run of one quantized tile (its quants, in ggml's byte order). */
const quantRunBytes: Record<QuantStorage, number> = { q8_0: 256, q4_0: 128, q4_k: 128, q6_k: 192 }
/**
 * Bytes of a row's scale record per quantized tile. The f16 scales of Q8_0 and the K-quants are widened to
 * f32 exactly at load (the kernels then read them with one load instead of widening in every super-block
 * of every row): Q8_0 eight f32 d (6% more bytes than the file); Q4_0 eight f16 d; Q4_K f32 d, f32 dmin, u8
 * sc[8], u8 m[8] (ggml's 6-bit packing undone: 24 bytes for ggml's 16); Q6_K i8 sc[16], f32 d.
 */
const quantScaleBytes: Record<QuantStorage, number> = { q8_0: 32, q4_0: 16, q4_k: 24, q6_k: 20 }

/** Little-endian 32-bit and 16-bit fields of a byte array (scale records). */
const putF32Bits = (dst: Uint8Array, at: number, bits: number): void => {
  for (let k = 0; k < 4; k++) dst[at + k] = (bits >>> (8 * k)) & 0xff
}
const getF32Bits = (src: Uint8Array, at: number): number => (src[at]! | (src[at + 1]! << 8) | (src[at + 2]! << 16) | (src[at + 3]! << 24)) >>> 0
const getF16Bits = (src: Uint8Array, at: number): number => src[at]! | (src[at + 1]! << 8)
const putF16Bits = (dst: Uint8Array, at: number, bits: number): void => {
  dst[at] = bits & 0xff
  dst[at + 1] = bits >> 8
}

export interface MatrixLayout {
  readonly rows: number
  readonly cols: number
  readonly storage: Storage
  /** Row groups of 4 (rows padded with zero rows). */
  readonly groups: number
  /** Column tiles of `tileCols` (cols padded with zeros). */
  readonly tiles: number
  /** TILE (float storage) or QTILE (quantized). */
  readonly tileCols: number
  /** Bytes of one row's run of one tile. */
  readonly runBytes: number
  /** Bytes of one group (4 rows × all tiles). */
  readonly groupBytes: number
  /** Quantized: bytes of one row's scale record (all tiles), stored after the runs at `scalesAt`; else 0. */
  readonly scaleRowBytes: number
  /** Offset of the scale records (row r's at scalesAt + r·scaleRowBytes), after the runs; = bytes if none. */
  readonly scalesAt: number
  /** Total bytes: runs, then the scale records of every row, padding rows included. */
  readonly bytes: number
}

export const matrixLayout = (rows: number, cols: number, storage: Storage): MatrixLayout => {
  const groups = Math.ceil(rows / 4)
  const quant = isQuantStorage(storage)
  const tileCols = quant ? QTILE : TILE
  const tiles = Math.ceil(cols / tileCols)
  const runBytes = quant ? quantRunBytes[storage] : storage === "f32" ? 256 : 128
  const groupBytes = tiles * 4 * runBytes
  const scaleRowBytes = quant ? tiles * quantScaleBytes[storage] : 0
  const scalesAt = groups * groupBytes
  return { rows, cols, storage, groups, tiles, tileCols, runBytes, groupBytes, scaleRowBytes, scalesAt, bytes: roundUp(scalesAt + 4 * groups * scaleRowBytes, 64) }
}

/** Byte offset of row r's run of tile j inside the matrix. */
export const runAt = (l: MatrixLayout, r: number, j: number): number => (r >> 2) * l.groupBytes + j * 4 * l.runBytes + (r & 3) * l.runBytes

// ---- quantized matrices ----

/**
 * Write a quantized tensor's bytes (ggml blocks, row by row, `cols` a multiple of the block size) into
 * `dst` (zero-filled, `layout.bytes` long): each block's quants into its row's run of the tile (ggml's
 * byte order, unchanged), its scales into the row's scale record.
 */
export const packQuantMatrix = (src: Uint8Array, layout: MatrixLayout, dst: Uint8Array): void => {
  const bytes = quantRowBytes(layout)
  for (let r = 0; r < layout.rows; r++) packQuantRow(src.subarray(r * bytes, (r + 1) * bytes), layout, r, dst)
}

/**
 * Row r's ggml blocks (`blocks`) into its runs and scale record in `dst` (the matrix's bytes). Byte loops,
 * not subarray/set per block: a model's worth of 34-byte blocks made that the load's bottleneck (200 MB/s).
 */
export const packQuantRow = (blocks: Uint8Array, layout: MatrixLayout, r: number, dst: Uint8Array): void => {
  const storage = layout.storage as QuantStorage
  const { blockSize, blockBytes } = quantLayouts[quantTypeOf[storage]]
  const rec = layout.scalesAt + r * layout.scaleRowBytes
  const n = layout.cols / blockSize
  if (storage === "q8_0" || storage === "q4_0") {
    // block b: its quants at (b & 7)·q of tile b >> 3's run; d at record 2b (Q4_0, f16) or 4b (Q8_0, as f32)
    const q = blockBytes - 2
    for (let b = 0; b < n; b++) {
      const at = b * blockBytes
      const o = runAt(layout, r, b >> 3) + (b & 7) * q
      if (storage === "q8_0") putF32Bits(dst, rec + 4 * b, f16BitsToF32Bits(getF16Bits(blocks, at)))
      else putF16Bits(dst, rec + 2 * b, getF16Bits(blocks, at))
      for (let j = 0; j < q; j++) dst[o + j] = blocks[at + 2 + j]!
    }
    return
  }
  for (let b = 0; b < n; b++) {
    const at = b * blockBytes
    const run = runAt(layout, r, b)
    if (storage === "q4_k") {
      // ggml: f16 d, f16 dmin, u8 scales[12], u8 qs[128]; the record: f32 d, f32 dmin, sc[8], m[8] (get_scale_min_k4)
      for (let j = 0; j < 128; j++) dst[run + j] = blocks[at + 16 + j]!
      const o = rec + 24 * b
      putF32Bits(dst, o, f16BitsToF32Bits(getF16Bits(blocks, at)))
      putF32Bits(dst, o + 4, f16BitsToF32Bits(getF16Bits(blocks, at + 2)))
      const s = at + 4
      for (let j = 0; j < 4; j++) {
        dst[o + 8 + j] = blocks[s + j]! & 63
        dst[o + 16 + j] = blocks[s + j + 4]! & 63
        dst[o + 12 + j] = (blocks[s + j + 8]! & 0xf) | ((blocks[s + j]! >> 6) << 4)
        dst[o + 20 + j] = (blocks[s + j + 8]! >> 4) | ((blocks[s + j + 4]! >> 6) << 4)
      }
    } else {
      // q6_k: ggml u8 ql[128], u8 qh[64] into the run; i8 scales[16], then d as f32, into the record
      for (let j = 0; j < 192; j++) dst[run + j] = blocks[at + j]!
      for (let j = 0; j < 16; j++) dst[rec + 20 * b + j] = blocks[at + 192 + j]!
      putF32Bits(dst, rec + 20 * b + 16, f16BitsToF32Bits(getF16Bits(blocks, at + 208)))
    }
  }
}

/** Row r of a packed quantized matrix as ggml blocks again (the inverse of packQuantMatrix), into `out`. */
export const quantRowBlocks = (packed: Uint8Array, layout: MatrixLayout, r: number, out: Uint8Array): Uint8Array => {
  const storage = layout.storage as QuantStorage
  const { blockSize, blockBytes } = quantLayouts[quantTypeOf[storage]]
  const blocks = layout.cols / blockSize
  const rec = layout.scalesAt + r * layout.scaleRowBytes
  for (let b = 0; b < blocks; b++) {
    const at = b * blockBytes
    switch (storage) {
      case "q8_0":
      case "q4_0": {
        const n = storage === "q8_0" ? 32 : 16
        if (storage === "q8_0") putF16Bits(out, at, f32BitsToF16Bits(getF32Bits(packed, rec + 4 * b)))
        else putF16Bits(out, at, getF16Bits(packed, rec + 2 * b))
        const run = runAt(layout, r, b >> 3) + (b & 7) * n
        for (let j = 0; j < n; j++) out[at + 2 + j] = packed[run + j]!
        break
      }
      case "q4_k": {
        const o = rec + 24 * b
        putF16Bits(out, at, f32BitsToF16Bits(getF32Bits(packed, o)))
        putF16Bits(out, at + 2, f32BitsToF16Bits(getF32Bits(packed, o + 4)))
        // ggml's 6-bit packing (quantize_row_q4_K_ref)
        out.fill(0, at + 4, at + 16)
        for (let j = 0; j < 8; j++) {
          const sc = packed[o + 8 + j]!
          const m = packed[o + 16 + j]!
          if (j < 4) {
            out[at + 4 + j] = sc
            out[at + 8 + j] = m
          } else {
            out[at + 8 + j] = (sc & 0xf) | ((m & 0xf) << 4)
            out[at + j] = out[at + j]! | ((sc >> 4) << 6)
            out[at + 4 + j] = out[at + 4 + j]! | ((m >> 4) << 6)
          }
        }
        const run = runAt(layout, r, b)
        out.set(packed.subarray(run, run + 128), at + 16)
        break
      }
      case "q6_k": {
        const run = runAt(layout, r, b)
        out.set(packed.subarray(run, run + 192), at)
        out.set(packed.subarray(rec + 20 * b, rec + 20 * b + 16), at + 192)
        putF16Bits(out, at + 208, f32BitsToF16Bits(getF32Bits(packed, rec + 20 * b + 16)))
        break
      }
    }
  }
  return out
}

/** Bytes of one quantized row as ggml blocks. */
export const quantRowBytes = (layout: MatrixLayout): number => {
  const { blockSize, blockBytes } = quantLayouts[quantTypeOf[layout.storage as QuantStorage]]
  return (layout.cols / blockSize) * blockBytes
}

// ---- quantized activations (kernels.wat `quantize`) ----

/** The activation record a weight type's integer kernel reads: A16 (Q8_0), A8 (Q4_0), AK (Q4_K, Q6_K). */
export const activationFormat: Record<QuantStorage, 0 | 1 | 2> = { q8_0: 0, q4_0: 1, q4_k: 2, q6_k: 2 }

/** Bytes of one token's activation record for P = tiles·256 padded columns, rounded up to a cache line. */
export const activationRecordBytes = (format: 0 | 1 | 2, P: number): number =>
  roundUp(format === 0 ? 2 * P + P / 8 : format === 1 ? P + P / 4 : P + P / 64 + P / 8 + P / 16, 64)

/** Position (u16 index inside a row-block) of column j of the block, for 16-bit storage: [0 4 1 5 2 6 3 7]. */
const slot16 = (j: number): number => (j < 4 ? 2 * j : 2 * (j - 4) + 1)

/** Element index (in units of the storage element) of row r's first run. */
const runStart = (l: MatrixLayout, r: number, elementBytes: number): number => ((r >> 2) * l.groupBytes + (r & 3) * l.runBytes) / elementBytes

/** Element offset of column c inside a row, relative to its first run: tiles are 4 runs apart. */
const colOffset = (c: number, runElements: number): number => (c >> 6) * 4 * runElements + (c & 63)

/**
 * Write a row-major (rows, cols) tensor into `dst` (zero-filled, `layout.bytes` long) in the kernel
 * layout. `src` holds the element bytes, little-endian, any alignment.
 */
export const packMatrix = (src: Uint8Array, layout: MatrixLayout, dst: Uint8Array): void => {
  const { rows, cols, storage } = layout
  if (isQuantStorage(storage)) return packQuantMatrix(src, layout, dst)
  if (storage === "f32") {
    const s = aligned(src, 4)
    const s32 = new Uint32Array(s.buffer, s.byteOffset, rows * cols)
    const d32 = new Uint32Array(dst.buffer, dst.byteOffset, layout.bytes / 4)
    for (let r = 0; r < rows; r++) {
      const so = r * cols
      const d = runStart(layout, r, 4)
      for (let c = 0; c < cols; c++) d32[d + colOffset(c, 64)] = s32[so + c]!
    }
    return
  }
  if (cols % 8 === 0 && src.byteOffset % 4 === 0) {
    // Fast path: per block, u32 pairs [w0 w1][w2 w3][w4 w5][w6 w7] → [w0 w4][w1 w5][w2 w6][w3 w7]
    const s32 = new Uint32Array(src.buffer, src.byteOffset, (rows * cols) / 2)
    const d32 = new Uint32Array(dst.buffer, dst.byteOffset, layout.bytes / 4)
    const blocks = cols >> 3
    for (let r = 0; r < rows; r++) {
      let so = (r * cols) >> 1
      const start = runStart(layout, r, 4) // in u32: a row-block is 4 u32, a run 32, a group-tile 128
      for (let k = 0; k < blocks; k++, so += 4) {
        const d = start + (k >> 3) * 128 + (k & 7) * 4
        const a = s32[so]!
        const b = s32[so + 1]!
        const c = s32[so + 2]!
        const e = s32[so + 3]!
        d32[d] = (a & 0xffff) | (c << 16)
        d32[d + 1] = (a >>> 16) | (c & 0xffff0000)
        d32[d + 2] = (b & 0xffff) | (e << 16)
        d32[d + 3] = (b >>> 16) | (e & 0xffff0000)
      }
    }
    return
  }
  const s = aligned(src, 2)
  const s16 = new Uint16Array(s.buffer, s.byteOffset, rows * cols)
  const d16 = new Uint16Array(dst.buffer, dst.byteOffset, layout.bytes / 2)
  for (let r = 0; r < rows; r++) {
    const so = r * cols
    const d = runStart(layout, r, 2)
    for (let c = 0; c < cols; c++) d16[d + colOffset(c & ~7, 64) + slot16(c & 7)] = s16[so + c]!
  }
}

/** Row r of a packed matrix, widened to f32 (quantized: ggml's exact dequantization), into out[0..cols). */
export const unpackRow = (packed: Uint8Array, layout: MatrixLayout, r: number, out: Float32Array): void => {
  const { cols, storage } = layout
  if (isQuantStorage(storage)) {
    dequantize(quantTypeOf[storage], quantRowBlocks(packed, layout, r, new Uint8Array(quantRowBytes(layout))), cols, out)
    return
  }
  if (storage === "f32") {
    const p32 = new Float32Array(packed.buffer, packed.byteOffset, layout.bytes / 4)
    const d = runStart(layout, r, 4)
    for (let c = 0; c < cols; c++) out[c] = p32[d + colOffset(c, 64)]!
    return
  }
  const p16 = new Uint16Array(packed.buffer, packed.byteOffset, layout.bytes / 2)
  const d = runStart(layout, r, 2)
  if (storage === "bf16") {
    const bits = new Uint32Array(out.buffer, out.byteOffset, cols)
    for (let c = 0; c < cols; c++) bits[c] = p16[d + colOffset(c & ~7, 64) + slot16(c & 7)]! << 16
  } else {
    for (let c = 0; c < cols; c++) out[c] = f16ToF32(p16[d + colOffset(c & ~7, 64) + slot16(c & 7)]!)
  }
}

/** `src` itself when its offset is a multiple of `align`, else an aligned copy. */
const aligned = (src: Uint8Array, align: number): Uint8Array => (src.byteOffset % align === 0 ? src : src.slice())

/** Element offset of column c inside a row, relative to the row's first run, in storage elements. */
const columnOffset = (storage: Storage, c: number): number => (storage === "f32" ? colOffset(c, 64) : colOffset(c & ~7, 64) + slot16(c & 7))

/** Element offsets inside a row of the given columns (for the gather kernel: its column tables). */
export const columnOffsets = (storage: Storage, columns: ArrayLike<number>): Int32Array => Int32Array.from(columns, (c) => columnOffset(storage, c))

/** Zero the runs (and scale records) of the padding rows (rows..4·groups) of the matrix at byte address `at` of `memory`. */
export const zeroPaddingRows = (memory: Uint8Array, l: MatrixLayout, at: number): void => {
  for (let r = l.rows; r < 4 * l.groups; r++) {
    for (let j = 0; j < l.tiles; j++) {
      const run = at + runStart(l, r, 1) + j * 4 * l.runBytes
      memory.fill(0, run, run + l.runBytes)
    }
    if (l.scaleRowBytes > 0) memory.fill(0, at + l.scalesAt + r * l.scaleRowBytes, at + l.scalesAt + (r + 1) * l.scaleRowBytes)
  }
}
