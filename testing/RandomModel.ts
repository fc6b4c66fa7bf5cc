/**
 * RandomModel: deterministic random Llama weights from a seed, and a few named shapes.
 *
 * Used by the oracle tests (tiny models written both as an HF directory and as a GGUF) and by the
 * benchmark script (a TinyLlama-1.1B-shaped model without downloading one). Each tensor is drawn from
 * its own PRNG stream, seeded from (seed, tensor name), and written straight into the target dtype's
 * bytes chunk by chunk: the model is never held in f32, and a layer's values do not depend on how many
 * layers the model has (layer 0 of "tinyllama-1.1b-2layers" equals layer 0 of "tinyllama-1.1b").
 *
 * Distributions follow the llama.cpp oracle test model of docs/formats.md (embeddings N(0,1), q/k/v N(0,0.3²), o and the MLP
 * N(0,0.2²), lm_head N(0,0.5²), norms 1 + 0.1·N(0,1)), with matrix std devs multiplied by
 * sqrt(64 / hidden) once hidden > 64, so each projection's output variance (Σ over hidden inputs) stays
 * what it is for the 64-wide test model and logits stay in a sensible range for big shapes.
 *
 * Not a trained model and not an initialisation scheme for training: the outputs are meaningless text.
 */
import { Effect } from "effect"
import { mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import type { LlamaConfig } from "../src/Config.ts"
import { CheckpointError, writeSafetensors } from "../src/Safetensors.ts"
import type { DType, FloatDType, RawTensor } from "../src/Tensor.ts"
import { f32ToF16Bits, isQuantized, numel } from "../src/Tensor.ts"
import type { LayerWeights, ModelWeights } from "../src/Weights.ts"
import { quantizeWeights, weightEntries } from "../src/Weights.ts"

// ---------------------------------------------------------------------------------------------------
// PRNG: mulberry32 (32-bit state) + Marsaglia's polar method

/** FNV-1a over the UTF-16 code units of `s`, mixed with `seed`: a per-tensor stream seed. */
const streamSeed = (seed: number, s: string): number => {
  let h = (0x811c9dc5 ^ (seed >>> 0)) >>> 0
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  // One more avalanche round (murmur3 fmix32) so nearby names give unrelated states.
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b) >>> 0
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35) >>> 0
  h ^= h >>> 16
  return h >>> 0
}

/**
 * Fill `out` with N(mean, std²) samples from a mulberry32 stream starting at `state`; returns the next
 * state. Marsaglia's polar method (the rejection form of Box–Muller): exact normals from pairs of
 * uniforms in the unit disc, with one log and one sqrt per pair and no trig, about twice as fast as
 * Box–Muller in V8, which matters at 1.1 G samples. An odd tail keeps the first of its pair.
 */
const fillNormal = (out: Float32Array, state: number, mean: number, std: number): number => {
  let a = state | 0
  const n = out.length
  for (let i = 0; i < n; ) {
    // Two mulberry32 outputs mapped to [-1, 1), inlined: a closure call per draw costs ~2× here.
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    const x = ((t ^ (t >>> 14)) >>> 0) / 2147483648 - 1
    a = (a + 0x6d2b79f5) | 0
    t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    const y = ((t ^ (t >>> 14)) >>> 0) / 2147483648 - 1
    const s = x * x + y * y
    if (s >= 1 || s === 0) continue // outside the unit disc (21% of draws): reject
    const f = Math.sqrt((-2 * Math.log(s)) / s) * std
    out[i++] = mean + x * f
    if (i < n) out[i++] = mean + y * f
  }
  return a
}

// ---------------------------------------------------------------------------------------------------
// Drawing one tensor straight into dtype bytes

/** Elements generated per chunk: 64 Ki f32 = 256 KiB of scratch, whatever the tensor size. */
const CHUNK = 1 << 16

/** Little-endian platforms only (every Node target sirius-ts supports): u16/u32 views write LE bytes. */
const encodeChunk = (dtype: FloatDType, chunk: Float32Array, data: Uint8Array, start: number): void => {
  const n = chunk.length
  switch (dtype) {
    case "F32":
      data.set(new Uint8Array(chunk.buffer, chunk.byteOffset, n * 4), start * 4)
      return
    case "BF16": {
      // Round-to-nearest-even on the f32 bits (random normals are finite: no NaN branch needed).
      const bits = new Uint32Array(chunk.buffer, chunk.byteOffset, n)
      const out = new Uint16Array(data.buffer, data.byteOffset + start * 2, n)
      for (let i = 0; i < n; i++) {
        const u = bits[i]!
        out[i] = (u + 0x7fff + ((u >>> 16) & 1)) >>> 16
      }
      return
    }
    case "F16": {
      const out = new Uint16Array(data.buffer, data.byteOffset + start * 2, n)
      for (let i = 0; i < n; i++) out[i] = f32ToF16Bits(chunk[i]!)
      return
    }
  }
}

/**
 * One tensor of N(mean, std²) values, seeded by (seed, name), encoded as `dtype`.
 *
 * @category constructors
 */
export const randomTensor = (
  name: string,
  dtype: FloatDType,
  shape: ReadonlyArray<number>,
  seed: number,
  mean: number,
  std: number
): RawTensor => {
  const n = numel(shape)
  const bytes = dtype === "F32" ? 4 : 2
  // A fresh ArrayBuffer per tensor keeps byteOffset 0, so the u16 view above is always aligned.
  const data = new Uint8Array(n * bytes)
  const scratch = new Float32Array(Math.min(CHUNK, n))
  let state = streamSeed(seed, name)
  for (let start = 0; start < n; start += CHUNK) {
    const chunk = start + CHUNK <= n ? scratch : scratch.subarray(0, n - start)
    state = fillNormal(chunk, state, mean, std)
    encodeChunk(dtype, chunk, data, start)
  }
  return { name, dtype, shape, data }
}

// ---------------------------------------------------------------------------------------------------
// Whole models

export interface RandomWeightsOptions {
  readonly seed: number
  /**
   * Dtype of every tensor, norms included (as in a real bf16 checkpoint). Default "F32". A quantized
   * dtype draws F32 values and quantizes the matrices (Weights.quantizeWeights); norms and biases stay F32.
   */
  readonly dtype?: DType
}

/**
 * Deterministic random weights for `config`, under HF tensor names and `[out, in]` shapes.
 *
 * When to use: tests and benchmarks that need a Llama-shaped model without a download.
 *
 * Details: every tensor has its own PRNG stream keyed by (seed, HF name), so the result does not
 * depend on generation order. When `config.tieWordEmbeddings` is true, `lmHead === embedTokens`.
 * Memory: the model's bytes in its dtype (2.2 GB for TinyLlama-1.1B in BF16) plus 256 KiB of scratch.
 *
 * @example
 * const w = randomWeights(shapes.tiny, { seed: 1 })
 * w.layers.length // => 2
 *
 * @category constructors
 */
export const randomWeights = (config: LlamaConfig, options: RandomWeightsOptions): ModelWeights => {
  const wanted = options.dtype ?? "F32"
  if (isQuantized(wanted)) return quantizeWeights(config, randomWeights(config, { ...options, dtype: "F32" }), wanted)
  const dtype: FloatDType = wanted
  const seed = options.seed
  const D = config.hiddenSize
  const F = config.intermediateSize
  const qRows = config.numAttentionHeads * config.headDim
  const kvRows = config.numKeyValueHeads * config.headDim
  // sqrt(64 / hidden): §7.1's std devs were chosen for hidden 64 (see the module header).
  const s = D > 64 ? Math.sqrt(64 / D) : 1
  const matrix = (name: string, shape: ReadonlyArray<number>, std: number) => randomTensor(name, dtype, shape, seed, 0, std * s)
  const norm = (name: string) => randomTensor(name, dtype, [D], seed, 1, 0.1)

  const embedTokens = randomTensor("model.embed_tokens.weight", dtype, [config.vocabSize, D], seed, 0, 1)
  const layers: Array<LayerWeights> = []
  for (let i = 0; i < config.numHiddenLayers; i++) {
    const p = `model.layers.${i}.`
    layers.push({
      inputLayernorm: norm(`${p}input_layernorm.weight`),
      qProj: matrix(`${p}self_attn.q_proj.weight`, [qRows, D], 0.3),
      kProj: matrix(`${p}self_attn.k_proj.weight`, [kvRows, D], 0.3),
      vProj: matrix(`${p}self_attn.v_proj.weight`, [kvRows, D], 0.3),
      oProj: matrix(`${p}self_attn.o_proj.weight`, [D, qRows], 0.2),
      postAttentionLayernorm: norm(`${p}post_attention_layernorm.weight`),
      gateProj: matrix(`${p}mlp.gate_proj.weight`, [F, D], 0.2),
      upProj: matrix(`${p}mlp.up_proj.weight`, [F, D], 0.2),
      downProj: matrix(`${p}mlp.down_proj.weight`, [D, F], 0.2),
      // Qwen2's q/k/v biases: N(0, 0.3²), large enough that a forward pass ignoring them is visibly wrong.
      ...(config.attentionBias
        ? {
            qProjBias: randomTensor(`${p}self_attn.q_proj.bias`, dtype, [qRows], seed, 0, 0.3),
            kProjBias: randomTensor(`${p}self_attn.k_proj.bias`, dtype, [kvRows], seed, 0, 0.3),
            vProjBias: randomTensor(`${p}self_attn.v_proj.bias`, dtype, [kvRows], seed, 0, 0.3)
          }
        : {})
    })
  }
  const norm_ = norm("model.norm.weight")
  const lmHead = config.tieWordEmbeddings ? embedTokens : matrix("lm_head.weight", [config.vocabSize, D], 0.5)
  return { embedTokens, layers, norm: norm_, lmHead }
}

// ---------------------------------------------------------------------------------------------------
// Named shapes

const tinyllama: LlamaConfig = {
  architecture: "llama",
  vocabSize: 32000,
  hiddenSize: 2048,
  intermediateSize: 5632,
  numHiddenLayers: 22,
  numAttentionHeads: 32,
  numKeyValueHeads: 4,
  headDim: 64,
  maxPositionEmbeddings: 2048,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  ropeScaling: undefined,
  tieWordEmbeddings: false,
  attentionBias: false,
  bosTokenId: 1,
  eosTokenIds: [2]
}

/**
 * Named model shapes for tests and benchmarks.
 *
 * - `tinyllama-1.1b`: TinyLlama-1.1B (hidden 2048, ffn 5632, 32 heads, 4 KV heads, 22 layers, vocab 32000).
 * - `tinyllama-1.1b-2layers`: the same with 2 layers (fast benchmark smoke runs).
 * - `tiny`: the llama.cpp oracle's test shape (docs/formats.md) (hidden 64, 4 heads, 2 KV heads, ffn 96,
 *   2 layers), with vocab 320 so the GGUF's default vocab has room past the 259 special/byte tokens.
 *
 * @category constructors
 */
export const shapes = {
  "tinyllama-1.1b": tinyllama,
  "tinyllama-1.1b-2layers": { ...tinyllama, numHiddenLayers: 2 },
  tiny: {
    architecture: "llama",
    vocabSize: 320,
    hiddenSize: 64,
    intermediateSize: 96,
    numHiddenLayers: 2,
    numAttentionHeads: 4,
    numKeyValueHeads: 2,
    headDim: 16,
    maxPositionEmbeddings: 256,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    ropeScaling: undefined,
    tieWordEmbeddings: false,
    attentionBias: false,
    bosTokenId: 1,
    eosTokenIds: [2]
  }
} as const satisfies Record<string, LlamaConfig>

export type ShapeName = keyof typeof shapes

// ---------------------------------------------------------------------------------------------------
// Writing an HF directory

/**
 * The HF `config.json` object (snake_case) describing `config` (`torch_dtype` from `dtype`); `rope_scaling` uses the older top-level
 * layout (`rope_theta` + `rope_scaling: { rope_type: "llama3", … }`), which Config.decodeConfig accepts.
 *
 * @category writers
 */
export const hfConfigJson = (config: LlamaConfig, dtype: FloatDType = "F32"): Record<string, unknown> => ({
  architectures: [config.architecture === "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM"],
  model_type: config.architecture,
  hidden_act: "silu",
  vocab_size: config.vocabSize,
  hidden_size: config.hiddenSize,
  intermediate_size: config.intermediateSize,
  num_hidden_layers: config.numHiddenLayers,
  num_attention_heads: config.numAttentionHeads,
  num_key_value_heads: config.numKeyValueHeads,
  head_dim: config.headDim,
  max_position_embeddings: config.maxPositionEmbeddings,
  rms_norm_eps: config.rmsNormEps,
  rope_theta: config.ropeTheta,
  rope_scaling:
    config.ropeScaling === undefined
      ? null
      : config.ropeScaling.ropeType === "freq_factors"
        ? unrepresentable("llama.cpp's per-frequency RoPE factors have no config.json form")
        : {
          rope_type: "llama3",
          factor: config.ropeScaling.factor,
          low_freq_factor: config.ropeScaling.lowFreqFactor,
          high_freq_factor: config.ropeScaling.highFreqFactor,
          original_max_position_embeddings: config.ropeScaling.originalMaxPositionEmbeddings
        },
  tie_word_embeddings: config.tieWordEmbeddings,
  bos_token_id: config.bosTokenId ?? null,
  eos_token_id: config.eosTokenIds.length === 1 ? config.eosTokenIds[0] : [...config.eosTokenIds],
  // Qwen2 has q/k/v biases unconditionally and no attention_bias field.
  ...(config.architecture === "llama" ? { attention_bias: false } : { use_sliding_window: false }),
  mlp_bias: false,
  torch_dtype: { F32: "float32", F16: "float16", BF16: "bfloat16" }[dtype]
})

const unrepresentable = (what: string): never => {
  throw new Error(`hfConfigJson: ${what}`)
}

export interface WriteHfCheckpointOptions {
  /**
   * 1 (default): a single `model.safetensors`. n > 1: `model-0000k-of-0000n.safetensors` shards, split
   * by bytes in tensor order, plus `model.safetensors.index.json`.
   */
  readonly shards?: number
}

/**
 * Write `weights` as an HF model directory `dir` (created if needed): `config.json` and safetensors
 * (tensors in their stored dtype, written one at a time by Safetensors.writeSafetensors).
 *
 * When to use: tests that load a random model through Checkpoint.loadCheckpoint, and the benchmark script.
 *
 * @example
 * Effect.runSync(writeHfCheckpoint("/tmp/tiny", shapes.tiny, randomWeights(shapes.tiny, { seed: 1 }), { shards: 2 }))
 *
 * @category writers
 */
export const writeHfCheckpoint = (
  dir: string,
  config: LlamaConfig,
  weights: ModelWeights,
  options: WriteHfCheckpointOptions = {}
): Effect.Effect<void, CheckpointError> =>
  Effect.gen(function* () {
    const entries = weightEntries(config, weights)
    const shards = Math.max(1, Math.min(options.shards ?? 1, entries.length))
    const dtype = weights.embedTokens.dtype
    const configJson = hfConfigJson(config, dtype === "F16" || dtype === "BF16" ? dtype : "F32")
    yield* Effect.try({
      try: () => {
        mkdirSync(dir, { recursive: true })
        writeFileSync(join(dir, "config.json"), JSON.stringify(configJson, null, 2) + "\n")
      },
      catch: (cause) => new CheckpointError({ file: dir, tensor: "", message: `${dir}: cannot write config.json (${String(cause)})` })
    })
    if (shards === 1) return yield* writeSafetensors(join(dir, "model.safetensors"), entries, { format: "pt" })

    // Contiguous split by bytes: shard k starts at the first tensor whose preceding bytes reach k/n of
    // the total, keeping at least one tensor per shard.
    const total = entries.reduce((a, t) => a + t.data.byteLength, 0)
    const cuts = [0]
    let before = 0
    for (let i = 0, k = 1; i < entries.length && k < shards; i++) {
      const mustCut = entries.length - i === shards - k // exactly one tensor left per remaining shard
      if (i > cuts[k - 1]! && (before >= (k / shards) * total || mustCut)) {
        cuts.push(i)
        k++
      }
      before += entries[i]!.data.byteLength
    }
    cuts.push(entries.length)
    const groups = cuts.slice(0, -1).map((c, k) => entries.slice(c, cuts[k + 1]))
    const pad = (n: number) => String(n).padStart(5, "0")
    const weightMap: Record<string, string> = {}
    for (const [k, group] of groups.entries()) {
      const file = `model-${pad(k + 1)}-of-${pad(shards)}.safetensors`
      for (const t of group) weightMap[t.name] = file
      yield* writeSafetensors(join(dir, file), group, { format: "pt" })
    }
    yield* Effect.try({
      try: () =>
        writeFileSync(
          join(dir, "model.safetensors.index.json"),
          JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2) + "\n"
        ),
      catch: (cause) => new CheckpointError({ file: dir, tensor: "", message: `${dir}: cannot write the index (${String(cause)})` })
    })
  })
