/**
 * The Llama forward pass, written once against the Kernels interface (llama2.c's `forward`, for T tokens).
 *
 * One call runs T consecutive tokens at absolute positions startPos..startPos+T-1 and writes their K/V
 * into those cache slots, overwriting what was there. T = 1 is a decode step; T > 1 is a prefill or a
 * Sirius verification window (the full model rewrites the window's KV and scores every draft at once).
 * It returns logits for every token ("all", verification) or only the last ("last", prefill/decode).
 *
 * Everything stays on the backend: the call uploads its tokens and positions (`input`), every activation
 * lives in the call's scope, and only the logits come back to the host. The MLP runs dense or contextually
 * sparse (Sparsity.Mlp): the only place sparse and full models differ.
 */
import { Effect } from "effect"
import type { Activation, KernelError, KernelsShape } from "./Kernels.ts"
import * as KvCache from "./KvCache.ts"
import type { LayerHandles, Model } from "./Model.ts"
import { type Mlp } from "./Sparsity.ts"

export { dense, type Mlp } from "./Sparsity.ts"

export type Which = "all" | "last"

/**
 * Tree attention for Sirius's draft tree: the call's tokens are tree nodes in slots startPos.., each at
 * its own RoPE position (context length + depth), seeing the slots `mask` marks (context + ancestors + self).
 */
export interface TreeLayout {
  readonly positions: Int32Array // (T)
  readonly mask: Uint8Array // (T, startPos + T)
}

export const forward = (
  model: Model,
  cache: KvCache.KvCache,
  tokens: Int32Array,
  startPos: number,
  which: Which,
  mlp: Mlp = { _tag: "Dense" },
  tree?: TreeLayout
): Effect.Effect<Float32Array, KernelError> =>
  Effect.scoped(
    Effect.gen(function* () {
      const { config, kernels: k } = model
      const { numAttentionHeads: H, numKeyValueHeads: Hkv, headDim: Dh, rmsNormEps: eps } = config
      const T = tokens.length
      const positions = tree?.positions ?? Int32Array.from(tokens, (_, t) => startPos + t) // (T)
      KvCache.reserve(cache, startPos, T)
      const input = yield* k.input(tokens, positions, startPos + T, tree?.mask)
      const heads = { numHeads: H, numKeyValueHeads: Hkv, headDim: Dh }

      const x = yield* k.embedding(model.embedTokens, input) // (T, D) the residual stream, updated in place
      for (let l = 0; l < model.layers.length; l++) {
        const w = model.layers[l]!
        // a layer's intermediates live until the layer ends (a long prefill holds one layer's at a time)
        yield* Effect.scoped(
          Effect.gen(function* () {
            // attention block: x += o(attn(rope(q), rope(k), v))
            const xb = yield* k.rmsnorm(x, w.inputLayernorm, eps) // (T, D)
            const q = yield* k.rope(yield* k.matmul(w.qProj, xb, w.qBias), H, Dh, input, model.invFreq) // (T, H·Dh)
            const kk = yield* k.rope(yield* k.matmul(w.kProj, xb, w.kBias), Hkv, Dh, input, model.invFreq) // (T, Hkv·Dh)
            const v = yield* k.matmul(w.vProj, xb, w.vBias) // (T, Hkv·Dh)
            yield* k.kvWrite(cache.store, l, startPos, kk, v)
            const att = yield* k.attention(q, cache.store, l, input, heads) // (T, H·Dh)
            yield* k.accumulate(x, yield* k.matmul(w.oProj, att))

            // MLP block: x += down(silu(gate(xb)) ⊙ up(xb)), over all neurons or the kept ones
            const xb2 = yield* k.rmsnorm(x, w.postAttentionLayernorm, eps) // (T, D)
            yield* k.accumulate(x, yield* mlpBlock(k, w, l, xb2, config.intermediateSize, mlp))
          })
        )
      }

      const last = which === "all" ? x : yield* k.slice(x, T - 1, 1) // (rows, D)
      const logits = yield* k.matmul(model.lmHead, yield* k.rmsnorm(last, model.norm, eps)) // (rows, V)
      return yield* k.read(logits)
    })
  )

/** The MLP of one layer on xb2 (T, D) → (T, D). Sparse variants read only the kept neurons' weights. */
const mlpBlock = Effect.fnUntraced(function* (k: KernelsShape, w: LayerHandles, layer: number, xb2: Activation, F: number, mlp: Mlp) {
  switch (mlp._tag) {
    case "Dense":
    case "DenseWithStatistic":
    case "DenseWithGates": {
      const gate = yield* k.matmul(w.gateProj, xb2) // (T, F)
      const hb = yield* k.swiglu(gate, yield* k.matmul(w.upProj, xb2)) // (T, F)
      // coarse sparsity's prefill keeps each layer's GRIFFIN statistic (F values); calibration the gates
      if (mlp._tag === "DenseWithStatistic") mlp.statistics[layer] = yield* k.read(yield* k.neuronStatistic(hb))
      if (mlp._tag === "DenseWithGates") mlp.gates[layer] = yield* k.read(gate)
      return yield* k.matmul(w.downProj, hb)
    }
    case "Coarse": {
      // the dense MLP over the gathered neurons: same kernels as dense, fewer bytes
      const c = mlp.layers[layer]!
      const hb = yield* k.swiglu(yield* k.matmul(c.gateProj, xb2), yield* k.matmul(c.upProj, xb2)) // (T, n)
      return yield* k.matmul(c.downProj, hb)
    }
    case "Fine":
    case "FineThreshold": {
      if (w.downProjT === undefined) return yield* Effect.die(new Error("fine sparsity on a model loaded without { sparse: true }"))
      // gate is dense because the selection depends on it
      const gate = yield* k.matmul(w.gateProj, xb2) // (T, F)
      const rows = yield* k.selectNeurons(gate, mlp._tag === "Fine" ? { _tag: "TopK", count: mlp.keep } : { _tag: "Threshold", threshold: mlp.thresholds[layer]! })
      if (mlp._tag === "FineThreshold" && mlp.tally !== undefined) {
        mlp.tally.kept += yield* k.count(rows)
        mlp.tally.total += F
      }
      const hb = yield* k.swigluRows(gate, yield* k.matmulRows(w.upProj, xb2, rows), rows) // (T, n)
      return yield* k.matmulTransposedRows(w.downProjT, hb, rows) // (T, D)
    }
  }
})
