/**
 * SimdRuntime: one shared WebAssembly.Memory, the compiled kernels module, and a pool of worker threads
 * that instantiate the same module on the same memory.
 *
 * Memory map: [0, 64 KiB) control block (layout.ts; the kernels' constants at 4096, written here) · allocations (`alloc`/`free`, first fit, never
 * moved): the weights, kept for the runtime's life, and coarse sparsity's per-request gathers · scratch,
 * re-laid above the highest allocation on every call (`scratch`). The memory grows as needed, up to
 * `maxBytes` (wasm32: at most 4 GiB).
 *
 * A job (`run`) is a kind (matmul, attention, probe), its arguments and a chunk count. The main thread
 * publishes it, wakes the workers, claims chunks itself like any worker, and returns once every chunk
 * has completed. It never waits for a worker that has not started: see `work` in kernels.wat.
 *
 * Not here: what the kernels compute (kernels.wat) and the Kernels interface (index.ts).
 */
import { Worker } from "node:worker_threads"
import { kernelsBaselineWasmBase64, kernelsRelaxedWasmBase64 } from "./kernels.wasm.ts"
import { ARGS, CLAIM, COMPLETED, CONSTANTS, constantWords, MAX_CHUNKS, NCHUNKS, OP, QUIT, SLEEPERS, STATS, WAKE, WEIGHTS_BASE } from "./layout.ts"
import { workerSource } from "./worker.ts"

const PAGE = 65536
/** wasm32's limit: 65536 pages. */
export const MAX_MEMORY_BYTES = 65536 * PAGE

export interface RuntimeOptions {
  /** Threads that run kernels: the main thread plus threads − 1 workers. */
  readonly threads: number
  /** How long an idle worker spins before it sleeps in Atomics.wait (ms). */
  readonly spinMs: number
  /** Upper bound of the memory (bytes, ≤ 4 GiB): what the address space reserves. */
  readonly maxBytes: number
}

/** Thrown when weights plus scratch would exceed the memory; the backend turns it into a KernelError. */
export class OutOfMemory extends Error {
  constructor(readonly needed: number, readonly limit: number) {
    super(`needs ${(needed / 2 ** 30).toFixed(2)} GiB of wasm memory, limit ${(limit / 2 ** 30).toFixed(2)} GiB`)
  }
}

/** The compiled kernels and which of the two binaries of build.mjs they are. */
export interface KernelsModule {
  readonly module: WebAssembly.Module
  /** The relaxed-SIMD binary (multiply-adds as f32x4.relaxed_madd); false: the baseline (mul + add). */
  readonly relaxed: boolean
  /** Why the baseline runs: the host rejects relaxed SIMD, or the relaxed binary failed its self-test. */
  readonly fallbackReason?: string
}

/**
 * One known-answer case of the relaxed probe (kernels.wat `relaxedProbe`): lanes of a, b, c and the two
 * results relaxed SIMD allows for a·b + c, fused (one rounding) or unfused (two). The values are chosen so
 * that both are exact in float64 arithmetic.
 */
export interface ProbeCase {
  readonly a: readonly [number, number, number, number]
  readonly b: readonly [number, number, number, number]
  readonly c: readonly [number, number, number, number]
  readonly fused: readonly [number, number, number, number]
  readonly unfused: readonly [number, number, number, number]
}

const e20 = Math.fround(1 + 2 ** -20)
const e19 = Math.fround(1 + 2 ** -19)

/** The self-test's cases: plain arithmetic, negative and zero lanes, and lanes where FMA differs. */
export const relaxedKnownAnswers: ReadonlyArray<ProbeCase> = [
  { a: [2, 0.5, 1.5, -3], b: [3, -4, 1.5, 0.25], c: [1, 1, 0.25, 0], fused: [7, -1, 2.5, -0.75], unfused: [7, -1, 2.5, -0.75] },
  { a: [e20, -e20, e20, 0], b: [e20, e20, -e20, 7], c: [-e19, e19, e19, -0], fused: [2 ** -40, -(2 ** -40), -(2 ** -40), 0], unfused: [0, 0, 0, 0] }
]

/**
 * One known-answer case of the relaxed int8 dot-product probe (kernels.wat `relaxedDotProbe`): a (signed
 * bytes), b (bytes in 0..127, the range the kernels give the second operand) and c (i32 lanes), and what
 * relaxed SIMD defines for those inputs (no implementation choice is left when b ≤ 127 and nothing
 * saturates): `i16x8.relaxed_dot_i8x16_i7x16_s(a, b)` lane j = a[2j]·b[2j] + a[2j+1]·b[2j+1], and
 * `i32x4.relaxed_dot_i8x16_i7x16_add_s(a, b, c)` lane i = Σ_k<4 a[4i+k]·b[4i+k] + c[i].
 */
export interface DotProbeCase {
  readonly a: ReadonlyArray<number>
  readonly b: ReadonlyArray<number>
  readonly c: readonly [number, number, number, number]
  readonly dot16: ReadonlyArray<number>
  readonly dot32: readonly [number, number, number, number]
}

/** A dot case with its answers computed here, in plain integer arithmetic. */
export const dotCase = (a: ReadonlyArray<number>, b: ReadonlyArray<number>, c: readonly [number, number, number, number]): DotProbeCase => {
  const dot16 = Array.from({ length: 8 }, (_, j) => a[2 * j]! * b[2 * j]! + a[2 * j + 1]! * b[2 * j + 1]!)
  const dot32 = c.map((ci, i) => ci + dot16[2 * i]! + dot16[2 * i + 1]!) as unknown as readonly [number, number, number, number]
  return { a, b, c, dot16, dot32 }
}

/**
 * The dot self-test's cases: the extremes the kernels meet (a = −128 and 127 against b = 127, Q4/Q6 codes
 * 0..63 against signed activations), lanes that differ so a lane mix-up shows, and random bytes (V8's
 * baseline compiler has returned twice the answer for constants and garbage for data).
 */
export const relaxedDotKnownAnswers: ReadonlyArray<DotProbeCase> = [
  dotCase([-128, -128, 127, 127, -1, 2, -3, 4, 5, -6, 7, -8, 0, 100, -100, 1], [127, 127, 127, 127, 1, 2, 3, 4, 0, 15, 63, 1, 127, 0, 64, 3], [0, 1, -1, 1 << 20]),
  dotCase(
    Array.from({ length: 16 }, (_, i) => ((i * 73 + 41) % 256) - 128),
    Array.from({ length: 16 }, (_, i) => (i * 29 + 7) % 128),
    [-7, 123456, -98765, 3]
  )
]

/**
 * Does this compiled module compute the known answers? Runs the probes on a fresh instance with its own
 * small memory (before any thread exists): every multiply-add lane must be the fused or the unfused result,
 * all lanes of all cases agreeing on which, and every int8 dot-product lane must be exact. Any trap or
 * mismatch answers false.
 */
export const passesSelfTest = (
  module: WebAssembly.Module,
  cases: ReadonlyArray<ProbeCase> = relaxedKnownAnswers,
  dotCases: ReadonlyArray<DotProbeCase> = relaxedDotKnownAnswers
): boolean => {
  try {
    const memory = new WebAssembly.Memory({ initial: 2, maximum: 2, shared: true })
    const exports = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as {
      relaxedProbe: (at: number) => void
      relaxedDotProbe: (at: number) => void
    }
    const probe = exports.relaxedProbe
    const f32 = new Float32Array(memory.buffer)
    const at = 65536 // above the control block, like any scratch
    let mode: "fused" | "unfused" | undefined
    for (const k of cases) {
      f32.set([...k.a, ...k.b, ...k.c], at / 4)
      probe(at)
      const got = Array.from(f32.subarray(at / 4 + 12, at / 4 + 16))
      const fused = got.every((v, i) => Object.is(v, k.fused[i]) || (v === 0 && k.fused[i] === 0))
      const unfused = got.every((v, i) => Object.is(v, k.unfused[i]) || (v === 0 && k.unfused[i] === 0))
      if (fused && unfused) continue
      const seen = fused ? "fused" : unfused ? "unfused" : undefined
      if (seen === undefined || (mode !== undefined && mode !== seen)) return false
      mode = seen
    }
    const i8 = new Int8Array(memory.buffer)
    const i16 = new Int16Array(memory.buffer)
    const i32 = new Int32Array(memory.buffer)
    for (const k of dotCases) {
      i8.set(k.a, at)
      i8.set(k.b, at + 16)
      i32.set(k.c, (at + 32) / 4)
      exports.relaxedDotProbe(at)
      if (!k.dot16.every((v, j) => i16[(at + 48) / 2 + j] === v)) return false
      if (!k.dot32.every((v, j) => i32[(at + 64) / 4 + j] === v)) return false
    }
    return true
  } catch {
    return false
  }
}

/**
 * Choose the binary: the relaxed one when the host validates it AND it passes the known-answer self-test
 * (multiply-adds and int8 dot products), else the baseline, with the reason. (Node ≥ 22 ships relaxed SIMD
 * on by default; validation alone is not enough: V8's baseline compiler has computed relaxed int8 dot
 * products wrongly on some versions and CPUs.) `cases` and `dotCases` let a test inject a wrong
 * expectation and see the baseline chosen.
 */
export const selectKernels = (cases: ReadonlyArray<ProbeCase> = relaxedKnownAnswers, dotCases: ReadonlyArray<DotProbeCase> = relaxedDotKnownAnswers): KernelsModule => {
  const relaxedBytes = Buffer.from(kernelsRelaxedWasmBase64, "base64")
  const baseline = (fallbackReason: string): KernelsModule => ({
    module: new WebAssembly.Module(Buffer.from(kernelsBaselineWasmBase64, "base64")),
    relaxed: false,
    fallbackReason
  })
  if (!WebAssembly.validate(relaxedBytes)) return baseline("this host does not accept relaxed SIMD")
  const module = new WebAssembly.Module(relaxedBytes)
  return passesSelfTest(module, cases, dotCases) ? { module, relaxed: true } : baseline("the relaxed-SIMD binary failed its known-answer self-test")
}

let compiled: KernelsModule | undefined
/**
 * The kernels module, chosen and compiled once per process (the compiled code is shared by every instance,
 * workers included, so every thread runs the same binary).
 */
export const kernelsModule = (): KernelsModule => (compiled ??= selectKernels())

/** madd(a, a, c) with these is 2⁻⁴⁰ when the multiply-add is fused (one rounding), 0 when it is not. */
const FMA_A = Math.fround(1 + 2 ** -20)
const FMA_C = -Math.fround(1 + 2 ** -19)

interface Exports {
  readonly work: () => number
  readonly madd: (a: number, b: number, c: number) => number
  readonly swiglu: (g: number, u: number, out: number, n4: number) => void
  readonly rmsnorm: (x: number, w: number, out: number, D: number, eps: number) => void
  readonly rope: (x: number, out: number, heads: number, headDim: number, cosSin: number) => void
  readonly add: (a: number, b: number, out: number, n4: number) => void
  readonly quantize: (x: number, xs: number, T: number, cols: number, P: number, out: number, os: number, format: number) => void
}

export class SimdRuntime {
  readonly memory: WebAssembly.Memory
  readonly exports: Exports
  readonly workers: ReadonlyArray<Worker>
  /** Bytes copied between host memory and the wasm memory by the Kernels ops (inputs in, readbacks out). */
  readonly traffic = { toWasm: 0, fromWasm: 0 }
  /** The kernels' multiply-adds are fused (relaxed SIMD accepted and lowered to FMA instructions). */
  readonly fma: boolean
  /** Which binary runs, and why the baseline when it does. */
  readonly kernels: KernelsModule
  /** Views over the whole memory, refreshed after every grow. */
  u8!: Uint8Array
  f32!: Float32Array
  i32!: Int32Array
  /**
   * Live allocations above WEIGHTS_BASE, by address, [at, end): weights (kept for the runtime's life) and
   * per-request gathers (freed with their scope). New ones go in the first gap that fits.
   */
  private blocks: Array<{ readonly at: number; readonly end: number }> = []
  /** End of everything ever used as scratch or freed: memory above it has never been written (still zero). */
  private dirty = WEIGHTS_BASE
  private seq = 0
  private mainChunks = 0
  private closed = false

  constructor(readonly options: RuntimeOptions) {
    this.memory = new WebAssembly.Memory({ initial: 2, maximum: Math.ceil(options.maxBytes / PAGE), shared: true })
    this.kernels = kernelsModule()
    const { module, relaxed } = this.kernels
    this.exports = new WebAssembly.Instance(module, { env: { memory: this.memory } }).exports as unknown as Exports
    this.fma = relaxed && this.exports.madd(FMA_A, FMA_A, FMA_C) !== 0
    this.refresh()
    const constants = constantWords()
    new Uint32Array(this.memory.buffer, CONSTANTS, constants.length).set(constants)
    Atomics.store(this.i32, CLAIM / 4, 0xffff) // closed: no job yet
    this.workers = Array.from({ length: options.threads - 1 }, (_, i) => {
      const worker = new Worker(workerSource, {
        eval: true,
        workerData: { module, memory: this.memory, index: i + 1, spinMs: options.spinMs }
      })
      worker.unref()
      return worker
    })
  }

  private refresh(): void {
    const buffer = this.memory.buffer
    this.u8 = new Uint8Array(buffer)
    this.f32 = new Float32Array(buffer)
    this.i32 = new Int32Array(buffer)
  }

  /** Make the memory at least `bytes` long (grows by ≥ 1/8 of the current size to amortise). */
  private ensure(bytes: number): void {
    if (bytes > this.options.maxBytes) throw new OutOfMemory(bytes, this.options.maxBytes)
    const have = this.memory.buffer.byteLength
    if (bytes <= have) return
    const maxPages = Math.ceil(this.options.maxBytes / PAGE)
    const want = Math.min(maxPages, Math.max(Math.ceil(bytes / PAGE), Math.ceil((have * 1.125) / PAGE)))
    this.memory.grow(want - have / PAGE)
    this.refresh()
  }

  /** End of the highest live allocation: scratch starts above it. */
  private get top(): number {
    return this.blocks.length === 0 ? WEIGHTS_BASE : this.blocks[this.blocks.length - 1]!.end
  }

  /** Bytes currently allocated (weights and live gathers). */
  get allocatedBytes(): number {
    return this.blocks.reduce((sum, b) => sum + (b.end - b.at), 0)
  }

  /**
   * Allocate `bytes` of zeroed memory (64-byte aligned) until `free`: the first gap between live blocks
   * that fits, else above them. `zeroed: false` skips the zeroing, for a caller that writes every byte. Memory that served as scratch or was freed is zeroed (matrix padding
   * must read as 0); fresh memory already is zero, and is left untouched (first touches cost ~3 ms/MB on
   * the VMs of docs/measurements.md).
   */
  alloc(bytes: number, options: { readonly zeroed: boolean } = { zeroed: true }): number {
    let at = WEIGHTS_BASE
    let slot = 0
    for (; slot < this.blocks.length; slot++) {
      if (this.blocks[slot]!.at - at >= bytes) break
      at = roundUp64(this.blocks[slot]!.end)
    }
    this.ensure(at + bytes)
    if (options.zeroed && this.dirty > at) this.u8.fill(0, at, Math.min(at + bytes, this.dirty))
    this.blocks.splice(slot, 0, { at, end: at + bytes })
    return at
  }

  /** Release an allocation made by `alloc` (its address). */
  free(at: number): void {
    const slot = this.blocks.findIndex((b) => b.at === at)
    if (slot < 0) throw new Error(`SimdRuntime: free of an unknown address ${at}`)
    this.dirty = Math.max(this.dirty, this.blocks[slot]!.end)
    this.blocks.splice(slot, 1)
  }

  /**
   * Lay out per-call scratch regions above the weights (each 64-byte aligned) and return their
   * addresses. Contents are whatever the last call left: callers write every byte they read.
   */
  scratch(sizes: ReadonlyArray<number>): Array<number> {
    let at = roundUp64(this.top)
    const out = sizes.map((size) => {
      const here = at
      at = roundUp64(at + size)
      return here
    })
    this.ensure(at)
    this.dirty = Math.max(this.dirty, at)
    return out
  }

  /**
   * Run one job on all threads and return when it has completed. `args` are i32 values (addresses above
   * 2 GiB wrap to negative, which wasm reads back as the same unsigned address).
   */
  run(op: number, chunks: number, args: ReadonlyArray<number>): void {
    if (this.closed) throw new Error("SimdRuntime: used after close")
    if (chunks <= 0) return
    if (chunks > MAX_CHUNKS) throw new Error(`SimdRuntime: ${chunks} chunks > ${MAX_CHUNKS}`)
    const ctl = this.i32
    // The previous job is closed (CLAIM index 0xffff), so nobody reads these while they change.
    ctl[OP / 4] = op
    for (let i = 0; i < args.length; i++) ctl[ARGS / 4 + i] = args[i]!
    Atomics.store(ctl, NCHUNKS / 4, chunks)
    Atomics.store(ctl, COMPLETED / 4, 0)
    this.seq = (this.seq + 1) & 0xffff
    Atomics.store(ctl, CLAIM / 4, this.seq << 16) // open: chunk 0 is next
    // A one-chunk job is the main thread's alone: waking workers would only add a contended claim.
    if (this.workers.length > 0 && chunks > 1) {
      Atomics.add(ctl, WAKE / 4, 1)
      if (Atomics.load(ctl, SLEEPERS / 4) > 0) Atomics.notify(ctl, WAKE / 4)
    }
    this.mainChunks += this.exports.work()
    // Chunks claimed by workers may still be running: spin (they finish within one chunk's time).
    while (Atomics.load(ctl, COMPLETED / 4) < chunks) {
      /* spin */
    }
    Atomics.store(ctl, CLAIM / 4, (this.seq << 16) | 0xffff) // close
  }

  /** Chunks run so far by each thread (index 0 = main thread). */
  chunkCounts(): Array<number> {
    return [this.mainChunks, ...this.workers.map((_, i) => Atomics.load(this.i32, STATS / 4 + i + 1))]
  }

  /** Stop and terminate the workers. The memory is released when the last reference goes. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    Atomics.store(this.i32, QUIT / 4, 1)
    Atomics.add(this.i32, WAKE / 4, 1)
    Atomics.notify(this.i32, WAKE / 4)
    await Promise.all(this.workers.map((w) => w.terminate()))
  }
}

const roundUp64 = (n: number): number => Math.ceil(n / 64) * 64
