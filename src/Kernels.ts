/**
 * Kernels: the one interface every compute backend implements (reference/, simd/, gpu/).
 *
 * The forward pass (Forward.ts) is written once against it. Everything a forward pass touches stays on the
 * backend: weights (made resident once, at load time, by `matrix`/`vector`), activations (`Activation`
 * handles, alive until the scope of the forward pass that made them closes), the KV cache (a `KvStore`,
 * alive for its request) and fine sparsity's neuron selections. Per forward pass the host uploads the
 * tokens and their positions (`input`) and reads back only the logits (`read`); a backend never copies an
 * activation or the cache to the host in between. Every op returns an Effect, which absorbs both the
 * synchronous backends and the asynchronous ones (WebGPU, gpu.js v3).
 *
 * Backends that compute on host Float32Arrays (a plain-JS or a gpu.js backend with per-op readback) implement
 * the smaller `HostKernels` interface of reference/host.ts and are lifted into this one by `fromHost`.
 *
 * Dims legend: T = tokens in the call, D = hidden size, H = query heads, Hkv = key/value heads, Dh = head
 * dim, F = MLP width, n = selected neurons, S = KV slots visible, V = vocab.
 *
 * Shapes are validated at the boundary (Config, Weights); kernels trust them. A shape mismatch inside a
 * kernel is a defect, not a typed error.
 */
import { Context, Schema } from "effect"
import type { Effect, Scope } from "effect"
import type { RawTensor } from "./Tensor.ts"

/** A kernel failed to compile or run on its backend (GPU loss, wasm trap, out of memory, ...). */
export class KernelError extends Schema.TaggedError<KernelError>()("KernelError", {
  op: Schema.String,
  backend: Schema.String,
  message: Schema.String
}) {}

/**
 * A backend the caller demanded cannot run here (no GPU adapter, a missing optional package, ...). Never a
 * silent fallback: `requested` names what was asked for, `reason` what was tried and why it failed.
 */
export class BackendUnavailableError extends Schema.TaggedError<BackendUnavailableError>()("BackendUnavailableError", {
  requested: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `backend "${this.requested}" is unavailable: ${this.reason}`
  }
}

/** A weight matrix `[rows, cols]` (HF `[out, in]`) made resident on a backend. Opaque outside it. */
export interface Matrix {
  readonly rows: number
  readonly cols: number
  /** Bytes it occupies in the backend's memory, where the backend accounts for them (see `memory`). */
  readonly bytes?: number
}

/** A weight vector (norm weights, biases) made resident on a backend. */
export interface Vector {
  readonly length: number
}

/** An f32 activation (rows, cols) on the backend: rows are the call's tokens. Opaque outside it. */
export interface Activation {
  readonly rows: number
  readonly cols: number
}

/** Selected MLP neurons (ascending indices), on the backend; `capacity` bounds how many. */
export interface Selection {
  readonly capacity: number
}

/** One forward call's uploaded input: token ids, their RoPE positions, and the visibility mask of a tree. */
export interface ForwardInput {
  readonly T: number
  /** KV slots the call's queries may see: 0..kvLength-1 (the slots written before and by this call). */
  readonly kvLength: number
}

/** A request's KV cache on the backend: per layer, `capacity` slots of Hkv heads × Dh keys and values. */
export interface KvStore {
  readonly layers: number
  readonly numKeyValueHeads: number
  readonly headDim: number
  /** Hkv·Dh: the width of a k or v row. */
  readonly kvDim: number
  readonly capacity: number
}

/** How fine sparsity picks a call's neurons from |SiLU(gate)| (Sparsity.ts): shared by the call's tokens. */
export type NeuronRule =
  /** the `count` neurons with the largest Σ_t |SiLU(gate[t, j])|, ties to the lower index */
  | { readonly _tag: "TopK"; readonly count: number }
  /** the neurons whose mean_t |SiLU(gate[t, j])| exceeds `threshold` (CATS) */
  | { readonly _tag: "Threshold"; readonly threshold: number }

/** Heads of one attention call. */
export interface AttentionDims {
  readonly numHeads: number
  readonly numKeyValueHeads: number
  readonly headDim: number
}

export interface KernelsShape {
  /** The backend that actually runs, e.g. "reference", "simd(2 threads)", "gpu:webgpu". */
  readonly name: string

  // ---- weights, once per model ----
  /** Make a weight matrix resident. Accepts every DType; a backend without integer kernels widens quantized ones exactly (Tensor.widenQuantized). */
  readonly matrix: (t: RawTensor) => Effect.Effect<Matrix, KernelError>
  /** Make a norm weight or a bias resident. */
  readonly vector: (t: RawTensor) => Effect.Effect<Vector, KernelError>
  /**
   * A resident copy of part of w, freed when the scope closes: axis "rows" keeps rows `indices` of w
   * (n, cols); axis "columns" keeps columns `indices` (rows, n). Coarse sparsity gathers a request's
   * neurons once (gate/up rows, down_proj columns), so each of its decode steps is a dense matmul over the
   * smaller matrices. indices (n ≥ 1) are distinct, ascending and in range.
   */
  readonly gather: (w: Matrix, indices: Int32Array, axis: "rows" | "columns") => Effect.Effect<Matrix, KernelError, Scope.Scope>

  // ---- moving data: the only host ↔ backend transfers ----
  /** One forward call's input: tokens (T), positions (T), the tree mask (T, kvLength) when there is one. */
  readonly input: (tokens: Int32Array, positions: Int32Array, kvLength: number, mask?: Uint8Array) => Effect.Effect<ForwardInput, KernelError, Scope.Scope>
  /** An activation from host values (rows, cols): for tests and tools; a forward pass starts from `embedding`. */
  readonly upload: (data: Float32Array, rows: number, cols: number) => Effect.Effect<Activation, KernelError, Scope.Scope>
  /** The activation's values, (rows, cols) row-major, on the host: the logits of a forward pass. */
  readonly read: (x: Activation) => Effect.Effect<Float32Array, KernelError>
  /** A selection of the given neurons (ascending, distinct): for tests and tools; a forward pass selects with `selectNeurons`. */
  readonly selection: (indices: Int32Array) => Effect.Effect<Selection, KernelError, Scope.Scope>
  /** How many neurons a selection holds (a threshold's count is data-dependent). */
  readonly count: (s: Selection) => Effect.Effect<number, KernelError>

  // ---- activations: each op returns a new activation in the current scope ----
  /** out (T, cols) = rows `input.tokens[t]` of the table (rows, cols). */
  readonly embedding: (table: Matrix, input: ForwardInput) => Effect.Effect<Activation, KernelError, Scope.Scope>
  /** Rows `start..start+count-1` of x (a view or a copy). */
  readonly slice: (x: Activation, start: number, count: number) => Effect.Effect<Activation, KernelError, Scope.Scope>
  /** out (T, D) = x / sqrt(mean(x²) + eps) ⊙ weight, per row. */
  readonly rmsnorm: (x: Activation, weight: Vector, eps: number) => Effect.Effect<Activation, KernelError, Scope.Scope>
  /** out (T, rows) = x (T, cols) · Wᵀ (+ bias). One pass over W serves all T rows. */
  readonly matmul: (w: Matrix, x: Activation, bias?: Vector) => Effect.Effect<Activation, KernelError, Scope.Scope>
  /** Sparse MLP, up side: out (T, n) = x (T, cols) · W[rows]ᵀ: only the n selected rows of W are read. */
  readonly matmulRows: (w: Matrix, x: Activation, rows: Selection) => Effect.Effect<Activation, KernelError, Scope.Scope>
  /**
   * Sparse MLP, down side, over a transposed weight wT (F, D) (one neuron's weights contiguous):
   * out (T, D) = Σ_i h[t, i] · wT[rows[i], :]. Only the n selected rows are read; n = 0 gives zeros.
   */
  readonly matmulTransposedRows: (wT: Matrix, h: Activation, rows: Selection) => Effect.Effect<Activation, KernelError, Scope.Scope>
  /**
   * HF `rotate_half` RoPE on x (T, heads·Dh) at the input's positions: pairs (i, i+Dh/2) rotate by
   * positions[t]·invFreq[i]. invFreq (Dh/2) already carries any rope scaling.
   */
  readonly rope: (x: Activation, heads: number, headDim: number, input: ForwardInput, invFreq: Float32Array) => Effect.Effect<Activation, KernelError, Scope.Scope>
  /**
   * Grouped-query attention of q (T, H·Dh) over the layer's KV slots 0..input.kvLength-1 (this call's
   * already written): query t at position p sees slots 0..p (causal), or exactly the slots its mask row
   * marks (tree attention). Query head h reads KV head floor(h / (H/Hkv)); scale 1/sqrt(Dh). out (T, H·Dh).
   */
  readonly attention: (q: Activation, kv: KvStore, layer: number, input: ForwardInput, dims: AttentionDims) => Effect.Effect<Activation, KernelError, Scope.Scope>
  /** out = silu(gate) ⊙ up, elementwise. */
  readonly swiglu: (gate: Activation, up: Activation) => Effect.Effect<Activation, KernelError, Scope.Scope>
  /** Fine sparsity: out (T, n) = silu(gate[:, rows]) ⊙ up, gate (T, F), up (T, n). */
  readonly swigluRows: (gate: Activation, up: Activation, rows: Selection) => Effect.Effect<Activation, KernelError, Scope.Scope>
  /**
   * x ← x + y, elementwise, in place: the residual stream. (It is the one op that changes an activation: the
   * forward pass keeps x across layers while each layer's intermediates are freed at the layer's end.)
   */
  readonly accumulate: (x: Activation, y: Activation) => Effect.Effect<void, KernelError>

  // ---- sparsity ----
  /** Fine sparsity's neurons for this call, from the gate pre-activations (T, F) (see NeuronRule). */
  readonly selectNeurons: (gate: Activation, rule: NeuronRule) => Effect.Effect<Selection, KernelError, Scope.Scope>
  /**
   * Coarse sparsity's (GRIFFIN's) neuron statistic over the prompt's MLP activations hb (T, F): each row
   * normalised to unit L2 norm, then the L2 norm over rows per neuron: out (1, F).
   */
  readonly neuronStatistic: (hb: Activation) => Effect.Effect<Activation, KernelError, Scope.Scope>

  // ---- the KV cache ----
  /** A KV cache of `capacity` slots per layer, freed when the scope closes. */
  readonly kvStore: (layers: number, numKeyValueHeads: number, headDim: number, capacity: number) => Effect.Effect<KvStore, KernelError, Scope.Scope>
  /** Write k, v (T, kvDim) of one layer into slots start..start+T-1 (append, or overwrite a window). */
  readonly kvWrite: (kv: KvStore, layer: number, start: number, k: Activation, v: Activation) => Effect.Effect<void, KernelError>
  /** Move slots `from[i]` to slots start+i in every layer (sources read before any write): a tree branch into place. */
  readonly kvCompact: (kv: KvStore, from: Int32Array, start: number) => Effect.Effect<void, KernelError>
  /** Slots 0..length-1 of one layer, on the host (keys and values (length, kvDim)): for tests and tools. */
  readonly kvRead: (kv: KvStore, layer: number, length: number) => Effect.Effect<{ readonly keys: Float32Array; readonly values: Float32Array }, KernelError>

  /**
   * The backend's own memory, where it has a limit (wasm32's 4 GiB, a GPU's): bytes in use (weights, live
   * requests' resources) and the most it can hold. Servers admit a request only when what it will allocate
   * there (`Request.backendBytes`) fits. Absent: the backend lives in the host's memory.
   */
  readonly memory?: () => { readonly usedBytes: number; readonly limitBytes: number }
}

/** The Kernels service. Provide a backend's layer (e.g. `ReferenceKernels.layer`) to run the model on it. */
export class Kernels extends Context.Service<Kernels, KernelsShape>()("sirius-ts/Kernels") {}
