/**
 * sirius-ts: Llama-family inference with contextual sparsity and Sirius correction, as Effect Streams.
 *
 * Modules, one concept each: Config (config.json), Safetensors, Weights (HF names), Checkpoint (model
 * directories), LoadProgress, Tokenizer, ChatTemplate (conversations to prompt text), Kernels (the backend
 * interface), Model, KvCache, Forward (the forward pass), Sampler, Sparsity, Calibration, Policy
 * (correction policies), DraftTree, Request (the one request lifecycle), Generation (a request in any mode
 * as a stream), Sirius (the correction steps), Client (Promise facade), Eval, Bundled (the bundled model's
 * paths), Gguf.
 * Backends: `sirius-ts/reference`, `sirius-ts/simd`, `sirius-ts/gpu`. An effect/ai provider:
 * `sirius-ts/ai`; the OpenAI-compatible server: `sirius-ts/serve`.
 */
export * as Bundled from "./Bundled.ts"
export * as Calibration from "./Calibration.ts"
export * as ChatTemplate from "./ChatTemplate.ts"
export * as Checkpoint from "./Checkpoint.ts"
export * as Client from "./Client.ts"
export * as Config from "./Config.ts"
export * as DraftTree from "./DraftTree.ts"
export * as Eval from "./Eval.ts"
export * as Forward from "./Forward.ts"
export * as Generation from "./Generation.ts"
export * as Gguf from "./Gguf.ts"
export * as GgufCheckpoint from "./GgufCheckpoint.ts"
export * as GgufTokenizer from "./GgufTokenizer.ts"
export * as Kernels from "./Kernels.ts"
export * as KvCache from "./KvCache.ts"
export * as LoadProgress from "./LoadProgress.ts"
export * as Model from "./Model.ts"
export * as Policy from "./Policy.ts"
export * as Quant from "./Quant.ts"
export * as Request from "./Request.ts"
export * as Safetensors from "./Safetensors.ts"
export * as Sampler from "./Sampler.ts"
export * as Sirius from "./Sirius.ts"
export * as Sparsity from "./Sparsity.ts"
export * as Tensor from "./Tensor.ts"
export * as Tokenizer from "./Tokenizer.ts"
export * as Weights from "./Weights.ts"
