/**
 * HostKernels and `fromHost`: backends that compute on host Float32Arrays, lifted into the Kernels interface.
 *
 * A host backend implements the dense ops on plain arrays (each call takes its inputs and returns a fresh
 * output: a plain-JS backend, or gpu.js with a readback per op); `fromHost` supplies the rest of Kernels on
 * the host: activations, selections, inputs and the KV cache are host arrays, and the ops a host backend
 * does not have (fine sparsity's selection, the GRIFFIN statistic, swigluRows, biases, the KV moves) run the
 * reference code of this folder. The reference backend itself is `fromHost(referenceHost)`.
 *
 * Not here: what each op computes (the files of this folder), the device-resident backends (simd/).
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import type {
  Activation,
  AttentionDims,
  ForwardInput,
  KernelError,
  KernelsShape,
  KvStore,
  Matrix,
  NeuronRule,
  Selection,
  Vector
} from "../src/Kernels.ts"
import { type RawTensor, toFloat32 } from "../src/Tensor.ts"
import { neuronStatistic, selectNeurons } from "./select.ts"
import { swigluRows } from "./swiglu.ts"

/** Geometry of one host attention call (reference/attention.ts's dims). */
export interface AttentionShape extends AttentionDims {
  readonly T: number
  /** Number of valid KV slots in `keys`/`values`. */
  readonly kvLength: number
  readonly positions: Int32Array
  /** (T, kvLength) visibility, 1 = visible; every query sees at least one slot. */
  readonly mask?: Uint8Array | undefined
}

/** The dense ops of a backend that works on host arrays: each takes Float32Arrays with explicit dims and returns a fresh one. */
export interface HostKernelsShape {
  readonly name: string
  readonly matrix: (t: RawTensor) => Effect.Effect<Matrix, KernelError>
  readonly vector: (t: RawTensor) => Effect.Effect<Vector, KernelError>
  /** out (T, rows) = x (T, cols) · Wᵀ */
  readonly matmul: (w: Matrix, x: Float32Array, T: number) => Effect.Effect<Float32Array, KernelError>
  /** out (T, n) = x (T, cols) · W[rows]ᵀ */
  readonly matmulRows: (w: Matrix, x: Float32Array, T: number, rows: Int32Array) => Effect.Effect<Float32Array, KernelError>
  /** out (T, D) = Σ_i h[t, i] · wT[rows[i], :], wT (F, D); rows non-empty */
  readonly matmulTransposedRows: (wT: Matrix, h: Float32Array, T: number, rows: Int32Array) => Effect.Effect<Float32Array, KernelError>
  readonly gather: (w: Matrix, indices: Int32Array, axis: "rows" | "columns") => Effect.Effect<Matrix, KernelError, Scope.Scope>
  /** out (T, cols) = rows `tokens[t]` of the table */
  readonly embedding: (table: Matrix, tokens: Int32Array) => Effect.Effect<Float32Array, KernelError>
  readonly rmsnorm: (x: Float32Array, weight: Vector, T: number, eps: number) => Effect.Effect<Float32Array, KernelError>
  readonly rope: (x: Float32Array, T: number, heads: number, headDim: number, positions: Int32Array, invFreq: Float32Array) => Effect.Effect<Float32Array, KernelError>
  /** keys/values (≥ kvLength, Hkv·Dh) of one layer */
  readonly attention: (q: Float32Array, keys: Float32Array, values: Float32Array, shape: AttentionShape) => Effect.Effect<Float32Array, KernelError>
  readonly swiglu: (gate: Float32Array, up: Float32Array) => Effect.Effect<Float32Array, KernelError>
  readonly add: (a: Float32Array, b: Float32Array) => Effect.Effect<Float32Array, KernelError>
}

/** The host handles fromHost hands out. */
export interface HostActivation extends Activation {
  readonly data: Float32Array // (rows, cols)
}
export interface HostSelection extends Selection {
  readonly data: Int32Array // ascending neuron indices
}
interface HostInput extends ForwardInput {
  readonly tokens: Int32Array
  readonly positions: Int32Array
  readonly mask: Uint8Array | undefined
}
interface HostKv extends KvStore {
  readonly keys: ReadonlyArray<Float32Array> // per layer (capacity, kvDim)
  readonly values: ReadonlyArray<Float32Array>
}
/** A vector handle: the host backend's, plus its values (for the bias add fromHost does on the host). */
interface HostVector extends Vector {
  readonly handle: Vector
  readonly data: Float32Array
}

const act = (data: Float32Array, rows: number, cols: number): HostActivation => ({ rows, cols, data })
const data = (x: Activation): Float32Array => (x as HostActivation).data
const sel = (s: Selection): Int32Array => (s as HostSelection).data

/**
 * The Kernels interface over a host backend.
 *
 * @example
 * const MyKernels = { layer: Layer.succeed(Kernels, fromHost(myHostBackend)) }
 *
 * @category constructors
 */
export const fromHost = (h: HostKernelsShape): KernelsShape => {
  const map = (x: Effect.Effect<Float32Array, KernelError>, rows: number, cols: number) => Effect.map(x, (d) => act(d, rows, cols))
  return {
    get name() {
      return h.name
    },
    matrix: h.matrix,
    vector: (t) => Effect.map(h.vector(t), (handle): HostVector => ({ length: handle.length, handle, data: toFloat32(t) })),
    gather: h.gather,

    input: (tokens, positions, kvLength, mask) => Effect.succeed<HostInput>({ T: tokens.length, kvLength, tokens: tokens.slice(), positions: positions.slice(), mask: mask?.slice() }),
    upload: (values, rows, cols) => Effect.succeed(act(values.slice(0, rows * cols), rows, cols)),
    read: (x) => Effect.succeed(data(x)),
    selection: (indices) => Effect.succeed<HostSelection>({ capacity: indices.length, data: indices.slice() }),
    count: (s) => Effect.succeed(sel(s).length),

    embedding: (table, input) => map(h.embedding(table, (input as HostInput).tokens), input.T, table.cols),
    slice: (x, start, count) => Effect.succeed(act(data(x).subarray(start * x.cols, (start + count) * x.cols), count, x.cols)),
    rmsnorm: (x, w, eps) => map(h.rmsnorm(data(x), (w as HostVector).handle, x.rows, eps), x.rows, x.cols),
    matmul: (w, x, bias) =>
      map(
        bias === undefined
          ? h.matmul(w, data(x), x.rows)
          : Effect.map(h.matmul(w, data(x), x.rows), (out) => {
              const b = (bias as HostVector).data
              for (let i = 0; i < out.length; i++) out[i] = out[i]! + b[i % b.length]!
              return out
            }),
        x.rows,
        w.rows
      ),
    matmulRows: (w, x, rows) => map(sel(rows).length === 0 ? Effect.succeed(new Float32Array(0)) : h.matmulRows(w, data(x), x.rows, sel(rows)), x.rows, sel(rows).length),
    matmulTransposedRows: (wT, hb, rows) =>
      map(sel(rows).length === 0 ? Effect.succeed(new Float32Array(hb.rows * wT.cols)) : h.matmulTransposedRows(wT, data(hb), hb.rows, sel(rows)), hb.rows, wT.cols),
    rope: (x, heads, headDim, input, invFreq) => map(h.rope(data(x), x.rows, heads, headDim, (input as HostInput).positions, invFreq), x.rows, x.cols),
    attention: (q, kv, layer, input, dims) => {
      const i = input as HostInput
      const store = kv as HostKv
      return map(
        h.attention(data(q), store.keys[layer]!, store.values[layer]!, { ...dims, T: i.T, kvLength: i.kvLength, positions: i.positions, mask: i.mask }),
        q.rows,
        dims.numHeads * dims.headDim
      )
    },
    swiglu: (gate, up) => map(h.swiglu(data(gate), data(up)), gate.rows, gate.cols),
    swigluRows: (gate, up, rows) => Effect.sync(() => act(swigluRows(data(gate), gate.cols, data(up), sel(rows)), up.rows, up.cols)),
    accumulate: (x, y) => Effect.map(h.add(data(x), data(y)), (sum) => void data(x).set(sum)),

    selectNeurons: (gate, rule: NeuronRule) =>
      Effect.sync((): HostSelection => {
        const rows = selectNeurons(data(gate), gate.rows, gate.cols, rule)
        return { capacity: rows.length, data: rows }
      }),
    neuronStatistic: (hb) => Effect.sync(() => act(neuronStatistic(data(hb), hb.rows, hb.cols), 1, hb.cols)),

    kvStore: (layers, numKeyValueHeads, headDim, capacity) =>
      Effect.sync((): HostKv => ({
        layers,
        numKeyValueHeads,
        headDim,
        kvDim: numKeyValueHeads * headDim,
        capacity,
        keys: Array.from({ length: layers }, () => new Float32Array(capacity * numKeyValueHeads * headDim)),
        values: Array.from({ length: layers }, () => new Float32Array(capacity * numKeyValueHeads * headDim))
      })),
    kvWrite: (kv, layer, start, k, v) =>
      Effect.sync(() => {
        const store = kv as HostKv
        store.keys[layer]!.set(data(k), start * kv.kvDim)
        store.values[layer]!.set(data(v), start * kv.kvDim)
      }),
    kvCompact: (kv, from, start) =>
      Effect.sync(() => {
        const d = kv.kvDim
        const store = kv as HostKv
        for (const a of [...store.keys, ...store.values]) {
          const rows = Array.from(from, (s) => a.slice(s * d, (s + 1) * d))
          rows.forEach((row, i) => a.set(row, (start + i) * d))
        }
      }),
    kvRead: (kv, layer, length) =>
      Effect.sync(() => ({
        keys: (kv as HostKv).keys[layer]!.slice(0, length * kv.kvDim),
        values: (kv as HostKv).values[layer]!.slice(0, length * kv.kvDim)
      }))
  }
}
