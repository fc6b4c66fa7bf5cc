/**
 * The gpu pipeline: the Kernels interface natively on gpu.js, with everything a forward pass touches on the
 * device (the default on WebGPU, WebGL2, WebGL and headless-gl).
 *
 * Every op is a gpu.js kernel built with `pipeline: true, immutable: true`: its output is a fresh device
 * buffer (a WebGPU storage buffer, a GL texture) that the next kernel takes as an argument. So:
 *   - weights are uploaded once (`matrix`, `vector`) and passed to kernels as arguments, which bind them
 *     without a copy; kernels are compiled per shape, not per weight, and a weight is stored once whatever
 *     reads it (dense, row-sparse, gathered);
 *   - activations belong to the scope that made them (as in simd's arena: the forward pass, or one of its
 *     layers) and are released when it closes; the residual stream's `accumulate` swaps in a fresh buffer
 *     (gpu.js has no in-place writes; one launch, as an add);
 *   - the KV cache is two device buffers per layer (gpu/device/kv.ts: a write re-emits the layer's buffer on
 *     the device, gpu.js having no partial writes);
 *   - fine sparsity's selection, the GRIFFIN statistic and coarse sparsity's gather run on the device;
 *   - per forward pass the host uploads one buffer (`input`: tokens, positions and the tree mask) and reads
 *     one back (`read`: the logits). `runtime.traffic` counts every transfer and launch, per forward pass.
 *
 * What gpu.js cannot do on the device, and what it costs instead (measured in the README):
 *   - partial writes: a KV write re-emits the layer's whole buffer (capacity slots, read and written);
 *   - a data-dependent output size: a fine-threshold selection's count is read back (4 bytes) when the host
 *     needs the selection's shape (Kernels.count; Forward reads it for the tally every sparse forward);
 *   - reading part of a buffer: a readback reads the whole buffer (`read` gets exactly the logits; kvRead
 *     reads the layer's capacity and keeps `length` slots);
 *   - storage types other than f32: bf16, f16 and quantized weights are widened to f32 on upload (twice a
 *     bf16 model's bytes per token);
 *   - indexing past 2²⁴ with a float: indices that come from data (tokens, selections, positions) are
 *     exact floats below 2²⁴, and every buffer is indexed by (row, column), so gpu.js computes the offset in
 *     integers;
 *   - per-launch parameters: each launch writes its sizes and scalars (a WebGPU uniform buffer, GL
 *     uniforms; tens of bytes), not counted as uploads.
 * Index lists that come from the host are uploaded once when made (coarse gather indices per request; a
 * tree's compaction slots per verification; `selection`), counted as resident uploads.
 *
 * Not here: the kernel bodies (gpu/device/), the gpu.js instance and transfers (GpuRuntime.ts), the
 * host path (index.ts, through reference/host.ts's fromHost).
 */
import { Effect, Scope } from "effect"
import {
  type Activation,
  type ForwardInput,
  KernelError,
  type KernelsShape,
  type KvStore,
  type Matrix,
  type Selection,
  type Vector
} from "../src/Kernels.ts"
import { type RawTensor, toFloat32, widenQuantized } from "../src/Tensor.ts"
import { attention as attentionOp } from "./device/attention.ts"
import { add, embedding as embeddingOp, slice as sliceOp, swiglu, swigluRows, zeros } from "./device/elementwise.ts"
import { gather as gatherOp } from "./device/gather.ts"
import { compact as kvCompactOp, write as kvWriteOp } from "./device/kv.ts"
import { matmul as matmulOp, matmulRows as matmulRowsOp, matmulTransposedRows as matmulTransposedRowsOp } from "./device/matmul.ts"
import { rmsnorm as rmsnormOp } from "./device/rmsnorm.ts"
import { rope as ropeOp, ropeTable } from "./device/rope.ts"
import { neuronStatistic as neuronStatisticOp, selectNeurons as selectNeuronsOp } from "./device/select.ts"
import type { GpuRuntime } from "./GpuRuntime.ts"
import * as Traffic from "./Traffic.ts"
import type { DeviceBuffer } from "./types.ts"

interface PMatrix extends Matrix {
  readonly buffer: DeviceBuffer
}
interface PVector extends Vector {
  readonly buffer: DeviceBuffer
}
/** An activation (rows, cols) on the device; no buffer when cols = 0 (an empty selection's rows). */
interface PActivation extends Activation {
  /** Replaced by `accumulate` (gpu.js cannot write in place): the arena's entry is swapped with it. */
  buffer: DeviceBuffer | undefined
  /** The scope's arena that owns the buffer. */
  readonly arena: Arena
  /** The forward pass it belongs to (its inputs' pass), charged with what is done to it. */
  readonly forward: Traffic.ForwardTraffic | undefined
}
interface PSelection extends Selection {
  readonly indices: DeviceBuffer | undefined
  /** Known on the host, or a [1, 1] device buffer until read. */
  count: number | DeviceBuffer
  readonly forward: Traffic.ForwardTraffic | undefined
}
interface PInput extends ForwardInput {
  /** [2T + T·kvLength?, 1]: tokens, positions, then the tree mask when there is one. */
  readonly buffer: DeviceBuffer
  readonly masked: boolean
  readonly maxPosition: number
  readonly forward: Traffic.ForwardTraffic
}
interface PKv extends KvStore {
  /** Per layer a [kvDim, capacity] buffer, replaced by every write. */
  readonly keys: Array<DeviceBuffer>
  readonly values: Array<DeviceBuffer>
}

/**
 * What a scope's ops allocated (released when it closes), and the forward pass it is, if `input` ran there.
 * A forward pass's inner scopes (Forward.ts: one per layer) have arenas of their own; their work is charged
 * to the pass through the data: an op's record is its first argument's (an activation's or the input's).
 */
interface Arena {
  readonly buffers: Array<DeviceBuffer>
  forward: Traffic.ForwardTraffic | undefined
}

/**
 * The Kernels interface on a runtime, natively on the device.
 *
 * @category constructors
 */
export const pipelineKernels = (rt: GpuRuntime, name: string): KernelsShape => {
  const arenas = new WeakMap<Scope.Scope, Arena>()
  /** A tied lm_head is the embedding's very RawTensor: upload it once. */
  const uploaded = new WeakMap<RawTensor, PMatrix>()
  const ropeTables = new WeakMap<Float32Array, { buffer: DeviceBuffer; count: number }>()

  const arenaOf: Effect.Effect<Arena, never, Scope.Scope> = Effect.flatMap(Effect.scope, (scope) => {
    const known = arenas.get(scope)
    if (known !== undefined) return Effect.succeed(known)
    const arena: Arena = { buffers: [], forward: undefined }
    arenas.set(scope, arena)
    return Effect.as(
      Scope.addFinalizer(
        scope,
        Effect.sync(() => {
          arena.buffers.forEach(rt.release)
          arena.buffers.length = 0
        })
      ),
      arena
    )
  })
  /** Run `f` with the current scope's arena; the buffers it returns are the arena's (released with it). */
  const scoped = <A>(f: (arena: Arena) => Effect.Effect<A, KernelError>, own: (a: A) => ReadonlyArray<DeviceBuffer | undefined>): Effect.Effect<A, KernelError, Scope.Scope> =>
    Effect.flatMap(arenaOf, (arena) =>
      Effect.tap(f(arena), (a) =>
        Effect.sync(() => {
          for (const b of own(a)) if (b !== undefined) arena.buffers.push(b)
        })
      )
    )
  /** The forward record an op is charged to: its first argument's, else its scope's. */
  const forwardOf = (from: Activation | ForwardInput | undefined, arena: Arena): Traffic.ForwardTraffic | undefined =>
    (from as PActivation | PInput | undefined)?.forward ?? arena.forward
  /** An op producing an activation (rows, cols) in the current scope, charged to `from`'s forward pass. */
  const op = (
    from: Activation | ForwardInput | undefined,
    rows: number,
    cols: number,
    make: (forward: Traffic.Counts | undefined) => Effect.Effect<DeviceBuffer, KernelError>
  ): Effect.Effect<Activation, KernelError, Scope.Scope> =>
    Effect.flatMap(arenaOf, (arena) => {
      const forward = forwardOf(from, arena)
      return scoped(() => Effect.map(make(forward), (buffer): PActivation => ({ rows, cols, buffer, arena, forward })), (a) => [a.buffer])
    })
  const empty = (from: Activation | ForwardInput | undefined, rows: number): Effect.Effect<Activation, never, Scope.Scope> =>
    Effect.map(arenaOf, (arena): PActivation => ({ rows, cols: 0, buffer: undefined, arena, forward: forwardOf(from, arena) }))

  const buf = (x: Activation): DeviceBuffer => (x as PActivation).buffer!
  const fail = (op: string, message: string) => new KernelError({ op, backend: name, message })

  /** The number of neurons a selection holds: read back once (4 bytes) when only the device knows it. */
  const countOf = (s: Selection): Effect.Effect<number, KernelError> => {
    const sel = s as PSelection
    if (typeof sel.count === "number") return Effect.succeed(sel.count)
    return Effect.map(rt.readback("count", sel.count, sel.forward), (values) => {
      const n = Math.round(values[0]!)
      sel.count = n
      return n
    })
  }

  /** The RoPE table covering positions 0..needed-1 (uploaded once, doubled when outgrown). */
  const ropeTableFor = (invFreq: Float32Array, needed: number, forward: Traffic.Counts | undefined): Effect.Effect<DeviceBuffer, KernelError> => {
    const known = ropeTables.get(invFreq)
    if (known !== undefined && known.count >= needed) return Effect.succeed(known.buffer)
    const count = Math.max(needed, 2 * (known?.count ?? 0), 256)
    return Effect.map(rt.upload("rope", ropeTable(invFreq, count), 2 * invFreq.length, count, "resident", forward), (buffer) => {
      if (known !== undefined) rt.release(known.buffer)
      ropeTables.set(invFreq, { buffer, count })
      return buffer
    })
  }

  const matrix: KernelsShape["matrix"] = (raw) => {
    const known = uploaded.get(raw)
    if (known !== undefined) return Effect.succeed(known)
    const [rows, cols] = raw.shape as [number, number]
    // gpu.js stores f32 only: bf16, f16 and quantized weights are widened exactly
    return Effect.map(rt.upload("matrix", toFloat32(widenQuantized(raw)), cols, rows, "resident"), (buffer): PMatrix => {
      const m: PMatrix = { rows, cols, bytes: buffer.bytes, buffer }
      uploaded.set(raw, m)
      return m
    })
  }

  const kernels: KernelsShape = {
    name,
    matrix,
    vector: (t) => {
      const values = toFloat32(t)
      return Effect.map(rt.upload("vector", values, values.length, 1, "resident"), (buffer): PVector => ({ length: values.length, buffer }))
    },
    gather: (w, indices, axis) =>
      Effect.acquireRelease(
        Effect.gen(function* () {
          const m = w as PMatrix
          const idx = yield* rt.upload("gather", Float32Array.from(indices), indices.length, 1, "resident")
          const buffer = yield* Effect.ensuring(gatherOp(rt, m.buffer, m.rows, m.cols, idx, indices.length, axis), Effect.sync(() => rt.release(idx)))
          const [rows, cols] = axis === "rows" ? [indices.length, m.cols] : [m.rows, indices.length]
          return { rows, cols, bytes: buffer.bytes, buffer } satisfies PMatrix as Matrix
        }),
        (m) => Effect.sync(() => rt.release((m as PMatrix).buffer))
      ),

    input: (tokens, positions, kvLength, mask) =>
      Effect.flatMap(arenaOf, (arena) => {
        const T = tokens.length
        // one buffer, one upload: tokens, positions, then the (T, kvLength) mask of a tree step
        const packed = new Float32Array(2 * T + (mask === undefined ? 0 : T * kvLength))
        packed.set(tokens)
        packed.set(positions, T)
        if (mask !== undefined) packed.set(mask.subarray(0, T * kvLength), 2 * T)
        const forward = Traffic.beginForward(rt.traffic, T)
        arena.forward = forward
        return scoped(
          () =>
            Effect.map(rt.upload("input", packed, packed.length, 1, "input", forward), (buffer): PInput => ({
              T,
              kvLength,
              buffer,
              masked: mask !== undefined,
              maxPosition: Math.max(...positions),
              forward
            })),
          (i) => [i.buffer]
        )
      }),
    upload: (values, rows, cols) => (cols === 0 ? empty(undefined, rows) : op(undefined, rows, cols, (forward) => rt.upload("upload", values, cols, rows, "input", forward))),
    read: (x) => {
      const a = x as PActivation
      return a.buffer === undefined ? Effect.succeed(new Float32Array(0)) : rt.readback("read", a.buffer, a.forward)
    },
    selection: (indices) =>
      Effect.flatMap(arenaOf, (arena) =>
        indices.length === 0
          ? Effect.succeed({ capacity: 0, indices: undefined, count: 0, forward: arena.forward } satisfies PSelection as Selection)
          : scoped(
              () =>
                Effect.map(rt.upload("selection", Float32Array.from(indices), indices.length, 1, "resident", arena.forward), (b): PSelection => ({
                  capacity: indices.length,
                  indices: b,
                  count: indices.length,
                  forward: arena.forward
                })),
              (s) => [s.indices]
            )
      ),
    count: countOf,

    embedding: (table, input) => op(input, input.T, table.cols, (forward) => embeddingOp(rt, (table as PMatrix).buffer, table.cols, (input as PInput).buffer, input.T, forward)),
    slice: (x, start, count) =>
      // the whole activation is itself (a decode step's "last" row); otherwise a copy of the rows
      start === 0 && count === x.rows ? Effect.succeed(x) : op(x, count, x.cols, (forward) => sliceOp(rt, buf(x), x.cols, start, count, forward)),
    rmsnorm: (x, weight, eps) => op(x, x.rows, x.cols, (forward) => rmsnormOp(rt, buf(x), (weight as PVector).buffer, x.rows, x.cols, eps, forward)),
    matmul: (w, x, bias) =>
      op(x, x.rows, w.rows, (forward) => matmulOp(rt, (w as PMatrix).buffer, w.rows, w.cols, buf(x), x.rows, bias === undefined ? undefined : (bias as PVector).buffer, forward)),
    matmulRows: (w, x, rows) =>
      Effect.flatMap(countOf(rows), (n) =>
        n === 0 ? empty(x, x.rows) : op(x, x.rows, n, (forward) => matmulRowsOp(rt, (w as PMatrix).buffer, w.cols, buf(x), x.rows, (rows as PSelection).indices!, n, forward))
      ),
    matmulTransposedRows: (wT, h, rows) =>
      Effect.flatMap(countOf(rows), (n) =>
        op(h, h.rows, wT.cols, (forward) =>
          n === 0
            ? zeros(rt, "matmulTransposedRows", h.rows, wT.cols, forward)
            : matmulTransposedRowsOp(rt, (wT as PMatrix).buffer, wT.rows, wT.cols, buf(h), h.rows, (rows as PSelection).indices!, n, forward)
        )
      ),
    rope: (x, heads, headDim, input, invFreq) =>
      op(x, x.rows, x.cols, (forward) =>
        Effect.flatMap(ropeTableFor(invFreq, (input as PInput).maxPosition + 1, forward), (table) => ropeOp(rt, buf(x), x.rows, heads, headDim, (input as PInput).buffer, table, forward))
      ),
    attention: (q, kv, layer, input, dims) => {
      const store = kv as PKv
      const i = input as PInput
      return op(q, q.rows, dims.numHeads * dims.headDim, (forward) =>
        attentionOp(rt, buf(q), store.keys[layer]!, store.values[layer]!, i.buffer, {
          T: i.T,
          S: i.kvLength,
          H: dims.numHeads,
          Hkv: dims.numKeyValueHeads,
          Dh: dims.headDim,
          masked: i.masked
        }, forward)
      )
    },
    swiglu: (gate, up) => op(gate, gate.rows, gate.cols, (forward) => swiglu(rt, buf(gate), buf(up), gate.rows, gate.cols, forward)),
    swigluRows: (gate, up, rows) =>
      Effect.flatMap(countOf(rows), (n) => (n === 0 ? empty(gate, gate.rows) : op(gate, gate.rows, n, (forward) => swigluRows(rt, buf(gate), buf(up), (rows as PSelection).indices!, gate.rows, n, forward)))),
    // gpu.js cannot write in place: x + y goes to a fresh buffer, which replaces x's in x's own arena (so the
    // residual stream outlives the layer scope that computed y), and x's old buffer is released
    accumulate: (x, y) =>
      Effect.gen(function* () {
        const a = x as PActivation
        const old = a.buffer!
        const sum = yield* add(rt, old, buf(y), a.rows, a.cols, a.forward)
        const at = a.arena.buffers.indexOf(old)
        if (at >= 0) a.arena.buffers[at] = sum
        else a.arena.buffers.push(sum)
        a.buffer = sum
        rt.release(old)
      }),

    selectNeurons: (gate, rule) =>
      Effect.flatMap(arenaOf, (arena) =>
        scoped(
          () =>
            Effect.map(selectNeuronsOp(rt, buf(gate), gate.rows, gate.cols, rule, forwardOf(gate, arena)), (s): PSelection => ({
              capacity: s.capacity,
              indices: s.indices,
              count: s.count,
              forward: forwardOf(gate, arena)
            })),
          (s) => [s.indices, typeof s.count === "number" ? undefined : s.count]
        )
      ),
    neuronStatistic: (hb) => op(hb, 1, hb.cols, (forward) => neuronStatisticOp(rt, buf(hb), hb.rows, hb.cols, forward)),

    kvStore: (layers, numKeyValueHeads, headDim, capacity) =>
      Effect.acquireRelease(
        Effect.gen(function* () {
          const kvDim = numKeyValueHeads * headDim
          const store: PKv = { layers, numKeyValueHeads, headDim, kvDim, capacity, keys: [], values: [] }
          // zeros, made on the device (nothing uploaded); attention reads only slots a forward has written
          for (let l = 0; l < layers; l++) {
            store.keys.push(yield* zeros(rt, "kvStore", capacity, kvDim))
            store.values.push(yield* zeros(rt, "kvStore", capacity, kvDim))
          }
          return store as KvStore
        }),
        (kv) => Effect.sync(() => [...(kv as PKv).keys, ...(kv as PKv).values].forEach(rt.release))
      ),
    kvWrite: (kv, layer, start, k, v) =>
      Effect.gen(function* () {
        const store = kv as PKv
        const forward = (k as PActivation).forward
        if (start + k.rows > store.capacity) return yield* fail("kvWrite", `slots ${start}..${start + k.rows - 1} exceed the capacity ${store.capacity}`)
        for (const [buffers, x] of [[store.keys, k], [store.values, v]] as const) {
          const old = buffers[layer]!
          buffers[layer] = yield* kvWriteOp(rt, old, store.kvDim, store.capacity, buf(x), start, x.rows, forward)
          rt.release(old)
        }
      }),
    kvCompact: (kv, from, start) =>
      Effect.gen(function* () {
        const store = kv as PKv
        if (from.length === 0) return
        const slots = yield* rt.upload("kvCompact", Float32Array.from(from), from.length, 1, "resident")
        yield* Effect.ensuring(
          Effect.gen(function* () {
            for (const buffers of [store.keys, store.values])
              for (let l = 0; l < store.layers; l++) {
                const old = buffers[l]!
                buffers[l] = yield* kvCompactOp(rt, old, store.kvDim, store.capacity, slots, start, from.length)
                rt.release(old)
              }
          }),
          Effect.sync(() => rt.release(slots))
        )
      }),
    kvRead: (kv, layer, length) =>
      Effect.gen(function* () {
        const store = kv as PKv
        const n = length * store.kvDim
        if (n === 0) return { keys: new Float32Array(0), values: new Float32Array(0) }
        const keys = (yield* rt.readback("kvRead", store.keys[layer]!)).slice(0, n)
        const values = (yield* rt.readback("kvRead", store.values[layer]!)).slice(0, n)
        return { keys, values }
      })
  }
  return kernels
}
