/**
 * The Llama forward pass, written once against the Kernels interface (llama2.c's `forward`, for T tokens).
 *
 * One call runs T consecutive tokens at absolute positions startPos..startPos+T-1 and writes their K/V
 * into those cache slots, overwriting what was there. T = 1 is a decode step; T > 1 is a prefill or a
 * Sirius verification window (the full model rewrites the window's KV and scores every draft at once).
 * It returns logits for every token ("all", verification) or only the last ("last", prefill/decode).
 *
 * The MLP runs dense, or contextually sparse (Sparsity.ts) — the only place sparse and full models differ.
 */
import { Effect } from "effect"
import { silu } from "../reference/swiglu.ts"
import type { KernelError, KernelsShape, Matrix } from "./Kernels.ts"
import * as KvCache from "./KvCache.ts"
import type { LayerHandles, Model } from "./Model.ts"
import { aboveThreshold, fineScores, topK } from "./Sparsity.ts"

export type Which = "all" | "last"

/** How the MLP runs in this call. */
export type Mlp =
  | {
      readonly _tag: "Dense"
      /**
       * Sees each layer's gate pre-activations W_gate·x and MLP activations silu(gate)⊙up, both (T, F):
       * the coarse Griffin statistic and the CATS threshold calibration read them.
       */
      readonly observe?: (layer: number, gate: Float32Array, hb: Float32Array, T: number) => void
    }
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

/**
 * Tree attention for Sirius's draft tree: the call's tokens are tree nodes in slots startPos.., each at
 * its own RoPE position (context length + depth), seeing the slots `mask` marks (context + ancestors + self).
 */
export interface TreeLayout {
  readonly positions: Int32Array // (T)
  readonly mask: Uint8Array // (T, startPos + T)
}

export const forward = Effect.fnUntraced(function* (
  model: Model,
  cache: KvCache.KvCache,
  tokens: Int32Array,
  startPos: number,
  which: Which,
  mlp: Mlp = dense,
  tree?: TreeLayout
) {
  const { config, kernels: k } = model
  const { numAttentionHeads: H, numKeyValueHeads: Hkv, headDim: Dh, hiddenSize: D, rmsNormEps: eps } = config
  const T = tokens.length
  const positions = tree?.positions ?? Int32Array.from(tokens, (_, t) => startPos + t) // (T)
  KvCache.reserve(cache, startPos, T)

  let x = yield* k.embedding(model.embedTokens, tokens) // (T, D) residual stream
  for (let l = 0; l < model.layers.length; l++) {
    const w = model.layers[l]!

    // attention block: x += o(attn(rope(q), rope(k), v))
    const xb = yield* k.rmsnorm(x, w.inputLayernorm, T, eps) // (T, D)
    // [qwen2 bias] q/k/v biases (Qwen2) are added on the host before RoPE; a no-op without them.
    const bias = w.attentionBias
    const q = yield* k.rope(addBias(yield* k.matmul(w.qProj, xb, T), bias?.q), T, H, Dh, positions, model.invFreq) // (T, H·Dh)
    const kk = yield* k.rope(addBias(yield* k.matmul(w.kProj, xb, T), bias?.k), T, Hkv, Dh, positions, model.invFreq) // (T, Hkv·Dh)
    const v = addBias(yield* k.matmul(w.vProj, xb, T), bias?.v) // (T, Hkv·Dh)
    KvCache.write(cache, l, startPos, kk, v)
    const att = yield* k.attention(q, cache.keys[l]!, cache.values[l]!, {
      T,
      numHeads: H,
      numKeyValueHeads: Hkv,
      headDim: Dh,
      kvLength: startPos + T,
      positions,
      mask: tree?.mask
    }) // (T, H·Dh)
    x = yield* k.add(x, yield* k.matmul(w.oProj, att, T))

    // MLP block: x += down(silu(gate(xb)) ⊙ up(xb)), over all neurons or the kept ones
    const xb2 = yield* k.rmsnorm(x, w.postAttentionLayernorm, T, eps) // (T, D)
    x = yield* k.add(x, yield* mlpBlock(k, w, l, xb2, T, config.intermediateSize, mlp))
  }

  const rows = which === "all" ? T : 1
  const last = which === "all" ? x : x.subarray((T - 1) * D, T * D)
  const xf = yield* k.rmsnorm(last, model.norm, rows, eps) // (rows, D)
  return yield* k.matmul(model.lmHead, xf, rows) // (rows, V)
}) as (
  model: Model,
  cache: KvCache.KvCache,
  tokens: Int32Array,
  startPos: number,
  which: Which,
  mlp?: Mlp,
  tree?: TreeLayout
) => Effect.Effect<Float32Array, KernelError>

/**
 * [qwen2 bias] x (T, n) += bias (n) broadcast over the T rows, in place (x is a fresh matmul output).
 * Host-side stopgap for Qwen2's q/k/v biases; to be ported into the Kernels-based Forward.
 */
const addBias = (x: Float32Array, bias: Float32Array | undefined): Float32Array => {
  if (bias === undefined) return x
  const n = bias.length
  for (let i = 0; i < x.length; i++) x[i] = x[i]! + bias[i % n]!
  return x
}

/** The MLP of one layer on xb2 (T, D) → (T, D). Sparse variants read only the kept neurons' weights. */
const mlpBlock = Effect.fnUntraced(function* (
  k: KernelsShape,
  w: LayerHandles,
  layer: number,
  xb2: Float32Array,
  T: number,
  F: number,
  mlp: Mlp
) {
  if (mlp._tag === "Dense") {
    const gate = yield* k.matmul(w.gateProj, xb2, T) // (T, F)
    const hb = yield* k.swiglu(gate, yield* k.matmul(w.upProj, xb2, T)) // (T, F)
    mlp.observe?.(layer, gate, hb, T)
    return yield* k.matmul(w.downProj, hb, T)
  }
  if (mlp._tag === "Coarse") {
    // the dense MLP over the gathered neurons: same kernels as dense, fewer bytes
    const c = mlp.layers[layer]!
    const hb = yield* k.swiglu(yield* k.matmul(c.gateProj, xb2, T), yield* k.matmul(c.upProj, xb2, T)) // (T, n)
    return yield* k.matmul(c.downProj, hb, T)
  }
  if (w.downProjT === undefined) return yield* Effect.die(new Error("fine sparsity on a model loaded without { sparse: true }"))
  // fine: gate is dense because the selection depends on it
  const gate = yield* k.matmul(w.gateProj, xb2, T) // (T, F)
  const a = new Float32Array(gate.length) // (T, F) = silu(gate); a loop, not .map: this runs per layer per token
  for (let i = 0; i < a.length; i++) a[i] = silu(gate[i]!)
  const scores = fineScores(a, T, F)
  const rows = mlp._tag === "Fine" ? topK(scores, mlp.keep) : aboveThreshold(scores.map((s) => s / T), mlp.thresholds[layer]!)
  const n = rows.length
  if (mlp._tag === "FineThreshold" && mlp.tally !== undefined) {
    mlp.tally.kept += n
    mlp.tally.total += F
  }
  if (n === 0) return new Float32Array(xb2.length)
  const up = yield* k.matmulRows(w.upProj, xb2, T, rows) // (T, n)
  const hb = new Float32Array(T * n) // (T, n) = a[kept] ⊙ up[kept]
  for (let t = 0; t < T; t++) for (let i = 0; i < n; i++) hb[t * n + i] = a[t * F + rows[i]!]! * up[t * n + i]!
  return yield* k.matmulTransposedRows(w.downProjT, hb, T, rows)
})
