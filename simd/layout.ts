/**
 * The memory layout shared by kernels.wat and the TS side of the simd/ backend: the control block at
 * address 0 (byte offsets, mirrored in the comments of kernels.wat), where weights start, and how a
 * weight matrix is laid out (row groups of 4, column tiles of 64, one row's 64-column run after the
 * other; 16-bit weights permuted inside each 8-column block so one load widens to two f32x4). Pure
 * functions and constants only; no wasm here.
 */
import type { FloatDType } from "../src/Tensor.ts"
import { f16ToF32 } from "../src/Tensor.ts"

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
/** ARG i at ARGS + 4i (i < 16). */
export const ARGS = 200
/** Chunks run by thread i at STATS + 4i (for tests: did the workers take part?). */
export const STATS = 512
/** Weights start here (after the control block). */
export const WEIGHTS_BASE = 65536
/** The largest chunk count of one job (index 0xffff means "closed"). */
export const MAX_CHUNKS = 0xfffe

export const OP_MATMUL = 0
export const OP_ATTENTION = 1
export const OP_PROBE = 2
export const OP_TRANSPOSED = 3
export const OP_GATHER = 4

export type Storage = "f32" | "bf16" | "f16"
export const storageOf: Record<FloatDType, Storage> = { F32: "f32", BF16: "bf16", F16: "f16" }
export const storageCode: Record<Storage, number> = { f32: 0, bf16: 1, f16: 2 }

// ---- matrix layout ----
export const roundUp = (n: number, m: number): number => Math.ceil(n / m) * m

/** Columns per tile: a row's run of a tile is 8 blocks of 8 columns (128 B in 16-bit, 256 B in f32). */
export const TILE = 64

export interface MatrixLayout {
  readonly rows: number
  readonly cols: number
  readonly storage: Storage
  /** Row groups of 4 (rows padded with zero rows). */
  readonly groups: number
  /** Column tiles of 64 (cols padded with zeros). */
  readonly tiles: number
  /** Bytes of one row's run of one tile. */
  readonly runBytes: number
  /** Bytes of one group (4 rows × all tiles). */
  readonly groupBytes: number
  readonly bytes: number
}

export const matrixLayout = (rows: number, cols: number, storage: Storage): MatrixLayout => {
  const groups = Math.ceil(rows / 4)
  const tiles = Math.ceil(cols / TILE)
  const runBytes = storage === "f32" ? 256 : 128
  const groupBytes = tiles * 4 * runBytes
  return { rows, cols, storage, groups, tiles, runBytes, groupBytes, bytes: groups * groupBytes }
}

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

/** Row r of a packed matrix, widened to f32, into out[0..cols). */
export const unpackRow = (packed: Uint8Array, layout: MatrixLayout, r: number, out: Float32Array): void => {
  const { cols, storage } = layout
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

/** Zero the runs of the padding rows (rows..4·groups) of the matrix at byte address `at` of `memory`. */
export const zeroPaddingRows = (memory: Uint8Array, l: MatrixLayout, at: number): void => {
  for (let r = l.rows; r < 4 * l.groups; r++)
    for (let j = 0; j < l.tiles; j++) {
      const run = at + runStart(l, r, 1) + j * 4 * l.runBytes
      memory.fill(0, run, run + l.runBytes)
    }
}
