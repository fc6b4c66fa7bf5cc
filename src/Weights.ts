/**
 * ModelWeights: the checkpoint's tensors under their HF names (camelCased).
 *
 * This module holds THE one table from HF `LlamaForCausalLM`/`Qwen2ForCausalLM` tensor names to
 * ModelWeights fields and to llama.cpp's GGUF tensor names (docs/formats.md, tinygrad's
 * keymap style), and checks every tensor's presence and exact shape against the config. Tensors it
 * does not know (`rotary_emb.inv_freq`, ...) are ignored.
 *
 * It does not read files (Safetensors.ts, Gguf.ts, Checkpoint.ts) and keeps tensors raw (Tensor.ts):
 * each backend decides how to hold them. GGUF-specific row orders (the Q/K permutation) are undone by
 * GgufCheckpoint.ts before tensors get here.
 */
import { Effect } from "effect"
import type { LlamaConfig } from "./Config.ts"
import { CheckpointError } from "./Safetensors.ts"
import { blockSize, convertTensor, fitsBlocks, isQuantized, tensorBytes } from "./Tensor.ts"
import type { QuantType, RawTensor } from "./Tensor.ts"

export interface LayerWeights {
  readonly inputLayernorm: RawTensor // (hidden)
  readonly qProj: RawTensor // (numHeads·headDim, hidden)
  readonly kProj: RawTensor // (numKvHeads·headDim, hidden)
  readonly vProj: RawTensor // (numKvHeads·headDim, hidden)
  readonly oProj: RawTensor // (hidden, numHeads·headDim)
  readonly postAttentionLayernorm: RawTensor // (hidden)
  readonly gateProj: RawTensor // (intermediate, hidden)
  readonly upProj: RawTensor // (intermediate, hidden)
  readonly downProj: RawTensor // (hidden, intermediate)
  /** Present exactly when config.attentionBias (Qwen2): (numHeads·headDim). */
  readonly qProjBias?: RawTensor
  /** Present exactly when config.attentionBias (Qwen2): (numKvHeads·headDim). */
  readonly kProjBias?: RawTensor
  /** Present exactly when config.attentionBias (Qwen2): (numKvHeads·headDim). */
  readonly vProjBias?: RawTensor
}

export interface ModelWeights {
  readonly embedTokens: RawTensor // (vocab, hidden)
  readonly layers: ReadonlyArray<LayerWeights>
  readonly norm: RawTensor // (hidden)
  /** (vocab, hidden); the very same object as embedTokens when tie_word_embeddings is true. */
  readonly lmHead: RawTensor
}

type Shape = (c: LlamaConfig) => ReadonlyArray<number>

/**
 * Per-layer tensors in HF order: field, name suffix after `model.layers.{i}.`, shape, and the GGUF
 * name suffix after `blk.{i}.` (llama.cpp's names, docs/formats.md).
 */
export const layerTable: ReadonlyArray<readonly [keyof LayerWeights, string, Shape, string]> = [
  ["inputLayernorm", "input_layernorm.weight", (c) => [c.hiddenSize], "attn_norm.weight"],
  ["qProj", "self_attn.q_proj.weight", (c) => [c.numAttentionHeads * c.headDim, c.hiddenSize], "attn_q.weight"],
  ["kProj", "self_attn.k_proj.weight", (c) => [c.numKeyValueHeads * c.headDim, c.hiddenSize], "attn_k.weight"],
  ["vProj", "self_attn.v_proj.weight", (c) => [c.numKeyValueHeads * c.headDim, c.hiddenSize], "attn_v.weight"],
  ["oProj", "self_attn.o_proj.weight", (c) => [c.hiddenSize, c.numAttentionHeads * c.headDim], "attn_output.weight"],
  ["postAttentionLayernorm", "post_attention_layernorm.weight", (c) => [c.hiddenSize], "ffn_norm.weight"],
  ["gateProj", "mlp.gate_proj.weight", (c) => [c.intermediateSize, c.hiddenSize], "ffn_gate.weight"],
  ["upProj", "mlp.up_proj.weight", (c) => [c.intermediateSize, c.hiddenSize], "ffn_up.weight"],
  ["downProj", "mlp.down_proj.weight", (c) => [c.hiddenSize, c.intermediateSize], "ffn_down.weight"]
]

/** The q/k/v bias vectors of architectures with attentionBias (Qwen2), same columns as layerTable. */
export const biasTable: ReadonlyArray<readonly [keyof LayerWeights, string, Shape, string]> = [
  ["qProjBias", "self_attn.q_proj.bias", (c) => [c.numAttentionHeads * c.headDim], "attn_q.bias"],
  ["kProjBias", "self_attn.k_proj.bias", (c) => [c.numKeyValueHeads * c.headDim], "attn_k.bias"],
  ["vProjBias", "self_attn.v_proj.bias", (c) => [c.numKeyValueHeads * c.headDim], "attn_v.bias"]
]

/** The per-layer rows a config needs: layerTable, plus biasTable when config.attentionBias. */
export const layerRows = (config: LlamaConfig): ReadonlyArray<readonly [keyof LayerWeights, string, Shape, string]> =>
  config.attentionBias ? [...layerTable, ...biasTable] : layerTable

/**
 * Model-level tensors: HF name, shape and GGUF name. `lmHead` is absent from checkpoints with tied
 * embeddings (HF `lm_head.weight`, GGUF `output.weight`).
 */
export const modelTable: { readonly [F in "embedTokens" | "norm" | "lmHead"]: readonly [string, Shape, string] } = {
  embedTokens: ["model.embed_tokens.weight", (c) => [c.vocabSize, c.hiddenSize], "token_embd.weight"],
  norm: ["model.norm.weight", (c) => [c.hiddenSize], "output_norm.weight"],
  lmHead: ["lm_head.weight", (c) => [c.vocabSize, c.hiddenSize], "output.weight"]
}

/** `model.layers.{i}.<suffix>`. */
export const layerTensorName = (layer: number, suffix: string): string => `model.layers.${layer}.${suffix}`

/**
 * HF tensor name → GGUF tensor name through the tables above, e.g. `model.layers.3.self_attn.o_proj.weight`
 * → `blk.3.attn_output.weight`; undefined for names the tables do not know.
 */
export const hfToGgufName = (hfName: string): string | undefined => {
  for (const [hf, , gguf] of Object.values(modelTable)) if (hf === hfName) return gguf
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hfName)
  if (m === null) return undefined
  const row = [...layerTable, ...biasTable].find(([, suffix]) => suffix === m[2])
  return row === undefined ? undefined : `blk.${m[1]}.${row[3]}`
}

/** GGUF tensor name → HF tensor name (the inverse of hfToGgufName); undefined for unknown names. */
export const ggufToHfName = (ggufName: string): string | undefined => {
  for (const [hf, , gguf] of Object.values(modelTable)) if (gguf === ggufName) return hf
  const m = /^blk\.(\d+)\.(.+)$/.exec(ggufName)
  if (m === null) return undefined
  const row = [...layerTable, ...biasTable].find(([, , , suffix]) => suffix === m[2])
  return row === undefined ? undefined : layerTensorName(Number(m[1]), row[1])
}

/** Every tensor the model needs, in HF order, with its expected shape (no `lm_head.weight` when tied). */
export const expectedTensors = (config: LlamaConfig): ReadonlyArray<{ readonly name: string; readonly shape: ReadonlyArray<number> }> => {
  const entry = ([name, shape]: readonly [string, Shape, ...Array<unknown>]) => ({ name, shape: shape(config) })
  const out = [entry(modelTable.embedTokens)]
  for (let i = 0; i < config.numHiddenLayers; i++)
    for (const [, suffix, shape] of layerRows(config)) out.push(entry([layerTensorName(i, suffix), shape]))
  out.push(entry(modelTable.norm))
  if (!config.tieWordEmbeddings) out.push(entry(modelTable.lmHead))
  return out
}

const sameShape = (a: ReadonlyArray<number>, b: ReadonlyArray<number>) => a.length === b.length && a.every((d, i) => d === b[i])

/**
 * Assemble ModelWeights from tensors keyed by HF name, checking presence and exact shapes.
 *
 * **When to use**: after reading a checkpoint's tensors (Checkpoint.loadCheckpoint calls it).
 *
 * **Details**: fails with a CheckpointError naming the tensor and the expected and actual shapes. With
 * `tieWordEmbeddings`, `lmHead` is the very same object as `embedTokens` and any `lm_head.weight` is
 * ignored (as HF does). Unknown tensors are ignored. `file` names the file a tensor came from in errors:
 * a string, or a function of the tensor name for sharded checkpoints.
 *
 * @category assembling
 */
export const assembleWeights = (
  config: LlamaConfig,
  tensors: ReadonlyMap<string, RawTensor>,
  file: string | ((tensorName: string) => string) = ""
): Effect.Effect<ModelWeights, CheckpointError> =>
  Effect.gen(function* () {
    const fileOf = typeof file === "function" ? file : () => file
    const get = ([name, shape]: readonly [string, Shape, ...Array<unknown>]): Effect.Effect<RawTensor, CheckpointError> => {
      const expected = shape(config)
      const t = tensors.get(name)
      const error = (message: string) => new CheckpointError({ file: fileOf(name), tensor: name, message })
      if (t === undefined) return Effect.fail(error(`missing tensor "${name}" (expected shape [${expected.join(", ")}])`))
      if (!sameShape(t.shape, expected))
        return Effect.fail(error(`tensor "${name}" has shape [${t.shape.join(", ")}], expected [${expected.join(", ")}]`))
      if (!fitsBlocks(t.dtype, expected))
        return Effect.fail(error(`tensor "${name}" is ${t.dtype}, whose rows are blocks of ${blockSize(t.dtype)} values, but has ${expected.at(-1)} columns`))
      const bytes = tensorBytes(t.dtype, expected)
      if (t.data.byteLength !== bytes)
        return Effect.fail(error(`tensor "${name}" holds ${t.data.byteLength} bytes, expected ${bytes} for ${t.dtype} [${expected.join(", ")}]`))
      return Effect.succeed(t.name === name ? t : { ...t, name })
    }
    const embedTokens = yield* get(modelTable.embedTokens)
    const layers: Array<LayerWeights> = []
    for (let i = 0; i < config.numHiddenLayers; i++) {
      const layer: Partial<Record<keyof LayerWeights, RawTensor>> = {}
      for (const [field, suffix, shape] of layerRows(config)) layer[field] = yield* get([layerTensorName(i, suffix), shape])
      layers.push(layer as LayerWeights)
    }
    const weights: ModelWeights = {
      embedTokens,
      layers,
      norm: yield* get(modelTable.norm),
      lmHead: config.tieWordEmbeddings ? embedTokens : yield* get(modelTable.lmHead)
    }
    return weights
  })

/**
 * The reverse of assembleWeights: the tensors of a ModelWeights under their HF names, in HF order
 * (embed; per layer input_layernorm, q, k, v, o, post_attention_layernorm, gate, up, down, then the
 * q/k/v biases when the config has them; norm; lm_head unless tied), ready for Safetensors.writeSafetensors.
 *
 * @category assembling
 */
export const weightEntries = (config: LlamaConfig, weights: ModelWeights): Array<RawTensor> => {
  const named = (t: RawTensor, name: string): RawTensor => (t.name === name ? t : { ...t, name })
  const out = [named(weights.embedTokens, modelTable.embedTokens[0])]
  weights.layers.forEach((layer, i) => {
    for (const [field, suffix] of layerRows(config)) {
      const t = layer[field]
      if (t !== undefined) out.push(named(t, layerTensorName(i, suffix)))
    }
  })
  out.push(named(weights.norm, modelTable.norm[0]))
  if (!config.tieWordEmbeddings) out.push(named(weights.lmHead, modelTable.lmHead[0]))
  return out
}

/** The matrices of a layer (the weights a matmul reads); norms and biases stay as they are. */
const matrixFields = ["qProj", "kProj", "vProj", "oProj", "gateProj", "upProj", "downProj"] as const

/**
 * Quantize the weight matrices of `weights` to `type` (Quant.quantize, ggml's reference quantizers):
 * every float layer matrix, the embedding table and lm_head. A matrix whose row length is not a multiple
 * of the block size, or that is quantized already, stays as it is. Norms and biases are untouched; a
 * tied lm_head stays the very same object as the (quantized) embedding.
 *
 * **When to use**: the load-time `quantize` option of Checkpoint.loadCheckpoint (`--quantize q8_0`),
 * to run an HF checkpoint with quantized weights (memory, and the integer kernels of backends that have
 * them). The reference backend dequantizes exactly, so it then computes with the quantized values.
 *
 * @category assembling
 */
export const quantizeWeights = (config: LlamaConfig, weights: ModelWeights, type: QuantType): ModelWeights => {
  // Already-quantized tensors (from a GGUF) are kept: requantizing would only add error.
  const q = (t: RawTensor): RawTensor => (isQuantized(t.dtype) || !fitsBlocks(type, t.shape) ? t : convertTensor(t, type))
  const embedTokens = q(weights.embedTokens)
  return {
    embedTokens,
    layers: weights.layers.map((layer) => {
      const out: Record<string, RawTensor> = { ...layer }
      for (const f of matrixFields) out[f] = q(layer[f])
      return out as unknown as LayerWeights
    }),
    norm: weights.norm,
    lmHead: config.tieWordEmbeddings || weights.lmHead === weights.embedTokens ? embedTokens : q(weights.lmHead)
  }
}
