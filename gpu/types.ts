/**
 * What a gpu.js kernel body sees as `this` and as its arguments, and the handles of the gpu backend: the
 * host path's resident weights (GpuMatrix, GpuVector, GpuGathered) and the pipeline's device buffers.
 *
 * Kernel bodies are `function`s that gpu.js parses and transpiles (to WGSL, GLSL, wasm or JS): they
 * compute one output cell at `this.thread.{x,y,z}` and read sizes and resident weights from
 * `this.constants`. They must not capture outer variables or call anything but Math, and two loops in
 * one kernel need distinct variable names (the cpu backend hoists them into one scope).
 */
import type { Matrix, Vector } from "../src/Kernels.ts"

export interface KernelThis<C> {
  readonly thread: { readonly x: number; readonly y: number; readonly z: number }
  readonly constants: C
}

/** A weight matrix (rows, cols) held for the gpu backend; its kernels hold it as a constant (resident). */
export interface GpuMatrix extends Matrix {
  /** Unique per runtime: names the kernels that hold this matrix. */
  readonly id: number
  readonly data: Float32Array // (rows, cols)
}

/**
 * A gather (coarse sparsity) of a resident matrix: rows or columns `sel` of `base`, computed from base's
 * kernels, so a request's gather uploads nothing and compiles no kernel per request.
 */
export interface GpuGathered extends Matrix {
  readonly base: GpuMatrix
  readonly axis: "rows" | "columns"
  readonly sel: Float32Array
}

export interface GpuVector extends Vector {
  readonly id: number
  readonly data: Float32Array // (length)
}

/** gpu.js takes index arrays as floats (exact below 2²⁴). */
export const indices = (ids: ArrayLike<number>): Float32Array => Float32Array.from(ids)

/**
 * A 2D kernel argument indexed `a[y][x]` (a pipeline buffer of output [cols, rows]). Pipeline kernels index
 * every buffer by (row, column), never by a flat float index: gpu.js then computes the flat offset in
 * integer arithmetic (exact beyond 2²⁴ elements), and a GL kernel sees every argument with the one texture
 * type it was compiled for (a 1D and a 2D texture are different argument types there).
 */
export type Grid = ReadonlyArray<ArrayLike<number>>
/** A 3D kernel argument indexed `a[z][y][x]` (attention's scores and softmax statistics). */
export type Grid3 = ReadonlyArray<ReadonlyArray<ArrayLike<number>>>

/**
 * A kernel output kept on the device (gpu.js `pipeline: true, immutable: true`): a WebGPU buffer, a GL
 * texture, or on the cpu/webasm modes (no device) the nested arrays gpu.js returns. Released explicitly
 * (`GpuRuntime.release`), when the scope that made it closes.
 */
export interface DeviceBuffer {
  /** gpu.js output dims, x fastest: [cols, rows] for every activation, weight and KV buffer; [S, H, T] for attention's scores. */
  readonly output: ReadonlyArray<number>
  /** The gpu.js result: passed as a kernel argument as is. */
  readonly value: unknown
  readonly bytes: number
}
