/**
 * Kernels: the one interface every compute backend implements (reference/, simd/, gpu/).
 *
 * The forward pass (Forward.ts) is written once against it. Ops take activations as Float32Array with
 * explicit dims and return fresh Float32Arrays; weights are made resident once, at load time, through
 * `matrix`/`vector`, and are then passed as opaque handles, so a backend can keep them in wasm memory or
 * on a GPU and only move activations per call. Every op returns an Effect, which absorbs both the
 * synchronous backends and the asynchronous ones (WebGPU, gpu.js v3).
 *
 * Dims legend used throughout: T = tokens in the call, D = hidden size, H = query heads,
 * Hkv = key/value heads, Dh = head dim, S = KV slots visible (kvLength), V = vocab.
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

/** A weight vector (norm weights) made resident on a backend. */
export interface Vector {
  readonly length: number
}

/**
 * Geometry of one attention call. Without a mask, query t sits at absolute position `positions[t]` and sees
 * KV slots 0..positions[t] (causal). With a mask (tree attention: Sirius's tree of drafts, where slots are
 * not positions), query t sees exactly the slots s with mask[t·kvLength + s] = 1.
 */
export interface AttentionShape {
  readonly T: number
  readonly numHeads: number
  readonly numKeyValueHeads: number
  readonly headDim: number
  /** Number of valid KV slots in `keys`/`values`. */
  readonly kvLength: number
  readonly positions: Int32Array
  /** (T, kvLength) visibility, 1 = visible; every query sees at least one slot. */
  readonly mask?: Uint8Array | undefined
}

export interface KernelsShape {
  /** The backend that actually runs, e.g. "reference", "simd(2 threads)", "gpu:webgpu". */
  readonly name: string

  /** Make a weight matrix resident (once per matrix, at load time). Accepts F32, F16 and BF16. */
  readonly matrix: (t: RawTensor) => Effect.Effect<Matrix, KernelError>
  /** Make a norm weight resident. */
  readonly vector: (t: RawTensor) => Effect.Effect<Vector, KernelError>

  /** out (T, rows) = x (T, cols) · Wᵀ. One pass over W serves all T rows. */
  readonly matmul: (w: Matrix, x: Float32Array, T: number) => Effect.Effect<Float32Array, KernelError>
  /**
   * Sparse MLP, up/gate side: out (T, n) = x (T, cols) · W[rows]ᵀ — only the n selected rows of W are read
   * (the same selection for every token). rows (n) are distinct row indices.
   */
  readonly matmulRows: (w: Matrix, x: Float32Array, T: number, rows: Int32Array) => Effect.Effect<Float32Array, KernelError>
  /**
   * Sparse MLP, down side, over a transposed weight wT (F, D) — down_proj stored so that one neuron's
   * weights are contiguous: out (T, D) = Σ_i h[t, i] · wT[rows[i], :]. Only the n selected rows are read.
   */
  readonly matmulTransposedRows: (wT: Matrix, h: Float32Array, T: number, rows: Int32Array) => Effect.Effect<Float32Array, KernelError>
  /**
   * A resident copy of part of w, freed when the scope closes: axis "rows" keeps rows `indices` of w
   * (n, cols); axis "columns" keeps columns `indices` (rows, n). Coarse sparsity gathers a request's
   * neurons once (gate/up rows, down_proj columns), so each of its decode steps is a dense matmul over
   * the smaller matrices. indices (n ≥ 1) are distinct and in range.
   */
  readonly gather: (w: Matrix, indices: Int32Array, axis: "rows" | "columns") => Effect.Effect<Matrix, KernelError, Scope.Scope>
  /** out (T, cols) = rows `tokens[t]` of the table (rows, cols). */
  readonly embedding: (table: Matrix, tokens: Int32Array) => Effect.Effect<Float32Array, KernelError>
  /** out (T, D) = x / sqrt(mean(x²) + eps) ⊙ weight, per row. */
  readonly rmsnorm: (x: Float32Array, weight: Vector, T: number, eps: number) => Effect.Effect<Float32Array, KernelError>
  /**
   * HF `rotate_half` RoPE on x (T, heads·Dh) at positions (T): pairs (i, i+Dh/2) rotate by positions[t]·invFreq[i].
   * invFreq (Dh/2) already carries any rope scaling.
   */
  readonly rope: (
    x: Float32Array,
    T: number,
    heads: number,
    headDim: number,
    positions: Int32Array,
    invFreq: Float32Array
  ) => Effect.Effect<Float32Array, KernelError>
  /**
   * Causal grouped-query attention. q (T, H·Dh); keys/values (≥ kvLength, Hkv·Dh) hold every slot already
   * written, including this call's. Query head h reads KV head floor(h / (H/Hkv)); scale 1/sqrt(Dh).
   * out (T, H·Dh).
   */
  readonly attention: (
    q: Float32Array,
    keys: Float32Array,
    values: Float32Array,
    shape: AttentionShape
  ) => Effect.Effect<Float32Array, KernelError>
  /** out (T·F) = silu(gate) ⊙ up, elementwise. */
  readonly swiglu: (gate: Float32Array, up: Float32Array) => Effect.Effect<Float32Array, KernelError>
  /** out = a + b, elementwise (residual connections). */
  readonly add: (a: Float32Array, b: Float32Array) => Effect.Effect<Float32Array, KernelError>

  /**
   * The backend's own memory, where it has a limit (wasm32's 4 GiB, a GPU's): bytes in use (weights, live
   * requests' resources) and the most it can hold. Servers admit a request only when what it will allocate
   * there (`Request.backendBytes`) fits. Absent: the backend lives in the host's memory.
   */
  readonly memory?: () => { readonly usedBytes: number; readonly limitBytes: number }
}

/** The Kernels service. Provide a backend's layer (e.g. `ReferenceKernels.layer`) to run the model on it. */
export class Kernels extends Context.Service<Kernels, KernelsShape>()("sirius-ts/Kernels") {}
