/**
 * An independent oracle for contextually sparse decoding: a plain token-by-token Llama forward in float64
 * (HF semantics, its own KV lists, no Kernels, no Forward), with the MLP masked the way each granularity
 * specifies it (docs/sirius.md): the prompt dense, then per generated token
 *   - fine: keep the ⌊ρ·F⌋ neurons with the largest |silu(gate)| (ties to the lower index),
 *   - fine-threshold: keep the neurons with |silu(gate)| > t_l,
 *   - coarse: keep the top ⌊ρ·F⌋ of the GRIFFIN statistic over the prompt's dense activations, fixed.
 * Projections are rounded to f32 where the engine stores them, so a kept set is decided on the very values
 * the engine sees; everything else is float64 and written here anew.
 *
 * Used by properties/sparsity.test.ts to check Forward's sparse paths (and to catch planted mutations).
 */
import type { LlamaConfig } from "../src/Config.ts"
import { ropeInvFreq } from "../src/Rope.ts"
import { keptCount } from "../src/Sparsity.ts"
import { toFloat32 } from "../src/Tensor.ts"
import type { ModelWeights } from "../src/Weights.ts"

export type OracleSparsity =
  | { readonly granularity: "fine"; readonly density: number }
  | { readonly granularity: "fine-threshold"; readonly thresholds: ReadonlyArray<number> }
  | { readonly granularity: "coarse"; readonly density: number }

const silu = (g: number) => g / (1 + Math.exp(-g))

/** y (rows) = W (rows, cols) · x, each output rounded to f32. */
const mv = (w: Float32Array, x: ArrayLike<number>, rows: number, cols: number): Float32Array => {
  const out = new Float32Array(rows)
  for (let r = 0; r < rows; r++) {
    let s = 0
    for (let c = 0; c < cols; c++) s += w[r * cols + c]! * x[c]!
    out[r] = s
  }
  return out
}

const rms = (x: ArrayLike<number>, w: Float32Array, eps: number): Float32Array => {
  let ss = 0
  for (let i = 0; i < w.length; i++) ss += x[i]! * x[i]!
  const scale = 1 / Math.sqrt(ss / w.length + eps)
  return Float32Array.from(w, (wi, i) => x[i]! * scale * wi)
}

export interface OracleStep {
  readonly token: number
  readonly logits: Float64Array
  /** Top-1 minus top-2 logit: below the engine's f32 error a flip is legitimate. */
  readonly margin: number
}

/** Greedy decoding of `steps` tokens: the prompt densely, then each token with the given sparsity. */
export const oracleDecode = (
  config: LlamaConfig,
  weights: ModelWeights,
  prompt: ReadonlyArray<number>,
  steps: number,
  sparsity: OracleSparsity | undefined,
  /** Receives each layer's prompt activations silu(gate)⊙up, one row per prompt token. */
  promptActivations?: Array<Array<Float32Array>>
): Array<OracleStep> => {
  const { hiddenSize: D, intermediateSize: F, numAttentionHeads: H, numKeyValueHeads: Hkv, headDim: Dh, rmsNormEps: eps, vocabSize: V } = config
  const w = weights.layers.map((l) => ({
    in: toFloat32(l.inputLayernorm),
    q: toFloat32(l.qProj),
    k: toFloat32(l.kProj),
    v: toFloat32(l.vProj),
    o: toFloat32(l.oProj),
    post: toFloat32(l.postAttentionLayernorm),
    gate: toFloat32(l.gateProj),
    up: toFloat32(l.upProj),
    down: toFloat32(l.downProj)
  }))
  const emb = toFloat32(weights.embedTokens)
  const head = toFloat32(weights.lmHead)
  const norm = toFloat32(weights.norm)
  const invFreq = ropeInvFreq(Dh, config.ropeTheta, config.ropeScaling)
  const keys = w.map((): Array<Float32Array> => [])
  const values = w.map((): Array<Float32Array> => [])
  const promptActs = w.map((): Array<Float32Array> => []) // coarse: each prompt token's silu(gate)⊙up
  let coarse: Array<Set<number>> | undefined

  const rope = (x: Float32Array, heads: number, pos: number) => {
    const out = new Float32Array(x.length)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < Dh / 2; i++) {
        const a = x[h * Dh + i]!
        const b = x[h * Dh + i + Dh / 2]!
        const th = pos * invFreq[i]!
        out[h * Dh + i] = a * Math.cos(th) - b * Math.sin(th)
        out[h * Dh + i + Dh / 2] = b * Math.cos(th) + a * Math.sin(th)
      }
    return out
  }

  /** One token at `pos`, its MLP dense (prompt) or sparse (generated). Returns the logits. */
  const step = (token: number, pos: number, sparse: boolean): Float64Array => {
    let x = Float32Array.from(emb.subarray(token * D, (token + 1) * D))
    w.forEach((l, li) => {
      const xb = rms(x, l.in, eps)
      const q = rope(mv(l.q, xb, H * Dh, D), H, pos)
      keys[li]!.push(rope(mv(l.k, xb, Hkv * Dh, D), Hkv, pos))
      values[li]!.push(mv(l.v, xb, Hkv * Dh, D))
      const att = new Float32Array(H * Dh)
      for (let h = 0; h < H; h++) {
        const kvh = Math.floor(h / (H / Hkv))
        const s = keys[li]!.map((k) => {
          let d = 0
          for (let i = 0; i < Dh; i++) d += q[h * Dh + i]! * k[kvh * Dh + i]!
          return d / Math.sqrt(Dh)
        })
        const m = Math.max(...s)
        const e = s.map((v) => Math.exp(v - m))
        const z = e.reduce((a, b) => a + b, 0)
        for (let i = 0; i < Dh; i++) att[h * Dh + i] = e.reduce((acc, ei, j) => acc + ei * values[li]![j]![kvh * Dh + i]!, 0) / z
      }
      const o = mv(l.o, att, D, H * Dh)
      x = Float32Array.from(o, (v, i) => x[i]! + v)
      const xb2 = rms(x, l.post, eps)
      const gate = mv(l.gate, xb2, F, D)
      const up = mv(l.up, xb2, F, D)
      const hb = Float32Array.from(gate, (g, j) => silu(g) * up[j]!)
      let kept: Set<number> | undefined
      if (!sparse) promptActs[li]!.push(hb)
      else if (sparsity!.granularity === "coarse") kept = coarse![li]!
      else if (sparsity!.granularity === "fine") {
        const order = Array.from({ length: F }, (_, j) => j).sort((a, b) => Math.abs(silu(gate[b]!)) - Math.abs(silu(gate[a]!)) || a - b)
        kept = new Set(order.slice(0, keptCount(F, sparsity!.density)))
      } else {
        const t = sparsity!.thresholds[li]!
        kept = new Set(Array.from({ length: F }, (_, j) => j).filter((j) => Math.abs(silu(gate[j]!)) > t))
      }
      const masked = kept === undefined ? hb : Float32Array.from(hb, (v, j) => (kept!.has(j) ? v : 0))
      const down = mv(l.down, masked, D, F)
      x = Float32Array.from(down, (v, i) => x[i]! + v)
    })
    return Float64Array.from(mv(head, rms(x, norm, eps), V, D))
  }

  let logits: Float64Array = new Float64Array(V)
  prompt.forEach((t, i) => (logits = step(t, i, false)))
  promptActivations?.push(...promptActs)
  if (sparsity?.granularity === "coarse") {
    // GRIFFIN: each prompt token's row normalised to unit L2 norm, the L2 norm over tokens per neuron, top ⌊ρ·F⌋
    coarse = promptActs.map((rows) => {
      const s = new Float64Array(F)
      for (const z of rows) {
        const n = Math.sqrt(z.reduce((a, v) => a + v * v, 0))
        if (n > 0) z.forEach((v, j) => (s[j] = s[j]! + (v / n) ** 2))
      }
      const order = Array.from({ length: F }, (_, j) => j).sort((a, b) => Math.sqrt(s[b]!) - Math.sqrt(s[a]!) || a - b)
      return new Set(order.slice(0, keptCount(F, sparsity.density)))
    })
  }
  const out: Array<OracleStep> = []
  for (let i = 0; i < steps; i++) {
    let best = 0
    for (let v = 1; v < V; v++) if (logits[v]! > logits[best]!) best = v
    let second = -Infinity
    logits.forEach((v, j) => {
      if (j !== best && v > second) second = v
    })
    out.push({ token: best, logits, margin: logits[best]! - second })
    if (i + 1 < steps) logits = step(best, prompt.length + i, sparsity !== undefined)
  }
  return out
}

/** Each layer's dense MLP activations silu(gate)⊙up over the prompt, one row per token. */
export const oracleDenseActivations = (config: LlamaConfig, weights: ModelWeights, prompt: ReadonlyArray<number>): Array<Array<Float32Array>> => {
  const acts: Array<Array<Float32Array>> = []
  oracleDecode(config, weights, prompt, 1, undefined, acts)
  return acts
}
