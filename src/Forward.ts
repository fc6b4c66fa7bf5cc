/**
 * The Llama forward pass, written once against the Kernels interface (llama2.c's `forward`, for T tokens).
 *
 * One call runs T consecutive tokens at absolute positions startPos..startPos+T-1 and writes their K/V
 * into those cache slots, overwriting what was there. T = 1 is a decode step; T > 1 is a prefill or a
 * Sirius verification window (the full model rewrites the window's KV and scores every draft at once).
 * It returns logits for every token ("all", verification) or only the last ("last", prefill/decode).
 */
import { Effect } from "effect"
import type { KernelError } from "./Kernels.ts"
import * as KvCache from "./KvCache.ts"
import type { Model } from "./Model.ts"

export type Which = "all" | "last"

export const forward = Effect.fnUntraced(function* (
  model: Model,
  cache: KvCache.KvCache,
  tokens: Int32Array,
  startPos: number,
  which: Which
) {
  const { config, kernels: k } = model
  const { numAttentionHeads: H, numKeyValueHeads: Hkv, headDim: Dh, hiddenSize: D, rmsNormEps: eps } = config
  const T = tokens.length
  const positions = Int32Array.from(tokens, (_, t) => startPos + t) // (T)
  KvCache.reserve(cache, startPos, T)

  let x = yield* k.embedding(model.embedTokens, tokens) // (T, D) residual stream
  for (let l = 0; l < model.layers.length; l++) {
    const w = model.layers[l]!

    // attention block: x += o(attn(rope(q), rope(k), v))
    const xb = yield* k.rmsnorm(x, w.inputLayernorm, T, eps) // (T, D)
    const q = yield* k.rope(yield* k.matmul(w.qProj, xb, T), T, H, Dh, positions, model.invFreq) // (T, H·Dh)
    const kk = yield* k.rope(yield* k.matmul(w.kProj, xb, T), T, Hkv, Dh, positions, model.invFreq) // (T, Hkv·Dh)
    const v = yield* k.matmul(w.vProj, xb, T) // (T, Hkv·Dh)
    KvCache.write(cache, l, startPos, kk, v)
    const att = yield* k.attention(q, cache.keys[l]!, cache.values[l]!, {
      T,
      numHeads: H,
      numKeyValueHeads: Hkv,
      headDim: Dh,
      kvLength: startPos + T,
      positions
    }) // (T, H·Dh)
    x = yield* k.add(x, yield* k.matmul(w.oProj, att, T))

    // MLP block: x += down(silu(gate(xb)) ⊙ up(xb))
    const xb2 = yield* k.rmsnorm(x, w.postAttentionLayernorm, T, eps) // (T, D)
    const hb = yield* k.swiglu(yield* k.matmul(w.gateProj, xb2, T), yield* k.matmul(w.upProj, xb2, T)) // (T, F)
    x = yield* k.add(x, yield* k.matmul(w.downProj, hb, T))
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
  which: Which
) => Effect.Effect<Float32Array, KernelError>
