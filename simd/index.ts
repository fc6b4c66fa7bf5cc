/**
 * The simd backend: the Kernels interface on WebAssembly SIMD (f32x4) and worker_threads, for CPUs.
 *
 * Decoding reads every weight once per token, so on a CPU the limit is memory bandwidth. This backend
 * keeps every weight resident in one shared wasm memory in its checkpoint dtype (f32, bf16 or f16: a
 * bf16 model reads half the bytes of f32 and fits wasm32's 4 GiB), widens it to f32 in registers, and
 * splits each matmul's output rows over the main thread and `threads − 1` workers. A T-token matmul
 * makes one pass over the weights for all T tokens (bf16: each widened weight vector feeds 4 tokens).
 *
 * Ops and where they run:
 *   matmul, matmulRows, matmulTransposedRows, attention, gather   wasm on all threads (kernels.wat)
 *   swiglu              wasm SIMD on the main thread (vectorised exp)
 *   rmsnorm, rope, add, embedding   plain TS on the main thread, float64 like the reference: a few
 *                       thousand elements per token per layer, negligible next to the matmuls
 *
 * Every output element is computed by the same instruction sequence whatever the thread count and
 * whatever T, so results are bitwise identical for 1 or N threads, and a token's logits do not depend
 * on how many tokens share the forward call.
 *
 * Not here: the wasm (kernels.wat, built by `node simd/build.mjs`), the thread pool (SimdRuntime.ts).
 *
 * @example
 * const program = Effect.gen(function* () {
 *   const model = yield* Model.fromCheckpoint(checkpoint)
 *   return yield* Forward.forward(model, KvCache.make(model.config, 64), tokens, 0, "last")
 * })
 * Effect.runPromise(Effect.provide(program, SimdKernels.layer({ threads: 2 })))
 */
import { Effect, Layer } from "effect"
import type { Scope } from "effect"
import { availableParallelism } from "node:os"
import { KernelError, Kernels, type KernelsShape, type Matrix, type Vector } from "../src/Kernels.ts"
import { type RawTensor, toFloat32, widenQuantized } from "../src/Tensor.ts"
import {
  columnOffsets,
  matrixLayout,
  MAX_CHUNKS,
  type MatrixLayout,
  OP_ATTENTION,
  OP_GATHER,
  OP_MATMUL,
  OP_TRANSPOSED,
  packMatrix,
  roundUp,
  type Storage,
  storageCode,
  storageOf,
  TILE,
  unpackRow,
  zeroPaddingRows
} from "./layout.ts"
import { MAX_MEMORY_BYTES, OutOfMemory, SimdRuntime } from "./SimdRuntime.ts"

export interface SimdOptions {
  /** Threads running kernels (main thread + threads − 1 workers). Default: os.availableParallelism(). */
  readonly threads?: number
  /** How long idle workers spin before sleeping, in ms (waking a sleeper costs ms). Default 20. */
  readonly spinMs?: number
  /** Cap on the wasm memory in bytes (default and maximum 4 GiB). */
  readonly maxMemoryBytes?: number
  /** Smallest matmul chunk (the unit threads claim), in bytes of weights. Default 128 KiB. */
  readonly chunkBytes?: number
}

/** A matrix resident in the wasm memory, in the layout of layout.ts. */
interface SimdMatrix extends Matrix {
  readonly layout: MatrixLayout
  readonly address: number
}

interface SimdVector extends Vector {
  readonly data: Float32Array
}

const BACKEND = "simd"
/** Weights per block of a multi-token matmul chunk: re-read by each pass over the tokens, from L2. */
const BLOCK_BYTES = 128 * 1024

/**
 * Build the backend on a fresh runtime (memory + workers), released with the scope.
 *
 * @category constructors
 */
export const make = (options: SimdOptions = {}): Effect.Effect<KernelsShape & { readonly runtime: SimdRuntime }, KernelError, Scope.Scope> =>
  Effect.gen(function* () {
    const threads = options.threads ?? availableParallelism()
    if (!Number.isInteger(threads) || threads < 1) {
      return yield* new KernelError({ op: "make", backend: BACKEND, message: `threads must be a positive integer, got ${threads}` })
    }
    const maxBytes = Math.min(options.maxMemoryBytes ?? MAX_MEMORY_BYTES, MAX_MEMORY_BYTES)
    const runtime = yield* Effect.acquireRelease(
      Effect.try({
        try: () => new SimdRuntime({ threads, spinMs: options.spinMs ?? 20, maxBytes }),
        catch: (e) => new KernelError({ op: "make", backend: BACKEND, message: `cannot start: ${String(e)}` })
      }),
      (rt) => Effect.promise(() => rt.close())
    )
    return kernelsOn(runtime, options.chunkBytes ?? 128 * 1024)
  })

/**
 * The Kernels layer of this backend; its workers are terminated when the layer's scope closes.
 *
 * @category layers
 */
export const layer = (options: SimdOptions = {}): Layer.Layer<Kernels, KernelError> => Layer.effect(Kernels, make(options))

export const SimdKernels = { make, layer } as const

// ---------------------------------------------------------------------------------------------------

const kernelsOn = (rt: SimdRuntime, chunkBytes: number): KernelsShape & { readonly runtime: SimdRuntime } => {
  const threads = rt.workers.length + 1
  const storages = new Set<Storage>()
  /** A tied lm_head is the embedding's very RawTensor: upload it once. */
  const uploaded = new WeakMap<RawTensor, SimdMatrix>()
  const name = (): string =>
    `simd(${threads} thread${threads === 1 ? "" : "s"}${storages.size ? ", " + [...storages].join("+") : ""}${rt.fma ? ", fma" : ""})`

  const fail = (op: string, e: unknown): KernelError =>
    new KernelError({
      op,
      backend: name(),
      message:
        e instanceof OutOfMemory
          ? op === "matrix"
            ? `${e.message}: the weights do not fit in one wasm32 memory (4 GiB at most); store the model in bf16 (half the bytes of f32)`
            : op === "gather"
              ? `${e.message}: this request's coarse-sparsity copies do not fit beside the weights and the other requests' copies (4 GiB at most); use a bf16 model, a lower density or fewer concurrent coarse requests`
              : `${e.message}: the weights leave no room for this call's activations; use a bf16 model or a shorter context`
          : e instanceof Error
            ? e.message
            : String(e)
    })
  const attempt = <A>(op: string, f: () => A): Effect.Effect<A, KernelError> => Effect.try({ try: f, catch: (e) => fail(op, e) })

  const matrix = (raw: RawTensor): Effect.Effect<Matrix, KernelError> =>
    attempt("matrix", () => {
      const known = uploaded.get(raw)
      if (known) return known
      // No integer kernels here yet: quantized weights (Q8_0, Q4_0, Q4_K, Q6_K) are widened to f32 exactly.
      const t = widenQuantized(raw)
      const storage = storageOf[t.dtype]
      const layout = matrixLayout(t.shape[0]!, t.shape[1]!, storage)
      const address = rt.alloc(layout.bytes)
      packMatrix(t.data, layout, rt.u8.subarray(address, address + layout.bytes))
      storages.add(storage)
      const m: SimdMatrix = { rows: layout.rows, cols: layout.cols, bytes: layout.bytes, layout, address }
      uploaded.set(raw, m)
      return m
    })

  /**
   * A copy of rows or columns of a resident matrix in fresh memory, freed when the scope closes. One job
   * on all threads (kernels.wat `gatherChunk`): rows copy whole runs; columns copy element by element
   * through offset tables. The memory is not pre-zeroed: the job writes every byte but the padding rows,
   * zeroed here.
   */
  const gather = (w: Matrix, indices: Int32Array, axis: "rows" | "columns"): Effect.Effect<Matrix, KernelError, Scope.Scope> =>
    Effect.acquireRelease(
      attempt("gather", (): SimdMatrix => {
        const { layout: from, address: src } = w as SimdMatrix
        const n = indices.length
        const layout = axis === "rows" ? matrixLayout(n, from.cols, from.storage) : matrixLayout(from.rows, n, from.storage)
        const address = rt.alloc(layout.bytes, { zeroed: false })
        const elementBytes = from.storage === "f32" ? 4 : 2
        const rows = axis === "rows" ? n : from.rows
        const perChunk = Math.max(1, Math.ceil(rows / (8 * threads)))
        const [aAt, bAt] = rt.scratch([n * 4, axis === "rows" ? 0 : n * 4])
        if (axis === "rows") rt.i32.set(indices, aAt! / 4)
        else {
          rt.i32.set(columnOffsets(from.storage, indices), aAt! / 4)
          rt.i32.set(columnOffsets(from.storage, indices.map((_, j) => j)), bAt! / 4)
        }
        rt.run(OP_GATHER, Math.ceil(rows / perChunk), [axis === "rows" ? 0 : 1, elementBytes, src, address, aAt!, bAt!, rows, perChunk, from.tiles, layout.tiles, n])
        zeroPaddingRows(rt.u8, layout, address)
        return { rows: layout.rows, cols: layout.cols, bytes: layout.bytes, layout, address }
      }),
      (m) => Effect.sync(() => rt.free(m.address))
    )

  const vector = (t: RawTensor): Effect.Effect<Vector, KernelError> =>
    Effect.sync((): SimdVector => ({ length: t.shape[0]!, data: toFloat32(t) }))

  /**
   * Chunk boundaries over outputs 0..n (n a multiple of 4), guided: each chunk takes ≈ remaining / (2 ·
   * threads) outputs, at least ≈ `chunkBytes` of weights, so threads stream few large separate regions
   * (small interleaved chunks halve the bandwidth of two threads) while the last chunks are small enough
   * that a thread finishing late holds the others only briefly. Boundaries are multiples of 16 but the
   * last, so a chunk's outputs of a token are whole 64-byte lines (with the out stride a multiple of 16).
   */
  const chunkBounds = (l: MatrixLayout, n: number): Int32Array => {
    const rowBytes = l.groupBytes / 4
    const min = roundUp(Math.max(16, Math.floor(chunkBytes / rowBytes), Math.ceil(n / MAX_CHUNKS)), 16)
    const bounds = [0]
    for (let at = 0; at < n; ) {
      at = Math.min(n, at + Math.max(min, roundUp(Math.ceil((n - at) / (2 * threads)), 16)))
      bounds.push(at)
    }
    return Int32Array.from(bounds)
  }

  /** Rows per block of a chunk (a multiple of 4): ≈ BLOCK_BYTES of weights, reused by every token from L2. */
  const blockRows = (l: MatrixLayout, n: number, T: number): number =>
    T === 1 ? n : Math.max(4, Math.floor(BLOCK_BYTES / (l.groupBytes / 4) / 4) * 4)

  /**
   * out (T, n) for rows 0..n-1 (sel undefined, n = rows) or for rows sel[0..n) of w. One job: chunks of
   * rows, each thread claiming the next; the x copy is zero padded to the matrix's tiles.
   */
  const rowsProduct = (w: Matrix, x: Float32Array, T: number, sel: Int32Array | undefined): Float32Array => {
    const { layout: l, address } = w as SimdMatrix
    const n = sel ? sel.length : l.rows
    const n4 = roundUp(n, 4)
    const colsPad = l.tiles * TILE
    const bounds = chunkBounds(l, n4)
    // out stride: a multiple of 16 outputs, so each token's outputs start on a 64-byte line
    const ns = roundUp(n, 16)
    const [xAt, outAt, selAt, boundsAt] = rt.scratch([T * colsPad * 4, T * ns * 4, sel ? n4 * 4 : 0, bounds.length * 4])
    const f32 = rt.f32
    if (colsPad === l.cols) f32.set(x.subarray(0, T * l.cols), xAt! / 4)
    else
      for (let t = 0; t < T; t++) {
        const at = xAt! / 4 + t * colsPad
        f32.set(x.subarray(t * l.cols, (t + 1) * l.cols), at)
        f32.fill(0, at + l.cols, at + colsPad)
      }
    if (sel) {
      // pad the selection to a multiple of 4 with its last row (computed, then dropped)
      rt.i32.set(sel, selAt! / 4)
      rt.i32.fill(sel[n - 1]!, selAt! / 4 + n, selAt! / 4 + n4)
    }
    rt.i32.set(bounds, boundsAt! / 4)
    const args = [storageCode[l.storage], address, xAt!, outAt!, n4, boundsAt!, l.tiles, T, colsPad * 4, ns * 4, sel ? selAt! : 0, blockRows(l, n4, T)]
    rt.run(OP_MATMUL, bounds.length - 1, args)
    if (ns === n) return f32.slice(outAt! / 4, outAt! / 4 + T * n)
    const out = new Float32Array(T * n)
    for (let t = 0; t < T; t++) out.set(f32.subarray(outAt! / 4 + t * ns, outAt! / 4 + t * ns + n), t * n)
    return out
  }

  const matmul = (w: Matrix, x: Float32Array, T: number): Effect.Effect<Float32Array, KernelError> =>
    attempt("matmul", () => rowsProduct(w, x, T, undefined))

  const matmulRows = (w: Matrix, x: Float32Array, T: number, rows: Int32Array): Effect.Effect<Float32Array, KernelError> =>
    attempt("matmulRows", () => (rows.length === 0 ? new Float32Array(0) : rowsProduct(w, x, T, rows)))

  const matmulTransposedRows = (wT: Matrix, h: Float32Array, T: number, rows: Int32Array): Effect.Effect<Float32Array, KernelError> =>
    attempt("matmulTransposedRows", () => {
      const { layout: l, address } = wT as SimdMatrix
      const n = rows.length
      const D = l.cols
      const colsPad = l.tiles * TILE
      if (n === 0) return new Float32Array(T * D)
      const [hAt, selAt, outAt] = rt.scratch([T * n * 4, n * 4, T * colsPad * 4])
      const f32 = rt.f32
      f32.set(h.subarray(0, T * n), hAt! / 4)
      rt.i32.set(rows, selAt! / 4)
      f32.fill(0, outAt! / 4, outAt! / 4 + T * colsPad)
      const tilesPerChunk = Math.max(1, Math.ceil(l.tiles / (4 * threads)))
      rt.run(OP_TRANSPOSED, Math.ceil(l.tiles / tilesPerChunk), [storageCode[l.storage], address, hAt!, outAt!, n, selAt!, l.tiles, T, tilesPerChunk])
      if (colsPad === D) return f32.slice(outAt! / 4, outAt! / 4 + T * D)
      const out = new Float32Array(T * D)
      for (let t = 0; t < T; t++) out.set(f32.subarray(outAt! / 4 + t * colsPad, outAt! / 4 + t * colsPad + D), t * D)
      return out
    })

  const embedding = (table: Matrix, tokens: Int32Array): Effect.Effect<Float32Array, KernelError> =>
    attempt("embedding", () => {
      const { layout: l, address } = table as SimdMatrix
      const out = new Float32Array(tokens.length * l.cols)
      const packed = rt.u8.subarray(address, address + l.bytes)
      tokens.forEach((id, t) => unpackRow(packed, l, id, out.subarray(t * l.cols, (t + 1) * l.cols)))
      return out
    })

  const rmsnorm = (x: Float32Array, weight: Vector, T: number, eps: number): Effect.Effect<Float32Array, KernelError> =>
    Effect.sync(() => {
      const w = (weight as SimdVector).data
      const D = w.length
      const out = new Float32Array(T * D)
      for (let t = 0; t < T; t++) {
        const o = t * D
        let ss = 0
        for (let i = 0; i < D; i++) ss += x[o + i]! * x[o + i]!
        const scale = 1 / Math.sqrt(ss / D + eps)
        for (let i = 0; i < D; i++) out[o + i] = x[o + i]! * scale * w[i]!
      }
      return out
    })

  const rope = (
    x: Float32Array,
    T: number,
    heads: number,
    headDim: number,
    positions: Int32Array,
    invFreq: Float32Array
  ): Effect.Effect<Float32Array, KernelError> =>
    Effect.sync(() => {
      const out = new Float32Array(x.length)
      const half = headDim / 2
      const cos = new Float64Array(half)
      const sin = new Float64Array(half)
      for (let t = 0; t < T; t++) {
        // one angle per (token, frequency), shared by every head
        for (let i = 0; i < half; i++) {
          const theta = positions[t]! * invFreq[i]!
          cos[i] = Math.cos(theta)
          sin[i] = Math.sin(theta)
        }
        for (let h = 0; h < heads; h++) {
          const o = (t * heads + h) * headDim
          for (let i = 0; i < half; i++) {
            const a = x[o + i]!
            const b = x[o + i + half]!
            out[o + i] = a * cos[i]! - b * sin[i]!
            out[o + i + half] = b * cos[i]! + a * sin[i]!
          }
        }
      }
      return out
    })

  const attention: KernelsShape["attention"] = (q, keys, values, shape) =>
    attempt("attention", () => {
      const { T, numHeads: H, numKeyValueHeads: Hkv, headDim: Dh, kvLength: S, positions } = shape
      const dh4 = roundUp(Dh, 4)
      const spad = roundUp(S, 4)
      const out = new Float32Array(T * H * Dh)
      const scaleBits = new Int32Array(Float32Array.of(1 / Math.sqrt(Dh)).buffer)[0]!
      // queries in blocks of tokens so that one job has at most MAX_CHUNKS (token, head) items
      const tb = Math.min(T, Math.max(1, Math.floor(MAX_CHUNKS / H)))
      const kvBytes = S * Hkv * dh4 * 4
      const { mask } = shape
      const [kAt, vAt, qAt, oAt, sAt, pAt, mAt] = rt.scratch([
        kvBytes,
        kvBytes,
        tb * H * dh4 * 4,
        tb * H * dh4 * 4,
        tb * H * spad * 4,
        tb * 4,
        mask ? tb * S : 0
      ])
      const f32 = rt.f32
      copyHeads(f32, kAt! / 4, keys, S * Hkv, Dh, dh4)
      copyHeads(f32, vAt! / 4, values, S * Hkv, Dh, dh4)
      for (let t0 = 0; t0 < T; t0 += tb) {
        const Tb = Math.min(tb, T - t0)
        copyHeads(f32, qAt! / 4, q.subarray(t0 * H * Dh), Tb * H, Dh, dh4)
        rt.i32.set(positions.subarray(t0, t0 + Tb), pAt! / 4)
        if (mask) rt.u8.set(mask.subarray(t0 * S, (t0 + Tb) * S), mAt!)
        rt.run(OP_ATTENTION, Tb * H, [qAt!, kAt!, vAt!, oAt!, sAt!, pAt!, H, H / Hkv, dh4, Hkv * dh4 * 4, scaleBits, spad, mask ? mAt! : 0, S])
        const o = f32
        if (dh4 === Dh) out.set(o.subarray(oAt! / 4, oAt! / 4 + Tb * H * Dh), t0 * H * Dh)
        else for (let i = 0; i < Tb * H; i++) out.set(o.subarray(oAt! / 4 + i * dh4, oAt! / 4 + i * dh4 + Dh), (t0 * H + i) * Dh)
      }
      return out
    })

  const swiglu = (gate: Float32Array, up: Float32Array): Effect.Effect<Float32Array, KernelError> =>
    attempt("swiglu", () => {
      const n = gate.length
      const n4 = roundUp(n, 4)
      const [gAt, uAt, oAt] = rt.scratch([n4 * 4, n4 * 4, n4 * 4])
      const f32 = rt.f32
      f32.set(gate, gAt! / 4)
      f32.set(up, uAt! / 4)
      f32.fill(0, gAt! / 4 + n, gAt! / 4 + n4)
      f32.fill(0, uAt! / 4 + n, uAt! / 4 + n4)
      rt.exports.swiglu(gAt!, uAt!, oAt!, n4)
      return f32.slice(oAt! / 4, oAt! / 4 + n)
    })

  const add = (a: Float32Array, b: Float32Array): Effect.Effect<Float32Array, KernelError> =>
    Effect.sync(() => {
      const out = new Float32Array(a.length)
      for (let i = 0; i < a.length; i++) out[i] = a[i]! + b[i]!
      return out
    })

  return {
    get name() {
      return name()
    },
    runtime: rt,
    matrix,
    vector,
    gather,
    matmul,
    matmulRows,
    matmulTransposedRows,
    embedding,
    rmsnorm,
    rope,
    attention,
    swiglu,
    add,
    memory: () => ({ usedBytes: rt.allocatedBytes, limitBytes: rt.options.maxBytes })
  }
}

/** Copy n heads of Dh floats into rows of dh4 (zero padded) starting at f32 index `at`. */
const copyHeads = (f32: Float32Array, at: number, src: Float32Array, n: number, Dh: number, dh4: number): void => {
  if (dh4 === Dh) {
    f32.set(src.subarray(0, n * Dh), at)
    return
  }
  for (let i = 0; i < n; i++) {
    f32.set(src.subarray(i * Dh, (i + 1) * Dh), at + i * dh4)
    f32.fill(0, at + i * dh4 + Dh, at + (i + 1) * dh4)
  }
}
