/**
 * What a gpu.js kernel body sees as `this`, and the resident weight handles of the gpu backend.
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
