/**
 * Contextual MLP sparsity (docs/sirius.md): which MLP neurons a sparse token computes.
 *
 * Only the SwiGLU MLP is sparsified; attention, embeddings and lm_head stay dense, and the prompt is
 * always prefilled densely. `density` ρ is the fraction of the D_ff neurons kept, the same in every layer.
 * - fine (FSparse, the Sirius top-k variant of CATS): per token, keep the ⌊ρ·D_ff⌋ neurons with the largest
 *   |SiLU(W_gate·x)|; gate stays dense, up and down are computed for the kept neurons only.
 * - fine-threshold (CATS): per layer, keep the neurons with |SiLU(W_gate·x)| > t_l, thresholds calibrated
 *   to a target sparsity (Calibration.ts).
 * - coarse (CSparse, GRIFFIN): the dense prefill scores each neuron over the prompt; the top ⌊ρ·D_ff⌋ per
 *   layer are fixed for the whole request; gate, up and down are read for those neurons only.
 *
 * One rounding rule for both granularities: keep ⌊ρ·D_ff⌋ neurons, at least 1. Ties in every top-k go to
 * the lower neuron index. Selected indices are returned in ascending order (memory order).
 */
import { Effect, Scope } from "effect"
import type { LlamaConfig } from "./Config.ts"
import type { KernelError, Matrix } from "./Kernels.ts"
import type { Model } from "./Model.ts"

export type Granularity = "fine" | "fine-threshold" | "coarse"

/** The SwiGLU MLP's activation: silu(g) = g / (1 + e^(−g)) (sparsity is defined over |silu(W_gate·x)|). */
export const silu = (g: number): number => g / (1 + Math.exp(-g))

/** How the MLP runs in one forward call (Forward.ts). */
export type Mlp =
  /** All neurons. */
  | { readonly _tag: "Dense" }
  /**
   * All neurons, and each layer's GRIFFIN neuron statistic over the call's tokens (Kernels.neuronStatistic,
   * read back once: F values per layer) stored into `statistics[layer]`: coarse sparsity's prefill.
   */
  | { readonly _tag: "DenseWithStatistic"; readonly statistics: Array<Float32Array | undefined> }
  /**
   * All neurons, and each layer's gate pre-activations (T, F) read back into `gates[layer]`: the CATS
   * threshold calibration (Calibration.ts), an offline tool.
   */
  | { readonly _tag: "DenseWithGates"; readonly gates: Array<Float32Array | undefined> }
  /** Per call, keep the `keep` neurons with the largest Σ_t |silu(gate)| (shared by the call's tokens). */
  | { readonly _tag: "Fine"; readonly keep: number }
  /**
   * Per call, keep neurons whose mean_t |silu(gate)| exceeds the layer's calibrated threshold; `tally`
   * counts the neurons kept and considered (the measured parameter density).
   */
  | { readonly _tag: "FineThreshold"; readonly thresholds: ReadonlyArray<number>; readonly tally?: { kept: number; total: number } }
  /** Fixed neurons per layer for the whole request (chosen at prefill), their weights gathered once. */
  | { readonly _tag: "Coarse"; readonly layers: ReadonlyArray<CoarseLayer> }

/**
 * One layer's coarse MLP: the kept neurons (ascending) and resident copies of their weights (Kernels.gather):
 * gate_proj and up_proj rows (n, D), down_proj columns (D, n). The MLP is then dense over n neurons.
 */
export interface CoarseLayer {
  readonly neurons: Int32Array
  readonly gateProj: Matrix
  readonly upProj: Matrix
  readonly downProj: Matrix
}

export const dense: Mlp = { _tag: "Dense" }

/** ⌊ρ·D_ff⌋ (the 1e-9 guards against 0.3·10 = 2.9999…), at least 1. */
export const keptCount = (intermediateSize: number, density: number): number =>
  Math.max(1, Math.min(intermediateSize, Math.floor(density * intermediateSize + 1e-9)))

/**
 * Indices of the k largest scores, ties to the lower index, ascending. O(n): quickselect finds the k-th
 * largest value v, then one ascending scan keeps every score above v and the lowest-indexed ones equal
 * to v (it runs per layer per sparse token, so a sort would cost more than the sparse matmuls save).
 * NaN scores are treated as -Infinity.
 */
export const topK = (scores: ArrayLike<number>, k: number): Int32Array => {
  const n = scores.length
  const out = new Int32Array(Math.min(k, n))
  if (out.length === 0) return out
  const v = kthLargest(Float64Array.from(scores, (x) => (Number.isNaN(x) ? -Infinity : x)), out.length)
  let above = 0
  for (let i = 0; i < n; i++) if (scores[i]! > v) above++
  let equal = out.length - above // how many scores equal to v to keep, lowest indices first
  let m = 0
  for (let i = 0; i < n && m < out.length; i++) {
    const x = Number.isNaN(scores[i]!) ? -Infinity : scores[i]!
    if (x > v || (x === v && equal-- > 0)) out[m++] = i
  }
  return out
}

/** The k-th largest value of xs (1 ≤ k ≤ length); reorders xs (Hoare quickselect, middle pivot). */
const kthLargest = (xs: Float64Array, k: number): number => {
  let lo = 0
  let hi = xs.length - 1
  const target = k - 1 // index in descending order
  while (lo < hi) {
    const pivot = xs[(lo + hi) >>> 1]!
    let i = lo
    let j = hi
    while (i <= j) {
      while (xs[i]! > pivot) i++
      while (xs[j]! < pivot) j--
      if (i <= j) {
        const t = xs[i]!
        xs[i++] = xs[j]!
        xs[j--] = t
      }
    }
    if (target <= j) hi = j
    else if (target >= i) lo = i
    else return xs[target]!
  }
  return xs[target]!
}

/** Indices whose score is strictly above the threshold, ascending (may be empty). */
export const aboveThreshold = (scores: ArrayLike<number>, threshold: number): Int32Array => {
  const kept: Array<number> = []
  for (let i = 0; i < scores.length; i++) if (scores[i]! > threshold) kept.push(i)
  return Int32Array.from(kept)
}

/**
 * Fine-granularity score of each neuron over the T tokens of a call: s_j = Σ_t |a[t, j]|, a = SiLU(gate) (T, F).
 * For T = 1 it is |a|; for a tree step the mask is shared across branches (Sirius's `patternstrict`).
 */
export const fineScores = (a: Float32Array, T: number, F: number): Float64Array => {
  const s = new Float64Array(F)
  for (let t = 0; t < T; t++) for (let j = 0; j < F; j++) s[j] += Math.abs(a[t * F + j]!)
  return s
}

/**
 * The Griffin statistic over the prompt's MLP activations Z = SiLU(X·W_gateᵀ) ⊙ (X·W_upᵀ) (T, F):
 * each token row normalised to unit L2 norm, then the L2 norm over tokens per neuron:
 *   s_j = sqrt(Σ_t (Z[t, j] / ‖Z[t, :]‖₂)²)
 * A token whose row is all zero contributes nothing.
 */
export const griffinStatistic = (Z: Float32Array, T: number, F: number): Float64Array => {
  const s = new Float64Array(F)
  for (let t = 0; t < T; t++) {
    let norm = 0
    for (let j = 0; j < F; j++) norm += Z[t * F + j]! ** 2
    norm = Math.sqrt(norm)
    if (norm === 0) continue
    for (let j = 0; j < F; j++) s[j] += (Z[t * F + j]! / norm) ** 2
  }
  for (let j = 0; j < F; j++) s[j] = Math.sqrt(s[j]!)
  return s
}

/** Parameters of the model (tied embeddings counted once). */
export const parameterCount = (c: LlamaConfig): { total: number; mlpPerLayer: number } => {
  const D = c.hiddenSize
  const attn = D * c.numAttentionHeads * c.headDim * 2 + D * c.numKeyValueHeads * c.headDim * 2
  const mlpPerLayer = 3 * D * c.intermediateSize
  const emb = c.vocabSize * D
  const total = emb + (c.tieWordEmbeddings ? 0 : emb) + c.numHiddenLayers * (attn + mlpPerLayer + 2 * D) + D
  return { total, mlpPerLayer }
}

/**
 * Parameter density d_sparse (§2.3): the fraction of all parameters a sparse token touches, everything
 * outside the MLP counted as dense. f is the fraction of each layer's MLP touched: coarse f = kept/D_ff;
 * fine f = 1/3 + (2/3)·kept/D_ff (gate stays dense). For fine-threshold pass the mean kept fraction.
 */
export const parameterDensity = (c: LlamaConfig, granularity: Granularity, keptFraction: number): number => {
  const { total, mlpPerLayer } = parameterCount(c)
  const f = granularity === "coarse" ? keptFraction : 1 / 3 + (2 / 3) * keptFraction
  return 1 - ((1 - f) * c.numHiddenLayers * mlpPerLayer) / total
}

export interface SparsityOptions {
  readonly granularity: Granularity
  /** Fraction of MLP neurons kept, in (0, 1]. */
  readonly density: number
  /** Per-layer thresholds for fine-threshold (from `sirius calibrate`). */
  readonly thresholds?: ReadonlyArray<number>
}

/** The MLP modes of one request (see `requestMlp`). */
export interface RequestMlp {
  /** Fine-threshold: neurons kept and neurons considered so far by this request's sparse steps. */
  readonly tally?: { kept: number; total: number }
  /** The dense prefill's MLP (coarse granularity records the Griffin statistic of every layer there). */
  readonly prefill: Mlp
  /** The MLP of every sparse step. Coarse: the first use picks the neurons and gathers their weights. */
  readonly sparse: Effect.Effect<Mlp, KernelError>
}

/**
 * The parameter density a request's sparse steps had: the nominal ⌊ρ·D_ff⌋ kept neurons for top-k
 * granularities; for fine-threshold the fraction its thresholds actually kept (measured, not ρ), or ρ before
 * any sparse step ran.
 */
export const requestParameterDensity = (model: Model, options: SparsityOptions, mlp: RequestMlp): number => {
  const F = model.config.intermediateSize
  const tally = mlp.tally
  const kept = tally !== undefined && tally.total > 0 ? tally.kept / tally.total : keptCount(F, options.density) / F
  return parameterDensity(model.config, options.granularity, kept)
}

/** A request without sparsity: dense everywhere. */
export const denseRequest: RequestMlp = { prefill: dense, sparse: Effect.succeed(dense) }

/**
 * The MLP modes of one request. For coarse granularity the neuron set is chosen once, from the prefill,
 * and stays fixed (verification passes do not change it); its gate/up rows and down columns are gathered
 * into resident copies (Kernels.gather) that live until `scope` closes (the request's end).
 */
export const requestMlp = (model: Model, options: SparsityOptions, scope: Scope.Scope): RequestMlp => {
  const { config } = model
  const F = config.intermediateSize
  const keep = keptCount(F, options.density)
  switch (options.granularity) {
    case "fine":
      return { prefill: dense, sparse: Effect.succeed({ _tag: "Fine", keep }) }
    case "fine-threshold": {
      const thresholds = options.thresholds
      if (thresholds === undefined || thresholds.length !== config.numHiddenLayers)
        throw new Error(`fine-threshold needs ${config.numHiddenLayers} per-layer thresholds`)
      const tally = { kept: 0, total: 0 }
      return { prefill: dense, sparse: Effect.succeed({ _tag: "FineThreshold", thresholds, tally }), tally }
    }
    case "coarse": {
      const statistics: Array<Float32Array | undefined> = []
      let chosen: Mlp | undefined
      const gatherAll = Effect.gen(function* () {
        const k = model.kernels
        const layers: Array<CoarseLayer> = []
        for (const [l, w] of model.layers.entries()) {
          const neurons = topK(statistics[l]!, keep)
          layers.push({
            neurons,
            gateProj: yield* k.gather(w.gateProj, neurons, "rows"),
            upProj: yield* k.gather(w.upProj, neurons, "rows"),
            downProj: yield* k.gather(w.downProj, neurons, "columns")
          })
        }
        return { _tag: "Coarse", layers } as const
      }).pipe(Scope.provide(scope))
      return {
        prefill: { _tag: "DenseWithStatistic", statistics },
        sparse: Effect.suspend(() => (chosen ? Effect.succeed(chosen) : Effect.map(gatherAll, (mlp) => (chosen = mlp))))
      }
    }
  }
}
