/**
 * GgufCheckpoint: a GGUF file's metadata and tensors mapped to the one LlamaConfig and ModelWeights an
 * HF directory gives, for the `llama` and `qwen2` architectures.
 *
 * Config: llama.cpp's keys under the architecture's prefix (`<arch>.context_length`, `embedding_length`,
 * `block_count`, `feed_forward_length`, `attention.head_count(_kv)`, `attention.key_length` /
 * `value_length`, `rope.dimension_count`, `rope.freq_base`, `attention.layer_norm_rms_epsilon`,
 * `vocab_size`) become the config.json fields they stand for and go through Config.decodeConfig, so
 * both paths share every check; a failure names the GGUF key. What the forward pass cannot run is
 * refused by key: partial rotary dims, distinct K/V head sizes, rope scaling types, experts, Llama
 * attention biases. Llama 3 rope scaling arrives as the `rope_freqs.weight` tensor and is kept as
 * per-frequency factors (LlamaConfig's `freq_factors` rope scaling). A missing `output.weight` means
 * tied embeddings.
 *
 * Weights: GGUF names through Weights.ts's table; Q/K rows of `llama` files un-permuted (llama.cpp's
 * converter interleaves them for its adjacent-pair RoPE, docs/formats.md) — whole row byte
 * runs, so quantized rows move as they are; `qwen2` files are NEOX-ordered already. Only the tensors
 * the model needs are read, each into its own buffer.
 *
 * This module does not build tokenizers (GgufTokenizer.ts) or Checkpoints (Checkpoint.ts).
 */
import { Effect } from "effect"
import { architectures, decodeConfig } from "./Config.ts"
import type { ConfigError, LlamaConfig } from "./Config.ts"
import type { GgufError, GgufHeader } from "./Gguf.ts"
import { ggufError, metaFloat, metaString, metaStrings, metaUint, readGgufTensors, unpermuteQkRows } from "./Gguf.ts"
import type { CheckpointError } from "./Safetensors.ts"
import type { RawTensor } from "./Tensor.ts"
import type { OnProgress } from "./LoadProgress.ts"
import { rowBytes, toFloat32 } from "./Tensor.ts"
import { assembleWeights, expectedTensors, ggufToHfName, hfToGgufName } from "./Weights.ts"
import type { ModelWeights } from "./Weights.ts"

const ROPE_FREQS = "rope_freqs.weight"

/**
 * The LlamaConfig a GGUF header describes. `ropeFactors` is the content of `rope_freqs.weight` when
 * the file has one (read by the caller: it is a tensor, not metadata).
 *
 * @category decoding
 */
export const ggufConfig = (header: GgufHeader, ropeFactors?: Float32Array): Effect.Effect<LlamaConfig, GgufError> =>
  Effect.gen(function* () {
    const file = header.file
    const arch = yield* metaString(header, "general.architecture")
    if (arch === undefined) return yield* ggufError(file, "general.architecture", "", "is required")
    const architecture = architectures.find((a) => a === arch)
    if (architecture === undefined)
      return yield* ggufError(file, "general.architecture", "", `architecture "${arch}" is not supported (sirius-ts runs ${architectures.map((a) => `"${a}"`).join(", ")})`)
    const key = (k: string) => `${arch}.${k}`
    const required = (k: string) =>
      metaUint(header, key(k)).pipe(Effect.flatMap((v) => (v === undefined ? Effect.fail(ggufError(file, key(k), "", "is required")) : Effect.succeed(v))))

    const experts = yield* metaUint(header, key("expert_count"))
    if (experts !== undefined && experts > 0) return yield* ggufError(file, key("expert_count"), "", `mixture-of-experts models (${experts} experts) are not supported`)
    const scalingType = yield* metaString(header, key("rope.scaling.type"))
    if (scalingType !== undefined && scalingType !== "none")
      return yield* ggufError(file, key("rope.scaling.type"), "", `rope scaling "${scalingType}" is not supported (Llama 3 scaling comes as the ${ROPE_FREQS} tensor)`)
    const scalingFactor = yield* metaFloat(header, key("rope.scaling.factor"))
    if (scalingFactor !== undefined && scalingFactor !== 0 && scalingFactor !== 1)
      return yield* ggufError(file, key("rope.scaling.factor"), "", `linear rope scaling (factor ${scalingFactor}) is not supported`)

    const hidden = yield* required("embedding_length")
    const heads = yield* required("attention.head_count")
    const keyLength = yield* metaUint(header, key("attention.key_length"))
    const valueLength = yield* metaUint(header, key("attention.value_length"))
    if (keyLength !== undefined && valueLength !== undefined && keyLength !== valueLength)
      return yield* ggufError(file, key("attention.value_length"), "", `must equal attention.key_length (${valueLength} ≠ ${keyLength}): distinct K and V head sizes are not supported`)
    const headDim = keyLength ?? valueLength ?? (heads > 0 && hidden % heads === 0 ? hidden / heads : undefined)
    const rotary = yield* metaUint(header, key("rope.dimension_count"))
    if (rotary !== undefined && headDim !== undefined && rotary !== headDim)
      return yield* ggufError(file, key("rope.dimension_count"), "", `partial rotary embeddings (${rotary} of ${headDim} dims) are not supported`)

    const tokens = yield* metaStrings(header, "tokenizer.ggml.tokens")
    const embd = header.tensors.find((t) => t.name === "token_embd.weight")
    const vocabKey = header.metadata.has(key("vocab_size")) ? key("vocab_size") : tokens !== undefined ? "tokenizer.ggml.tokens" : "token_embd.weight"
    const vocabSize = (yield* metaUint(header, key("vocab_size"))) ?? tokens?.length ?? embd?.shape[0]
    if (vocabSize === undefined) return yield* ggufError(file, key("vocab_size"), "", "is absent, and neither tokenizer.ggml.tokens nor token_embd.weight gives the vocabulary size")
    if (tokens !== undefined && tokens.length !== vocabSize)
      return yield* ggufError(file, "tokenizer.ggml.tokens", "", `has ${tokens.length} tokens, ${vocabKey} says ${vocabSize}`)

    const hasBias = header.tensors.some((t) => /^blk\.\d+\.attn_[qkv]\.bias$/.test(t.name))
    if (architecture === "llama" && hasBias) return yield* ggufError(file, "general.architecture", "", "llama with q/k/v biases is not supported")
    if (architecture === "qwen2" && ropeFactors !== undefined) return yield* ggufError(file, "", ROPE_FREQS, "rope frequency factors are not supported for qwen2")

    // The config.json each key stands for; decodeConfig's field names are mapped back to the keys.
    const fieldKeys: Record<string, string> = {
      vocab_size: vocabKey,
      hidden_size: key("embedding_length"),
      intermediate_size: key("feed_forward_length"),
      num_hidden_layers: key("block_count"),
      num_attention_heads: key("attention.head_count"),
      num_key_value_heads: key("attention.head_count_kv"),
      head_dim: keyLength !== undefined ? key("attention.key_length") : key("embedding_length"),
      max_position_embeddings: key("context_length"),
      rms_norm_eps: key("attention.layer_norm_rms_epsilon"),
      rope_theta: key("rope.freq_base"),
      bos_token_id: "tokenizer.ggml.bos_token_id",
      eos_token_id: "tokenizer.ggml.eos_token_id"
    }
    const eps = yield* metaFloat(header, key("attention.layer_norm_rms_epsilon"))
    if (eps === undefined) return yield* ggufError(file, key("attention.layer_norm_rms_epsilon"), "", "is required")
    const json: Record<string, unknown> = {
      model_type: architecture,
      vocab_size: vocabSize,
      hidden_size: hidden,
      intermediate_size: yield* required("feed_forward_length"),
      num_hidden_layers: yield* required("block_count"),
      num_attention_heads: heads,
      num_key_value_heads: (yield* metaUint(header, key("attention.head_count_kv"))) ?? heads,
      ...(headDim === undefined ? {} : { head_dim: headDim }),
      max_position_embeddings: yield* required("context_length"),
      rms_norm_eps: eps,
      rope_theta: (yield* metaFloat(header, key("rope.freq_base"))) ?? 10000,
      tie_word_embeddings: !header.tensors.some((t) => t.name === "output.weight"),
      bos_token_id: (yield* metaUint(header, "tokenizer.ggml.bos_token_id")) ?? null,
      eos_token_id: (yield* metaUint(header, "tokenizer.ggml.eos_token_id")) ?? null
    }
    const config = yield* decodeConfig(json, file).pipe(
      Effect.mapError((e: ConfigError) => {
        const field = fieldKeys[e.field.split(".")[0]!] ?? e.field
        return ggufError(file, field, "", e.message.replace(`${file}: field "${e.field}" `, ""))
      })
    )
    if (ropeFactors === undefined) return config
    if (ropeFactors.length !== config.headDim / 2 || ropeFactors.some((f) => !(f > 0) || !Number.isFinite(f)))
      return yield* ggufError(file, "", ROPE_FREQS, `must hold head_dim/2 = ${config.headDim / 2} positive factors (got ${ropeFactors.length})`)
    const withFactors: LlamaConfig = { ...config, ropeScaling: { ropeType: "freq_factors", factors: [...ropeFactors] } }
    return withFactors
  })

/**
 * The weights of a GGUF file as ModelWeights (HF names and row order), with its config.
 *
 * **Details**: reads the header's needed tensors only (plus `rope_freqs.weight`; `onProgress` sees each
 * read), renames them through
 * Weights.ts's table, un-permutes Q/K rows for `llama`, and checks presence and shapes with
 * Weights.assembleWeights; errors name the GGUF tensor (and the HF name it stands for).
 *
 * @category loading
 */
export const ggufWeights = (header: GgufHeader, onProgress?: OnProgress): Effect.Effect<{ readonly config: LlamaConfig; readonly weights: ModelWeights }, GgufError> =>
  Effect.gen(function* () {
    const file = header.file
    const hasFactors = header.tensors.some((t) => t.name === ROPE_FREQS)
    const factors = hasFactors ? yield* readGgufTensors(header, (name) => name === ROPE_FREQS) : undefined
    const factorTensor = factors?.get(ROPE_FREQS)
    const config = yield* ggufConfig(header, factorTensor === undefined ? undefined : toFloat32(factorTensor))
    const needed = new Set(expectedTensors(config).map((e) => hfToGgufName(e.name) ?? e.name))
    const infos = header.tensors.filter((t) => needed.has(t.name))
    const totalBytes = infos.reduce((a, t) => a + t.byteLength, 0)
    let tensors = 0
    let bytes = 0
    const read = yield* readGgufTensors(header, (name) => needed.has(name), (t) => {
      tensors++
      bytes += t.data.byteLength
      onProgress?.({ phase: "read", source: file, tensors, totalTensors: infos.length, bytes, totalBytes })
    })

    const byHfName = new Map<string, RawTensor>()
    for (const [name, t] of read) {
      const hf = ggufToHfName(name)
      if (hf === undefined) continue
      byHfName.set(hf, yield* reorder(config, hf, t, file))
    }
    const weights = yield* assembleWeights(config, byHfName, file).pipe(
      Effect.mapError((e: CheckpointError) => {
        const gguf = hfToGgufName(e.tensor) ?? e.tensor
        return ggufError(file, "", gguf, e.message.replaceAll(`"${e.tensor}"`, `"${gguf}" (${e.tensor})`))
      })
    )
    return { config, weights }
  })

/** Undo llama.cpp's Q/K row interleaving (llama only): rows are moved as whole byte runs. */
const reorder = (config: LlamaConfig, hfName: string, t: RawTensor, file: string): Effect.Effect<RawTensor, GgufError> => {
  const heads = hfName.endsWith("self_attn.q_proj.weight") ? config.numAttentionHeads : hfName.endsWith("self_attn.k_proj.weight") ? config.numKeyValueHeads : undefined
  if (config.architecture !== "llama" || heads === undefined) return Effect.succeed({ ...t, name: hfName })
  const [rows, cols] = t.shape
  if (t.shape.length !== 2 || rows !== heads * config.headDim)
    return Effect.fail(ggufError(file, "", t.name, `has shape [${t.shape.join(", ")}], expected [${heads * config.headDim}, ${config.hiddenSize}]`))
  return Effect.succeed({ ...t, name: hfName, data: unpermuteQkRows(t.data, heads, config.headDim, rowBytes(t.dtype, cols!)) })
}

