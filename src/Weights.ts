/**
 * ModelWeights: the checkpoint's tensors under their HF names (camelCased).
 *
 * This module holds THE one table from HF `LlamaForCausalLM` tensor names to ModelWeights fields
 * (docs/formats.md, tinygrad's keymap style), and checks every tensor's presence and exact
 * shape against the config. Tensors it does not know (`rotary_emb.inv_freq`, ...) are ignored.
 *
 * It does not read files (Safetensors.ts, Checkpoint.ts) and keeps tensors raw (Tensor.ts): each backend
 * decides how to hold them.
 */
import { Effect } from "effect"
import type { LlamaConfig } from "./Config.ts"
import { CheckpointError } from "./Safetensors.ts"
import { bytesPerElement, numel } from "./Tensor.ts"
import type { RawTensor } from "./Tensor.ts"

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
}

export interface ModelWeights {
  readonly embedTokens: RawTensor // (vocab, hidden)
  readonly layers: ReadonlyArray<LayerWeights>
  readonly norm: RawTensor // (hidden)
  /** (vocab, hidden); the very same object as embedTokens when tie_word_embeddings is true. */
  readonly lmHead: RawTensor
}

type Shape = (c: LlamaConfig) => ReadonlyArray<number>

/** Per-layer tensors in HF order: field, name suffix after `model.layers.{i}.`, shape. */
export const layerTable: ReadonlyArray<readonly [keyof LayerWeights, string, Shape]> = [
  ["inputLayernorm", "input_layernorm.weight", (c) => [c.hiddenSize]],
  ["qProj", "self_attn.q_proj.weight", (c) => [c.numAttentionHeads * c.headDim, c.hiddenSize]],
  ["kProj", "self_attn.k_proj.weight", (c) => [c.numKeyValueHeads * c.headDim, c.hiddenSize]],
  ["vProj", "self_attn.v_proj.weight", (c) => [c.numKeyValueHeads * c.headDim, c.hiddenSize]],
  ["oProj", "self_attn.o_proj.weight", (c) => [c.hiddenSize, c.numAttentionHeads * c.headDim]],
  ["postAttentionLayernorm", "post_attention_layernorm.weight", (c) => [c.hiddenSize]],
  ["gateProj", "mlp.gate_proj.weight", (c) => [c.intermediateSize, c.hiddenSize]],
  ["upProj", "mlp.up_proj.weight", (c) => [c.intermediateSize, c.hiddenSize]],
  ["downProj", "mlp.down_proj.weight", (c) => [c.hiddenSize, c.intermediateSize]]
]

/** Model-level tensors: HF name and shape. `lmHead` is absent from checkpoints with tied embeddings. */
export const modelTable: { readonly [F in "embedTokens" | "norm" | "lmHead"]: readonly [string, Shape] } = {
  embedTokens: ["model.embed_tokens.weight", (c) => [c.vocabSize, c.hiddenSize]],
  norm: ["model.norm.weight", (c) => [c.hiddenSize]],
  lmHead: ["lm_head.weight", (c) => [c.vocabSize, c.hiddenSize]]
}

/** `model.layers.{i}.<suffix>`. */
export const layerTensorName = (layer: number, suffix: string): string => `model.layers.${layer}.${suffix}`

/** Every tensor the model needs, in HF order, with its expected shape (no `lm_head.weight` when tied). */
export const expectedTensors = (config: LlamaConfig): ReadonlyArray<{ readonly name: string; readonly shape: ReadonlyArray<number> }> => {
  const entry = ([name, shape]: readonly [string, Shape]) => ({ name, shape: shape(config) })
  const out = [entry(modelTable.embedTokens)]
  for (let i = 0; i < config.numHiddenLayers; i++)
    for (const [, suffix, shape] of layerTable) out.push(entry([layerTensorName(i, suffix), shape]))
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
    const get = ([name, shape]: readonly [string, Shape]): Effect.Effect<RawTensor, CheckpointError> => {
      const expected = shape(config)
      const t = tensors.get(name)
      const error = (message: string) => new CheckpointError({ file: fileOf(name), tensor: name, message })
      if (t === undefined) return Effect.fail(error(`missing tensor "${name}" (expected shape [${expected.join(", ")}])`))
      if (!sameShape(t.shape, expected))
        return Effect.fail(error(`tensor "${name}" has shape [${t.shape.join(", ")}], expected [${expected.join(", ")}]`))
      const bytes = numel(expected) * bytesPerElement[t.dtype]
      if (t.data.byteLength !== bytes)
        return Effect.fail(error(`tensor "${name}" holds ${t.data.byteLength} bytes, expected ${bytes} for ${t.dtype} [${expected.join(", ")}]`))
      return Effect.succeed(t.name === name ? t : { ...t, name })
    }
    const embedTokens = yield* get(modelTable.embedTokens)
    const layers: Array<LayerWeights> = []
    for (let i = 0; i < config.numHiddenLayers; i++) {
      const layer: Partial<Record<keyof LayerWeights, RawTensor>> = {}
      for (const [field, suffix, shape] of layerTable) layer[field] = yield* get([layerTensorName(i, suffix), shape])
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
 * (embed; per layer input_layernorm, q, k, v, o, post_attention_layernorm, gate, up, down; norm; lm_head
 * unless tied), ready for Safetensors.writeSafetensors.
 *
 * @category assembling
 */
export const weightEntries = (config: LlamaConfig, weights: ModelWeights): Array<RawTensor> => {
  const named = (t: RawTensor, name: string): RawTensor => (t.name === name ? t : { ...t, name })
  const out = [named(weights.embedTokens, modelTable.embedTokens[0])]
  weights.layers.forEach((layer, i) => {
    for (const [field, suffix] of layerTable) out.push(named(layer[field], layerTensorName(i, suffix)))
  })
  out.push(named(weights.norm, modelTable.norm[0]))
  if (!config.tieWordEmbeddings) out.push(named(weights.lmHead, modelTable.lmHead[0]))
  return out
}
