/**
 * The simd backend: the Kernels interface on WebAssembly SIMD (f32x4) and worker_threads, for CPUs.
 *
 * Decoding reads every weight once per token, so on a CPU the limit is memory bandwidth. This backend
 * keeps every weight resident in one shared wasm memory in its checkpoint dtype (f32, bf16 or f16: a
 * bf16 model reads half the bytes of f32 and fits wasm32's 4 GiB), widens it to f32 in registers, and
 * splits each matmul's output rows over the main thread and `threads − 1` workers. Quantized weights
 * (Q8_0, Q4_0, Q4_K, Q6_K) stay quantized: each matmul input is quantized per block first, as llama.cpp
 * does, and multiplied with integer dot products (simd/README.md, "Quantized weights"). A T-token matmul
 * makes one pass over the weights for all T tokens (each widened or unpacked weight vector feeds 4 tokens).
 * A model that cannot fit the memory is refused before anything is allocated (`admit`).
 *
 * Everything a forward pass touches lives in the same memory: activations (in an arena per forward pass,
 * freed when its scope closes), the KV cache (a block per request), fine sparsity's selections. An op
 * reads its inputs where the previous op wrote them; the host copies in only a call's positions (and a tree
 * mask) and copies out only the logits (`read`). `runtime.traffic` counts those bytes.
 *
 * Ops and where they run:
 *   matmul, matmulRows, matmulTransposedRows, attention, gather, activation quantization   wasm on all threads (kernels.wat)
 *   rmsnorm, rope, add   wasm on the main thread, in float64 like reference/ (bitwise its results)
 *   swiglu, swigluRows   wasm SIMD on the main thread (vectorised exp)
 *   embedding, selectNeurons, neuronStatistic, the KV moves   TS on views of the wasm memory (no copy)
 *
 * Activations are f32 rows padded to a multiple of 64 floats with zeros (the matmul kernels read whole
 * 64-column tiles), except swigluRows' output, which is packed (T, n) for matmulTransposedRows.
 *
 * Every output element is computed by the same instruction sequence whatever the thread count and
 * whatever T, so results are bitwise identical for 1 or N threads, and a token's logits do not depend
 * on how many tokens share the forward call.
 *
 * Not here: the wasm (kernels.wat, built by `node simd/build.mjs`), the thread pool (SimdRuntime.ts).
 *
 * @example
 * const program = Effect.gen(function* () {
 *   const checkpoint = yield* Checkpoint.loadCheckpoint(dir)
 *   const model = yield* Model.fromCheckpoint(checkpoint)
 *   return yield* Stream.runCollect(Generation.generate(model, { prompt, maxNewTokens: 32 }))
 * })
 * Effect.runPromise(Effect.provide(program, SimdKernels.layer({ threads: 2 })))
 */
import { Effect, Layer, Scope } from "effect"
import { availableParallelism } from "node:os"
import {
  type Activation,
  type ForwardInput,
  KernelError,
  Kernels,
  type KernelsShape,
  type KvStore,
  type Matrix,
  type NeuronRule,
  type Selection,
  type Vector,
  type WeightShape
} from "../src/Kernels.ts"
import { aboveThreshold, silu, topK } from "../src/Sparsity.ts"
import { transpose } from "../src/Tensor.ts"
import { isQuantized, numel, type RawTensor, tensorBytes, toFloat32 } from "../src/Tensor.ts"
import {
  activationFormat,
  activationRecordBytes,
  columnOffsets,
  isQuantStorage,
  matrixLayout,
  MAX_CHUNKS,
  type MatrixLayout,
  OP_ATTENTION,
  OP_GATHER,
  OP_GATHER_QUANT,
  OP_MATMUL,
  OP_QUANTIZE,
  OP_TRANSPOSED,
  packMatrix,
  QTILE,
  type QuantStorage,
  roundUp,
  type Storage,
  storageCode,
  storageOf,
  TILE,
  unpackRow,
  WEIGHTS_BASE,
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
  /**
   * Set on the `transposed` handle of a quantized matrix W (D, F): this handle stands for Wᵀ (F, D) and is
   * W itself, un-transposed (matmulTransposedRows then runs W's dense kernel on h scattered to F columns).
   */
  readonly transposeOf?: SimdMatrix
}

/** A vector (norm weights, bias) as f32 in the wasm memory. */
interface SimdVector extends Vector {
  readonly address: number
}

/** f32 rows in the wasm memory: row t at address + 4·t·stride; columns cols..stride are zero. */
interface SimdActivation extends Activation {
  readonly address: number
  readonly stride: number
}

/** Neuron indices (i32) in the wasm memory, padded to a multiple of 4 with the last one (the matmul's row quads). */
interface SimdSelection extends Selection {
  readonly address: number
  readonly count: number
}

interface SimdInput extends ForwardInput {
  readonly tokens: Int32Array
  readonly positions: Int32Array
  /** The positions as i32 in the wasm memory (attention reads them), and the tree mask (T, kvLength) bytes or 0. */
  readonly positionsAt: number
  readonly maskAt: number
}

/**
 * A request's KV cache: per layer, keys then values, each (Hkv, capacity, dh4) f32 (heads padded to 4).
 * Head-major, so attention streams one KV head's slots contiguously (slot-major interleaving of the heads
 * made a long context's reads strided: 23–26 against 12–15 ms of attention per token at 1024 slots on the
 * 1.1B shape, tmp/ microbenchmark).
 */
interface SimdKv extends KvStore {
  readonly address: number
  readonly dh4: number
  /** Bytes of one slot of one layer's keys, all heads (Hkv·dh4·4). */
  readonly slotBytes: number
}

const BACKEND = "simd"
/** Weights per block of a multi-token matmul chunk: re-read by each pass over the tokens, from L2. */
const BLOCK_BYTES = 128 * 1024
/** Activations are allocated from arena blocks of at least this size. */
const ARENA_BLOCK = 1 << 20
/**
 * What `admit` keeps free beside the weights: one arena block, the least a forward pass allocates. A model
 * that fits is then refused nothing until a request asks for more than is left (its KV cache, its
 * activations), and that request is refused then, naming what it needed (`fail` below).
 */
const WORKING_RESERVE = ARENA_BLOCK

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

/**
 * The activations of one scope (a forward pass): bump allocation in blocks of the runtime's memory, all
 * freed together when the scope closes. Nothing is zeroed here: every op writes the bytes it hands out.
 */
class Arena {
  /** The quantized records made from this arena's activations (kernels.wat `quantize`), by format. */
  readonly quantized = new WeakMap<object, Map<number, number>>()
  private readonly blocks: Array<number> = []
  private at = 0
  private end = 0
  constructor(private readonly rt: SimdRuntime) {}
  alloc(bytes: number): number {
    const size = roundUp(Math.max(bytes, 64), 64)
    if (this.at + size > this.end) {
      const block = Math.max(size, ARENA_BLOCK)
      this.at = this.rt.alloc(block, { zeroed: false })
      this.end = this.at + block
      this.blocks.push(this.at)
    }
    const address = this.at
    this.at += size
    return address
  }
  release(): void {
    for (const b of this.blocks) this.rt.free(b)
    this.blocks.length = 0
    this.at = this.end = 0
  }
}

const kernelsOn = (rt: SimdRuntime, chunkBytes: number): KernelsShape & { readonly runtime: SimdRuntime } => {
  const threads = rt.workers.length + 1
  const storages = new Set<Storage>()
  /** A tied lm_head is the embedding's very RawTensor: upload it once. */
  const uploaded = new WeakMap<RawTensor, SimdMatrix>()
  const arenas = new WeakMap<Scope.Scope, Arena>()
  const name = (): string =>
    `simd(${threads} thread${threads === 1 ? "" : "s"}${storages.size ? ", " + [...storages].join("+") : ""}${rt.fma ? ", fma" : ""})`

  const fail = (op: string, e: unknown): KernelError =>
    new KernelError({
      op,
      backend: name(),
      message:
        e instanceof OutOfMemory
          ? op === "matrix"
            ? `${e.message}: the weights do not fit in one wasm32 memory (4 GiB at most); store the model in bf16 (half the bytes of f32) or quantize it (sirius quantize)`
            : op === "gather" || op === "kvStore"
              ? `${e.message}: this request's ${op === "gather" ? "coarse-sparsity copies" : "KV cache"} does not fit beside the weights and the other requests' (4 GiB at most); use a bf16 model, a shorter context, a lower density or fewer concurrent requests`
              : `${e.message}: the weights leave no room for this call's activations; use a bf16 model or a shorter context`
          : e instanceof Error
            ? e.message
            : String(e)
    })
  const attempt = <A>(op: string, f: () => A): Effect.Effect<A, KernelError> => Effect.try({ try: f, catch: (e) => fail(op, e) })

  /** The arena of the current scope (created on first use, released when the scope closes). */
  const arenaOf: Effect.Effect<Arena, never, Scope.Scope> = Effect.flatMap(Effect.scope, (scope) => {
    const known = arenas.get(scope)
    if (known !== undefined) return Effect.succeed(known)
    const arena = new Arena(rt)
    arenas.set(scope, arena)
    return Effect.as(Scope.addFinalizer(scope, Effect.sync(() => arena.release())), arena)
  })
  /** An op that allocates its output in the current scope's arena. */
  const scoped = <A>(op: string, f: (arena: Arena) => A): Effect.Effect<A, KernelError, Scope.Scope> => Effect.flatMap(arenaOf, (arena) => attempt(op, () => f(arena)))

  /** A fresh activation (rows, cols), row stride padded to 64 floats (or `stride`); padding zeroed. */
  const activation = (arena: Arena, rows: number, cols: number, stride = roundUp(cols, 64)): SimdActivation => {
    const address = arena.alloc(rows * stride * 4 + 16) // + 16: a 4-wide store past a packed row's end stays inside
    if (stride > cols) for (let t = 0; t < rows; t++) rt.f32.fill(0, address / 4 + t * stride + cols, address / 4 + (t + 1) * stride)
    return { rows, cols, stride, address }
  }
  /** Zero the padding columns of an activation some kernel wrote past `cols`. */
  const zeroPadding = (a: SimdActivation): void => {
    if (a.stride > a.cols) for (let t = 0; t < a.rows; t++) rt.f32.fill(0, a.address / 4 + t * a.stride + a.cols, a.address / 4 + (t + 1) * a.stride)
  }
  const act = (x: Activation) => x as SimdActivation
  /**
   * x's rows as matmul input: its own memory when the stride is the matrix's tiles, else a padded copy at
   * `at` (scratch the caller reserved: `tilesBytes`).
   */
  const tilesBytes = (x: SimdActivation, tiles: number): number => (x.stride === tiles * TILE ? 0 : x.rows * tiles * TILE * 4)
  const asTiles = (x: SimdActivation, tiles: number, at: number | undefined): number => {
    if (x.stride === tiles * TILE) return x.address
    for (let t = 0; t < x.rows; t++) {
      rt.f32.copyWithin(at! / 4 + t * tiles * TILE, x.address / 4 + t * x.stride, x.address / 4 + t * x.stride + x.cols)
      rt.f32.fill(0, at! / 4 + t * tiles * TILE + x.cols, at! / 4 + (t + 1) * tiles * TILE)
    }
    return at!
  }

  // ---- weights ----

  /** Upload a matrix in its own storage (quantized weights stay quantized: integer kernels). */
  const upload1 = (raw: RawTensor): SimdMatrix => {
    const known = uploaded.get(raw)
    if (known) return known
    const storage = storageOf[raw.dtype]
    const layout = matrixLayout(raw.shape[0]!, raw.shape[1]!, storage)
    const address = rt.alloc(layout.bytes)
    packMatrix(raw.data, layout, rt.u8.subarray(address, address + layout.bytes))
    storages.add(storage)
    const m: SimdMatrix = { rows: layout.rows, cols: layout.cols, bytes: layout.bytes, layout, address }
    uploaded.set(raw, m)
    return m
  }
  const matrix = (raw: RawTensor): Effect.Effect<Matrix, KernelError> => attempt("matrix", () => upload1(raw))

  /**
   * Refuse weights that cannot fit one wasm32 memory before any is uploaded: the bytes of each in this
   * backend's storage (layout.ts: padded tiles, scale records; f32 vectors; a float down_proj's transposed
   * copy; nothing for a quantized one's), plus WORKING_RESERVE, against the memory's limit.
   */
  const admit = (shapes: ReadonlyArray<WeightShape>): Effect.Effect<void, KernelError> =>
    Effect.suspend(() => {
      let weights = 0
      let file = 0
      for (const w of shapes) {
        if (!w.transposed) file += tensorBytes(w.dtype, w.shape)
        if (w.shape.length !== 2) weights += roundUp(roundUp(numel(w.shape), 4) * 4, 64)
        else if (!w.transposed) weights += matrixLayout(w.shape[0]!, w.shape[1]!, storageOf[w.dtype]).bytes
        else if (!isQuantized(w.dtype)) weights += matrixLayout(w.shape[1]!, w.shape[0]!, storageOf[w.dtype]).bytes
      }
      const needed = WEIGHTS_BASE + rt.allocatedBytes + weights + WORKING_RESERVE
      const limit = rt.options.maxBytes
      if (needed <= limit) return Effect.void
      const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`
      return Effect.fail(
        new KernelError({
          op: "weights",
          backend: name(),
          neededBytes: needed,
          limitBytes: limit,
          message:
            `this model needs ${gib(needed)} of wasm memory (${gib(weights)} of weights in simd's storage, ${gib(file)} in the file, ` +
            `plus ${WORKING_RESERVE >> 20} MiB to run a step) and the limit is ${gib(limit)}${limit === MAX_MEMORY_BYTES ? " (one wasm32 memory)" : ""}: ` +
            `simd keeps a model in one memory (simd/README.md, "Models beyond 4 GiB"); use a smaller model or a smaller quantization (sirius quantize)`
        })
      )
    })

  /**
   * Wᵀ for matmulTransposedRows. A float W is transposed and uploaded (one more copy). A quantized W stays
   * quantized and is not copied: the handle is W itself (resident once, shared with the dense down_proj),
   * and matmulTransposedRows runs W's dense integer kernel on h scattered into F columns (zeros elsewhere).
   * It reads all of W rather than the selected rows, but a quantized W is 3.8–7.1× smaller than the f32
   * transpose a block format would otherwise need (blocks run along W's rows, not its columns).
   */
  const transposed = (raw: RawTensor): Effect.Effect<Matrix, KernelError> =>
    attempt("matrix", () => {
      if (!isQuantized(raw.dtype)) return upload1(transpose(raw))
      const w = upload1(raw)
      return { rows: w.cols, cols: w.rows, bytes: 0, layout: w.layout, address: w.address, transposeOf: w } satisfies SimdMatrix
    })

  const vector = (t: RawTensor): Effect.Effect<Vector, KernelError> =>
    attempt("vector", (): SimdVector => {
      const values = toFloat32(t)
      const address = rt.alloc(roundUp(values.length, 4) * 4)
      rt.f32.set(values, address / 4)
      return { length: values.length, address }
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
        if (axis === "columns" && isQuantStorage(from.storage)) return gatherQuantColumns(from, src, indices)
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
        rt.run(OP_GATHER, Math.ceil(rows / perChunk), [axis === "rows" ? 0 : 1, elementBytes, src, address, aAt!, bAt!, rows, perChunk, from.tiles, layout.tiles, n, from.runBytes])
        // a quantized row's scale record follows its runs
        if (layout.scaleRowBytes > 0)
          indices.forEach((r, i) =>
            rt.u8.copyWithin(address + layout.scalesAt + i * layout.scaleRowBytes, src + from.scalesAt + r * from.scaleRowBytes, src + from.scalesAt + (r + 1) * from.scaleRowBytes)
          )
        zeroPaddingRows(rt.u8, layout, address)
        return { rows: layout.rows, cols: layout.cols, bytes: layout.bytes, layout, address }
      }),
      (m) => Effect.sync(() => rt.free(m.address))
    )

  /**
   * Kept columns of a quantized matrix, re-blocked: ggml blocks run along a row, so a column subset is not
   * a block subset. Each row's kept values are dequantized exactly (ggml's dequantize_row_* arithmetic) and
   * requantized as Q8_0 (ggml's quantize_row_q8_0_ref, blocks of 32, zeros up to a multiple of 32) into a
   * Q8_0 matrix, by one job on all threads (kernels.wat `gatherQuantChunk`; the TS loop it replaced took
   * 0.3 s per down_proj of the 1.1B shape): the error is one more Q8_0 rounding per weight (≤ d/2 with
   * d = amax/127 of its new block), and Q8_0 keeps 8 bits where re-quantizing to the source's 4 or 6 would
   * compound its error.
   */
  const gatherQuantColumns = (from: MatrixLayout, src: number, indices: Int32Array): SimdMatrix => {
    const n = indices.length
    const layout = matrixLayout(from.rows, roundUp(n, 32), "q8_0")
    // every run byte of the first ⌈n/32⌉ blocks and every record's first ⌈n/32⌉ scales are written; the
    // rest (padding columns and rows) must read as zero
    const address = rt.alloc(layout.bytes)
    const [idxAt] = rt.scratch([n * 4])
    rt.i32.set(indices, idxAt! / 4)
    const perChunk = Math.max(1, Math.ceil(from.rows / (8 * threads)))
    rt.run(OP_GATHER_QUANT, Math.ceil(from.rows / perChunk), [
      storageCode[from.storage], src, src + from.scalesAt, from.scaleRowBytes, from.tiles, idxAt!, n,
      address, address + layout.scalesAt, layout.scaleRowBytes, layout.tiles, from.rows, perChunk
    ])
    storages.add("q8_0")
    return { rows: layout.rows, cols: n, bytes: layout.bytes, layout, address }
  }

  // ---- moving data ----

  /** RoPE tables, per invFreq: cos (Dh/2) then sin (Dh/2) in f64 for positions 0..count-1, grown on demand. */
  const ropeTables = new WeakMap<Float32Array, { address: number; count: number }>()
  const ropeTable = (invFreq: Float32Array, positions: number): number => {
    const known = ropeTables.get(invFreq)
    if (known !== undefined && known.count >= positions) return known.address
    const half = invFreq.length
    const count = Math.max(positions, 2 * (known?.count ?? 0), 256)
    const address = rt.alloc(count * half * 16)
    const f64 = new Float64Array(rt.memory.buffer, address, count * half * 2)
    for (let p = 0; p < count; p++)
      for (let i = 0; i < half; i++) {
        const theta = p * invFreq[i]!
        f64[p * 2 * half + i] = Math.cos(theta)
        f64[p * 2 * half + half + i] = Math.sin(theta)
      }
    if (known !== undefined) rt.free(known.address)
    ropeTables.set(invFreq, { address, count })
    return address
  }

  const input: KernelsShape["input"] = (tokens, positions, kvLength, mask) =>
    scoped("input", (arena): SimdInput => {
      const T = tokens.length
      const positionsAt = arena.alloc(T * 4)
      rt.i32.set(positions, positionsAt / 4)
      const maskAt = mask === undefined ? 0 : arena.alloc(T * kvLength)
      if (mask !== undefined) rt.u8.set(mask.subarray(0, T * kvLength), maskAt)
      rt.traffic.toWasm += T * 4 + (mask === undefined ? 0 : T * kvLength)
      return { T, kvLength, tokens: tokens.slice(), positions: positions.slice(), positionsAt, maskAt }
    })

  const upload: KernelsShape["upload"] = (data, rows, cols) =>
    scoped("upload", (arena) => {
      const a = activation(arena, rows, cols)
      for (let t = 0; t < rows; t++) rt.f32.set(data.subarray(t * cols, (t + 1) * cols), a.address / 4 + t * a.stride)
      rt.traffic.toWasm += rows * cols * 4
      return a as Activation
    })

  const read: KernelsShape["read"] = (x) =>
    attempt("read", () => {
      const a = act(x)
      rt.traffic.fromWasm += a.rows * a.cols * 4
      if (a.stride === a.cols) return rt.f32.slice(a.address / 4, a.address / 4 + a.rows * a.cols)
      const out = new Float32Array(a.rows * a.cols)
      for (let t = 0; t < a.rows; t++) out.set(rt.f32.subarray(a.address / 4 + t * a.stride, a.address / 4 + t * a.stride + a.cols), t * a.cols)
      return out
    })

  const writeSelection = (arena: Arena, rows: Int32Array, capacity: number): SimdSelection => {
    const n = rows.length
    const address = arena.alloc(roundUp(Math.max(n, 1), 4) * 4)
    rt.i32.set(rows, address / 4)
    // pad to a multiple of 4 with the last index (the matmul computes row quads; the extra outputs are dropped)
    if (n > 0) rt.i32.fill(rows[n - 1]!, address / 4 + n, address / 4 + roundUp(n, 4))
    return { capacity, address, count: n }
  }

  const selection: KernelsShape["selection"] = (indices) =>
    scoped("selection", (arena) => {
      rt.traffic.toWasm += indices.length * 4
      return writeSelection(arena, indices, indices.length) as Selection
    })

  // ---- matrix products ----

  /**
   * Chunk boundaries over outputs 0..n (n a multiple of 4), guided: each chunk takes ≈ remaining / (2 ·
   * threads) outputs, at least ≈ `chunkBytes` of weights, so threads stream few large separate regions
   * (small interleaved chunks halve the bandwidth of two threads) while the last chunks are small enough
   * that a thread finishing late holds the others only briefly. Boundaries are multiples of 16 but the
   * last, so a chunk's outputs of a token are whole 64-byte lines (the out stride is a multiple of 64).
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
   * x's rows as a quantized matmul's input: the activation records of the matrix's format (kernels.wat
   * `quantize`), made once per activation and format in its arena (q/k/v and gate/up share theirs).
   */
  const quantizedInput = (arena: Arena, x: SimdActivation, l: MatrixLayout): { readonly at: number; readonly stride: number } => {
    const format = activationFormat[l.storage as QuantStorage]
    const P = l.tiles * QTILE
    const stride = activationRecordBytes(format, P)
    let byFormat = arena.quantized.get(x)
    const known = byFormat?.get(format)
    if (known !== undefined) return { at: known, stride }
    const at = arena.alloc(x.rows * stride)
    // l.cols (a whole number of blocks) may pass x.cols (a gathered Q8_0 matrix pads its kept columns
    // to 32): x's padding columns are zeros up to its stride
    let src = x.address
    let srcStride = x.stride
    if (x.stride < l.cols) {
      ;[src] = rt.scratch([x.rows * l.cols * 4])
      srcStride = l.cols
      for (let t = 0; t < x.rows; t++) {
        rt.f32.copyWithin(src! / 4 + t * l.cols, x.address / 4 + t * x.stride, x.address / 4 + t * x.stride + x.cols)
        rt.f32.fill(0, src! / 4 + t * l.cols + x.cols, src! / 4 + (t + 1) * l.cols)
      }
    }
    // tokens in chunks over all threads (a prefill quantizes thousands of rows per matmul input)
    const perChunk = Math.max(1, Math.ceil(x.rows / (4 * threads)))
    rt.run(OP_QUANTIZE, Math.ceil(x.rows / perChunk), [src!, srcStride * 4, x.rows, l.cols, P, at, stride, format, perChunk])
    if (byFormat === undefined) arena.quantized.set(x, (byFormat = new Map()))
    byFormat.set(format, at)
    return { at, stride }
  }

  /** out (T, n) = x · W[rows]ᵀ for rows 0..n-1 (no selection) or the selection's: one job, chunks of rows. */
  const rowsProduct = (arena: Arena, w: Matrix, x: SimdActivation, sel: SimdSelection | undefined): SimdActivation => {
    const { layout: l, address } = w as SimdMatrix
    const n = sel ? sel.count : l.rows
    const T = x.rows
    const out = activation(arena, T, n)
    if (n === 0) return out
    const n4 = roundUp(n, 4)
    const bounds = chunkBounds(l, n4)
    if (isQuantStorage(l.storage)) {
      // the records first: the arena may allocate, and scratch lies above every allocation
      const q = quantizedInput(arena, x, l)
      const [boundsAt] = rt.scratch([bounds.length * 4])
      rt.i32.set(bounds, boundsAt! / 4)
      const args = [storageCode[l.storage], address, q.at, out.address, n4, boundsAt!, l.tiles, T, q.stride, out.stride * 4, sel ? sel.address : 0, blockRows(l, n4, T), address + l.scalesAt, l.scaleRowBytes]
      rt.run(OP_MATMUL, bounds.length - 1, args)
      zeroPadding(out)
      return out
    }
    const [boundsAt, copyAt] = rt.scratch([bounds.length * 4, tilesBytes(x, l.tiles)])
    const xAt = asTiles(x, l.tiles, copyAt)
    rt.i32.set(bounds, boundsAt! / 4)
    const args = [storageCode[l.storage], address, xAt, out.address, n4, boundsAt!, l.tiles, T, l.tiles * TILE * 4, out.stride * 4, sel ? sel.address : 0, blockRows(l, n4, T)]
    rt.run(OP_MATMUL, bounds.length - 1, args)
    zeroPadding(out) // outputs n..n4 of a selection's padding rows, or of zero matrix rows
    return out
  }

  const matmul: KernelsShape["matmul"] = (w, x, bias) =>
    scoped("matmul", (arena) => {
      const out = rowsProduct(arena, w, act(x), undefined)
      if (bias !== undefined) {
        // the bias, one f32 rounding per element (the reference's order: product sum, then + bias)
        const b = rt.f32.subarray((bias as SimdVector).address / 4, (bias as SimdVector).address / 4 + bias.length)
        const f32 = rt.f32
        for (let t = 0; t < out.rows; t++) {
          const o = out.address / 4 + t * out.stride
          for (let i = 0; i < out.cols; i++) f32[o + i] = f32[o + i]! + b[i]!
        }
      }
      return out as Activation
    })

  const matmulRows: KernelsShape["matmulRows"] = (w, x, rows) => scoped("matmulRows", (arena) => rowsProduct(arena, w, act(x), rows as SimdSelection) as Activation)

  const matmulTransposedRows: KernelsShape["matmulTransposedRows"] = (wT, h, rows) =>
    scoped("matmulTransposedRows", (arena) => {
      const { layout: l, address, transposeOf } = wT as SimdMatrix
      const sel = rows as SimdSelection
      const hb = act(h)
      const n = sel.count
      const T = hb.rows
      if (transposeOf !== undefined) {
        // quantized W (D, F) kept as it is: out = W · h with h scattered to its F columns (exact zeros elsewhere)
        const F = transposeOf.layout.cols
        const full = activation(arena, T, F)
        const idx = rt.i32.subarray(sel.address / 4, sel.address / 4 + n)
        for (let t = 0; t < T; t++) {
          const row = full.address / 4 + t * full.stride
          rt.f32.fill(0, row, row + F)
          for (let i = 0; i < n; i++) rt.f32[row + idx[i]!] = rt.f32[hb.address / 4 + t * hb.stride + i]!
        }
        return rowsProduct(arena, transposeOf, full, undefined) as Activation
      }
      const out = activation(arena, T, l.cols, l.tiles * TILE)
      rt.f32.fill(0, out.address / 4, out.address / 4 + T * out.stride)
      if (n === 0) return out as Activation
      // the kernel reads h packed (T, n)
      let hAt = hb.address
      if (hb.stride !== n) {
        ;[hAt] = rt.scratch([T * n * 4])
        for (let t = 0; t < T; t++) rt.f32.copyWithin(hAt! / 4 + t * n, hb.address / 4 + t * hb.stride, hb.address / 4 + t * hb.stride + n)
      }
      const tilesPerChunk = Math.max(1, Math.ceil(l.tiles / (4 * threads)))
      rt.run(OP_TRANSPOSED, Math.ceil(l.tiles / tilesPerChunk), [storageCode[l.storage], address, hAt!, out.address, n, sel.address, l.tiles, T, tilesPerChunk])
      zeroPadding(out)
      return out as Activation
    })

  // ---- per-row ops ----

  const embedding: KernelsShape["embedding"] = (table, inp) =>
    scoped("embedding", (arena) => {
      const { layout: l, address } = table as SimdMatrix
      const { tokens } = inp as SimdInput
      const out = activation(arena, tokens.length, l.cols)
      const packed = rt.u8.subarray(address, address + l.bytes)
      tokens.forEach((id, t) => unpackRow(packed, l, id, rt.f32.subarray(out.address / 4 + t * out.stride, out.address / 4 + t * out.stride + l.cols)))
      return out as Activation
    })

  const slice: KernelsShape["slice"] = (x, start, count) =>
    Effect.sync(() => {
      const a = act(x)
      return { rows: count, cols: a.cols, stride: a.stride, address: a.address + start * a.stride * 4 } as SimdActivation as Activation
    })

  const rmsnorm: KernelsShape["rmsnorm"] = (x, weight, eps) =>
    scoped("rmsnorm", (arena) => {
      const a = act(x)
      const out = activation(arena, a.rows, a.cols, a.stride)
      const w = (weight as SimdVector).address
      for (let t = 0; t < a.rows; t++) rt.exports.rmsnorm(a.address + t * a.stride * 4, w, out.address + t * out.stride * 4, a.cols, eps)
      return out as Activation
    })

  const rope: KernelsShape["rope"] = (x, heads, headDim, inp, invFreq) =>
    scoped("rope", (arena) => {
      const a = act(x)
      const { positions } = inp as SimdInput
      const out = activation(arena, a.rows, a.cols, a.stride)
      const table = ropeTable(invFreq, Math.max(...positions) + 1)
      for (let t = 0; t < a.rows; t++)
        rt.exports.rope(a.address + t * a.stride * 4, out.address + t * out.stride * 4, heads, headDim, table + positions[t]! * headDim * 8)
      return out as Activation
    })

  const accumulate: KernelsShape["accumulate"] = (x, y) =>
    attempt("accumulate", () => {
      const a = act(x)
      const b = act(y)
      // x ← x + y in place (the wasm add reads each lane before writing it)
      if (a.stride === b.stride) rt.exports.add(a.address, b.address, a.address, a.rows * a.stride)
      else for (let t = 0; t < a.rows; t++) rt.exports.add(a.address + t * a.stride * 4, b.address + t * b.stride * 4, a.address + t * a.stride * 4, roundUp(a.cols, 4))
      zeroPadding(a)
    })

  const swiglu: KernelsShape["swiglu"] = (gate, up) =>
    scoped("swiglu", (arena) => {
      const g = act(gate)
      const u = act(up)
      const out = activation(arena, g.rows, g.cols, g.stride)
      // padding: silu(0)·0 = 0
      rt.exports.swiglu(g.address, u.address, out.address, g.rows * g.stride)
      return out as Activation
    })

  const swigluRows: KernelsShape["swigluRows"] = (gate, up, rows) =>
    scoped("swigluRows", (arena) => {
      const g = act(gate)
      const u = act(up)
      const sel = rows as SimdSelection
      const n = sel.count
      const T = g.rows
      const out = activation(arena, T, n, n) // packed: matmulTransposedRows reads (T, n)
      if (n === 0) return out as Activation
      const n4 = roundUp(n, 4)
      const [gAt] = rt.scratch([n4 * 4])
      const f32 = rt.f32
      const idx = rt.i32.subarray(sel.address / 4, sel.address / 4 + n)
      for (let t = 0; t < T; t++) {
        const row = g.address / 4 + t * g.stride
        for (let i = 0; i < n; i++) f32[gAt! / 4 + i] = f32[row + idx[i]!]!
        f32.fill(0, gAt! / 4 + n, gAt! / 4 + n4)
        // rows are written in order: a row's 4-wide tail past n is overwritten by the next row
        rt.exports.swiglu(gAt!, u.address + t * u.stride * 4, out.address + t * n * 4, n4)
      }
      return out as Activation
    })

  // ---- attention ----

  const attention: KernelsShape["attention"] = (q, kv, layer, inp, dims) =>
    scoped("attention", (arena) => {
      const { numHeads: H, numKeyValueHeads: Hkv, headDim: Dh } = dims
      const store = kv as SimdKv
      const i = inp as SimdInput
      const qa = act(q)
      const T = qa.rows
      const S = i.kvLength
      const dh4 = store.dh4
      const spad = roundUp(S, 4)
      const out = activation(arena, T, H * Dh)
      const scaleBits = new Int32Array(Float32Array.of(1 / Math.sqrt(Dh)).buffer)[0]!
      // queries in blocks of tokens: one job has at most MAX_CHUNKS (token, head) items, and the block's
      // scores (tb·H·S floats) stay within 32 MiB of scratch (a long prefill attends in several jobs)
      const tb = Math.min(T, Math.max(1, Math.floor(MAX_CHUNKS / H), 1), Math.max(1, Math.floor((32 << 20) / (H * roundUp(S, 4) * 4))))
      const kAt = store.address + layer * 2 * store.capacity * store.slotBytes
      const vAt = kAt + store.capacity * store.slotBytes
      // heads padded to 4 floats (odd head dims): q and out go through packed copies in scratch
      const padded = dh4 !== Dh
      const [sAt, qAt, oAt] = rt.scratch([tb * H * spad * 4, padded ? tb * H * dh4 * 4 : 0, padded ? tb * H * dh4 * 4 : 0])
      for (let t0 = 0; t0 < T; t0 += tb) {
        const Tb = Math.min(tb, T - t0)
        let qBase = qa.address + t0 * qa.stride * 4
        let oBase = out.address + t0 * out.stride * 4
        let qStride = qa.stride * 4
        let oStride = out.stride * 4
        if (padded) {
          for (let t = 0; t < Tb; t++)
            for (let h = 0; h < H; h++) {
              const dst = qAt! / 4 + (t * H + h) * dh4
              rt.f32.copyWithin(dst, qa.address / 4 + (t0 + t) * qa.stride + h * Dh, qa.address / 4 + (t0 + t) * qa.stride + (h + 1) * Dh)
              rt.f32.fill(0, dst + Dh, dst + dh4)
            }
          qBase = qAt!
          oBase = oAt!
          qStride = oStride = H * dh4 * 4
        }
        const mask = i.maskAt === 0 ? 0 : i.maskAt + t0 * S
        // heads per item: the whole group sharing a KV head (each key slot loaded once for all of them), unless
        // that leaves fewer than two items per thread: then the largest divisor of the group that does not
        const group = H / Hkv
        let G = group
        while (G > 1 && (Tb * H) / G < 2 * threads) {
          G--
          while (group % G !== 0) G--
        }
        rt.run(OP_ATTENTION, (Tb * H) / G, [qBase, kAt, vAt, oBase, sAt!, i.positionsAt + t0 * 4, H, group, dh4, dh4 * 4, scaleBits, spad, mask, S, qStride, oStride, G, store.capacity * dh4 * 4])
        if (padded)
          for (let t = 0; t < Tb; t++)
            for (let h = 0; h < H; h++)
              rt.f32.copyWithin(out.address / 4 + (t0 + t) * out.stride + h * Dh, oAt! / 4 + (t * H + h) * dh4, oAt! / 4 + (t * H + h) * dh4 + Dh)
      }
      zeroPadding(out)
      return out as Activation
    })

  // ---- sparsity (TS on views of the wasm memory, float64 like reference/select.ts) ----

  const selectNeurons: KernelsShape["selectNeurons"] = (gate, rule: NeuronRule) =>
    scoped("selectNeurons", (arena) => {
      const g = act(gate)
      const F = g.cols
      const scores = new Float64Array(F)
      const f32 = rt.f32
      for (let t = 0; t < g.rows; t++) {
        const row = g.address / 4 + t * g.stride
        for (let j = 0; j < F; j++) scores[j] = scores[j]! + Math.abs(silu(f32[row + j]!))
      }
      if (rule._tag === "Threshold") for (let j = 0; j < F; j++) scores[j] = scores[j]! / g.rows
      const rows = rule._tag === "TopK" ? topK(scores, rule.count) : aboveThreshold(scores, rule.threshold)
      return writeSelection(arena, rows, F) as Selection
    })

  const neuronStatistic: KernelsShape["neuronStatistic"] = (hb) =>
    scoped("neuronStatistic", (arena) => {
      const z = act(hb)
      const F = z.cols
      const s = new Float64Array(F)
      const f32 = rt.f32
      for (let t = 0; t < z.rows; t++) {
        const row = z.address / 4 + t * z.stride
        let norm = 0
        for (let j = 0; j < F; j++) norm += f32[row + j]! ** 2
        norm = Math.sqrt(norm)
        if (norm === 0) continue
        for (let j = 0; j < F; j++) s[j] = s[j]! + (f32[row + j]! / norm) ** 2
      }
      const out = activation(arena, 1, F)
      for (let j = 0; j < F; j++) rt.f32[out.address / 4 + j] = Math.sqrt(s[j]!)
      return out as Activation
    })

  // ---- the KV cache ----

  const kvStore: KernelsShape["kvStore"] = (layers, numKeyValueHeads, headDim, capacity) =>
    Effect.acquireRelease(
      attempt("kvStore", (): SimdKv => {
        const dh4 = roundUp(headDim, 4)
        const slotBytes = numKeyValueHeads * dh4 * 4
        // not zeroed: attention reads only slots a forward pass has written (kvLength); head padding is
        // written with every slot
        const address = rt.alloc(layers * 2 * capacity * slotBytes, { zeroed: false })
        return { layers, numKeyValueHeads, headDim, kvDim: numKeyValueHeads * headDim, capacity, address, dh4, slotBytes }
      }),
      (kv) => Effect.sync(() => rt.free(kv.address))
    )

  /** f32 index of KV head h's slot s in layer l's keys (which = 0) or values (1). */
  const slotAt = (kv: SimdKv, layer: number, which: 0 | 1, h: number, slot: number): number =>
    (kv.address + (layer * 2 + which) * kv.capacity * kv.slotBytes) / 4 + (h * kv.capacity + slot) * kv.dh4

  const kvWrite: KernelsShape["kvWrite"] = (store, layer, start, k, v) =>
    attempt("kvWrite", () => {
      const kv = store as SimdKv
      const f32 = rt.f32
      for (const [which, x] of [[0, act(k)], [1, act(v)]] as const)
        for (let t = 0; t < x.rows; t++) {
          const src = x.address / 4 + t * x.stride
          for (let h = 0; h < kv.numKeyValueHeads; h++) {
            const dst = slotAt(kv, layer, which, h, start + t)
            f32.copyWithin(dst, src + h * kv.headDim, src + (h + 1) * kv.headDim)
            if (kv.dh4 !== kv.headDim) f32.fill(0, dst + kv.headDim, dst + kv.dh4)
          }
        }
    })

  const kvCompact: KernelsShape["kvCompact"] = (store, from, start) =>
    attempt("kvCompact", () => {
      const kv = store as SimdKv
      const n = kv.dh4
      const [tmp] = rt.scratch([from.length * n * 4])
      const f32 = rt.f32
      for (let l = 0; l < kv.layers; l++)
        for (const which of [0, 1] as const)
          for (let h = 0; h < kv.numKeyValueHeads; h++) {
            // sources first (a source may be a later destination)
            from.forEach((s, i) => f32.copyWithin(tmp! / 4 + i * n, slotAt(kv, l, which, h, s), slotAt(kv, l, which, h, s) + n))
            f32.copyWithin(slotAt(kv, l, which, h, start), tmp! / 4, tmp! / 4 + from.length * n)
          }
    })

  const kvRead: KernelsShape["kvRead"] = (store, layer, length) =>
    attempt("kvRead", () => {
      const kv = store as SimdKv
      const out = (which: 0 | 1) => {
        const a = new Float32Array(length * kv.kvDim)
        for (let s = 0; s < length; s++)
          for (let h = 0; h < kv.numKeyValueHeads; h++) {
            const src = slotAt(kv, layer, which, h, s)
            a.set(rt.f32.subarray(src, src + kv.headDim), s * kv.kvDim + h * kv.headDim)
          }
        return a
      }
      rt.traffic.fromWasm += 2 * length * kv.kvDim * 4
      return { keys: out(0), values: out(1) }
    })

  return {
    get name() {
      return name()
    },
    runtime: rt,
    admit,
    matrix,
    vector,
    gather,
    input,
    upload,
    read,
    selection,
    count: (s) => Effect.succeed((s as SimdSelection).count),
    embedding,
    slice,
    rmsnorm,
    matmul,
    matmulRows,
    matmulTransposedRows,
    transposed,
    rope,
    attention,
    swiglu,
    swigluRows,
    accumulate,
    selectNeurons,
    neuronStatistic,
    kvStore,
    kvWrite,
    kvCompact,
    kvRead,
    memory: () => ({ usedBytes: rt.allocatedBytes, limitBytes: rt.options.maxBytes })
  }
}
