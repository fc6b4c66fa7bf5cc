/**
 * Model: a checkpoint's weights made resident on one Kernels backend, plus what the forward pass
 * derives once from the config (the RoPE inverse frequencies). Loading uploads every weight exactly
 * once; a tied lm_head shares the embedding's resident matrix.
 */
import { Effect } from "effect"
import type { Checkpoint } from "./Checkpoint.ts"
import type { LlamaConfig } from "./Config.ts"
import { type KernelError, Kernels, type KernelsShape, type Matrix, type Vector } from "./Kernels.ts"
import type { OnProgress } from "./LoadProgress.ts"
import { ropeInvFreq } from "./Rope.ts"
import { type RawTensor, transpose } from "./Tensor.ts"
import type { ModelWeights } from "./Weights.ts"

export interface LayerHandles {
  readonly inputLayernorm: Vector
  readonly qProj: Matrix
  readonly kProj: Matrix
  readonly vProj: Matrix
  readonly oProj: Matrix
  readonly postAttentionLayernorm: Vector
  readonly gateProj: Matrix
  readonly upProj: Matrix
  readonly downProj: Matrix
  /** down_proj transposed (F, D), one neuron's weights contiguous: present when loaded for fine sparsity. */
  readonly downProjT: Matrix | undefined
  /** q/k/v_proj biases (Qwen2); absent for Llama. */
  readonly qBias?: Vector
  readonly kBias?: Vector
  readonly vBias?: Vector
}

export interface Model {
  readonly config: LlamaConfig
  readonly kernels: KernelsShape
  readonly embedTokens: Matrix
  readonly layers: ReadonlyArray<LayerHandles>
  readonly norm: Vector
  readonly lmHead: Matrix
  /** (Dh/2) RoPE inverse frequencies, rope scaling applied. */
  readonly invFreq: Float32Array
}

export interface LoadOptions {
  /** Also make down_proj resident transposed, for fine sparsity (costs one more copy of down_proj; coarse does not need it). */
  readonly sparse?: boolean
  /** Called after each tensor is made resident (phase "upload"). */
  readonly onProgress?: OnProgress
}

export const fromWeights = Effect.fn("Model.fromWeights")(function* (config: LlamaConfig, weights: ModelWeights, options: LoadOptions = {}) {
  const kernels = yield* Kernels
  // every upload goes through these two, which report progress
  const all = [...weights.layers.flatMap((w) => Object.values(w) as Array<RawTensor>), weights.embedTokens, weights.norm, ...(weights.lmHead === weights.embedTokens ? [] : [weights.lmHead])]
  const totalBytes = all.reduce((n, t) => n + t.data.byteLength, 0) + (options.sparse === true ? weights.layers.reduce((n, w) => n + w.downProj.data.byteLength, 0) : 0)
  const totalTensors = all.length + (options.sparse === true ? weights.layers.length : 0)
  let tensors = 0
  let bytes = 0
  const report = (t: RawTensor) => {
    tensors++
    bytes += t.data.byteLength
    options.onProgress?.({ phase: "upload", source: kernels.name, tensors, totalTensors, bytes, totalBytes })
  }
  const matrix = (t: RawTensor) => Effect.tap(kernels.matrix(t), () => Effect.sync(() => report(t)))
  const vector = (t: RawTensor) => Effect.tap(kernels.vector(t), () => Effect.sync(() => report(t)))
  const layers: Array<LayerHandles> = []
  for (const w of weights.layers) {
    layers.push({
      inputLayernorm: yield* vector(w.inputLayernorm),
      qProj: yield* matrix(w.qProj),
      kProj: yield* matrix(w.kProj),
      vProj: yield* matrix(w.vProj),
      oProj: yield* matrix(w.oProj),
      postAttentionLayernorm: yield* vector(w.postAttentionLayernorm),
      gateProj: yield* matrix(w.gateProj),
      upProj: yield* matrix(w.upProj),
      downProj: yield* matrix(w.downProj),
      downProjT: options.sparse === true ? yield* matrix(transpose(w.downProj)) : undefined,
      // Qwen2's q/k/v biases (Weights: present exactly when config.attentionBias), added by matmul.
      ...(w.qProjBias === undefined ? {} : { qBias: yield* vector(w.qProjBias) }),
      ...(w.kProjBias === undefined ? {} : { kBias: yield* vector(w.kProjBias) }),
      ...(w.vProjBias === undefined ? {} : { vBias: yield* vector(w.vProjBias) })
    })
  }
  const embedTokens = yield* matrix(weights.embedTokens)
  const lmHead = weights.lmHead === weights.embedTokens ? embedTokens : yield* matrix(weights.lmHead)
  const model: Model = {
    config,
    kernels,
    embedTokens,
    layers,
    norm: yield* vector(weights.norm),
    lmHead,
    invFreq: ropeInvFreq(config.headDim, config.ropeTheta, config.ropeScaling)
  }
  return model
}) as (config: LlamaConfig, weights: ModelWeights, options?: LoadOptions) => Effect.Effect<Model, KernelError, Kernels>

export const fromCheckpoint = (checkpoint: Checkpoint, options: LoadOptions = {}): Effect.Effect<Model, KernelError, Kernels> =>
  fromWeights(checkpoint.config, checkpoint.weights, options)
