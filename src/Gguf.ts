/**
 * Gguf: a minimal GGUF v3 writer for Llama models (docs/formats.md).
 *
 * Its job is to hand llama.cpp exactly the weights sirius-ts runs, so llama.cpp can serve as an
 * independent numerical oracle (properties/llamaCpp.test.ts), and to produce benchmark files. It writes
 * the `llama` architecture metadata, a SentencePiece-style vocabulary, and the tensors under their GGUF
 * names with the HF→GGUF Q/K row permutation (§3) and ggml's innermost-first dims. Tensors are streamed
 * to the file one at a time (fs.writeSync), so a 2 GB BF16 file never sits in memory twice.
 *
 * It deliberately does not read GGUF (node-llama-cpp's `readGgufFileInfo` does that in tests), quantise,
 * or write BPE (Llama 3 "gpt2") tokenizers: random models only need ids.
 */
import { closeSync, openSync, writeSync } from "node:fs"
import type { LlamaConfig } from "./Config.ts"
import type { DType, RawTensor } from "./Tensor.ts"
import { bytesPerElement, fromFloat32, numel, toFloat32 } from "./Tensor.ts"
import type { ModelWeights } from "./Weights.ts"

// ---------------------------------------------------------------------------------------------------
// Vocabulary

/** A SentencePiece-style (`tokenizer.ggml.model = "llama"`) vocabulary, §6.3. */
export interface GgufVocab {
  readonly tokens: ReadonlyArray<string>
  readonly scores: ReadonlyArray<number>
  /** 1 normal, 2 unknown, 3 control, 6 byte. */
  readonly tokenTypes: ReadonlyArray<number>
  readonly bosTokenId: number
  readonly eosTokenId: number
  readonly unknownTokenId: number
  readonly addBosToken: boolean
  readonly addEosToken: boolean
}

/**
 * The vocabulary for random models: `<unk>` (0), `<s>` (1), `</s>` (2), the byte tokens
 * `<0x00>`..`<0xFF>` (ids 3..258, type 6), then normal filler tokens `▁t259`, `▁t260`, … up to
 * `vocabSize`. Scores are −id for normal tokens and 0 otherwise (§7.1).
 *
 * Details: needs `vocabSize` ≥ 259 (3 specials + 256 bytes). With a truncated byte table (vocab 64 or
 * 200) llama.cpp loads the file and then aborts the whole process (`std::out_of_range` from a byte-token
 * lookup; measured with node-llama-cpp 3.21.1), so smaller sizes are refused here instead. Tests use
 * vocab ≥ 300; vocab 259 and 260 were checked to load and run.
 *
 * @category constructors
 */
export const defaultVocab = (vocabSize: number): GgufVocab => {
  if (!Number.isInteger(vocabSize) || vocabSize < 259) {
    throw new GgufWriteError(`defaultVocab: vocabSize ${vocabSize} < 259 cannot hold <unk>, <s>, </s> and the 256 byte tokens llama.cpp needs`)
  }
  const tokens: Array<string> = ["<unk>", "<s>", "</s>"]
  const tokenTypes: Array<number> = [2, 3, 3]
  const scores: Array<number> = [0, 0, 0]
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`)
    tokenTypes.push(6)
    scores.push(0)
  }
  while (tokens.length < vocabSize) {
    const id = tokens.length
    tokens.push(`\u2581t${id}`)
    tokenTypes.push(1)
    scores.push(-id)
  }
  return { tokens, scores, tokenTypes, bosTokenId: 1, eosTokenId: 2, unknownTokenId: 0, addBosToken: true, addEosToken: false }
}

// ---------------------------------------------------------------------------------------------------
// Names, permutation, rope factors

/** Thrown for inputs the writer cannot express (bad vocab size, unknown tensor name, I/O failure). */
export class GgufWriteError extends Error {
  override readonly name = "GgufWriteError"
}

const layerNameMap: ReadonlyArray<readonly [string, string]> = [
  ["input_layernorm", "attn_norm"],
  ["post_attention_layernorm", "ffn_norm"],
  ["self_attn.q_proj", "attn_q"],
  ["self_attn.k_proj", "attn_k"],
  ["self_attn.v_proj", "attn_v"],
  ["self_attn.o_proj", "attn_output"],
  ["mlp.gate_proj", "ffn_gate"],
  ["mlp.up_proj", "ffn_up"],
  ["mlp.down_proj", "ffn_down"]
]

/**
 * HF tensor name → GGUF tensor name (§6.4), e.g. `model.layers.3.self_attn.o_proj.weight` →
 * `blk.3.attn_output.weight`.
 *
 * @category conversions
 */
export const ggufTensorName = (hfName: string): string => {
  if (hfName === "model.embed_tokens.weight") return "token_embd.weight"
  if (hfName === "model.norm.weight") return "output_norm.weight"
  if (hfName === "lm_head.weight") return "output.weight"
  const m = /^model\.layers\.(\d+)\.(.+)\.weight$/.exec(hfName)
  if (m !== null) {
    const entry = layerNameMap.find(([hf]) => hf === m[2])
    if (entry !== undefined) return `blk.${m[1]}.${entry[1]}.weight`
  }
  throw new GgufWriteError(`no GGUF name for tensor ${hfName}`)
}

/**
 * The HF→GGUF Q/K row permutation (§3): `ggufRow[h·hd + 2j + t] = hfRow[h·hd + t·(hd/2) + j]`, for
 * `n` heads of `hd` rows each (n = num_attention_heads for Q, num_key_value_heads for K). Works on raw
 * bytes, so any dtype; `rowBytes` = in · bytesPerElement.
 *
 * @category conversions
 */
export const permuteQkRows = (data: Uint8Array, nHeads: number, headDim: number, rowBytes: number): Uint8Array => {
  const out = new Uint8Array(nHeads * headDim * rowBytes)
  const half = headDim / 2
  for (let h = 0; h < nHeads; h++) {
    for (let j = 0; j < half; j++) {
      for (let t = 0; t < 2; t++) {
        const src = (h * headDim + t * half + j) * rowBytes
        out.set(data.subarray(src, src + rowBytes), (h * headDim + 2 * j + t) * rowBytes)
      }
    }
  }
  return out
}

/**
 * llama.cpp's `rope_freqs.weight` for Llama 3 RoPE scaling: per frequency i < head_dim/2, the divisor
 * invFreq_orig / invFreq_scaled, computed as llama.cpp's converter does (§1): 1 for wavelengths
 * below oldCtx/highFreqFactor, `factor` above oldCtx/lowFreqFactor, and 1/((1−smooth)/factor + smooth)
 * in between. The base frequencies are computed in f32, like the converter's torch code.
 * `undefined` when the config has no rope scaling.
 *
 * @category conversions
 */
export const ropeFreqFactors = (config: LlamaConfig): Float32Array | undefined => {
  const sc = config.ropeScaling
  if (sc === undefined) return undefined
  const d = config.headDim
  const lowWavelen = sc.originalMaxPositionEmbeddings / sc.lowFreqFactor
  const highWavelen = sc.originalMaxPositionEmbeddings / sc.highFreqFactor
  const out = new Float32Array(d / 2)
  for (let i = 0; i < d / 2; i++) {
    const freq = Math.fround(1 / Math.fround(Math.fround(config.ropeTheta) ** Math.fround((2 * i) / d)))
    const wavelen = (2 * Math.PI) / freq
    if (wavelen < highWavelen) out[i] = 1
    else if (wavelen > lowWavelen) out[i] = sc.factor
    else {
      const smooth = (sc.originalMaxPositionEmbeddings / wavelen - sc.lowFreqFactor) / (sc.highFreqFactor - sc.lowFreqFactor)
      out[i] = 1 / ((1 - smooth) / sc.factor + smooth)
    }
  }
  return out
}

// ---------------------------------------------------------------------------------------------------
// Byte-level encoding

const T_U32 = 4
const T_I32 = 5
const T_F32 = 6
const T_BOOL = 7
const T_STRING = 8
const T_ARRAY = 9

const ALIGNMENT = 32

const ggmlType: Record<DType, number> = { F32: 0, F16: 1, BF16: 30 }
/** llama_ftype: ALL_F32 = 0, MOSTLY_F16 = 1, MOSTLY_BF16 = 32. */
const llamaFileType: Record<DType, number> = { F32: 0, F16: 1, BF16: 32 }

/** A growable little-endian byte buffer for the header (metadata and tensor infos). */
class ByteWriter {
  private buf = new Uint8Array(1 << 16)
  private view = new DataView(this.buf.buffer)
  length = 0
  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < this.length + n) size *= 2
    const next = new Uint8Array(size)
    next.set(this.buf.subarray(0, this.length))
    this.buf = next
    this.view = new DataView(next.buffer)
  }
  u32(v: number): void {
    this.ensure(4)
    this.view.setUint32(this.length, v, true)
    this.length += 4
  }
  i32(v: number): void {
    this.ensure(4)
    this.view.setInt32(this.length, v, true)
    this.length += 4
  }
  f32(v: number): void {
    this.ensure(4)
    this.view.setFloat32(this.length, v, true)
    this.length += 4
  }
  u64(v: number): void {
    this.ensure(8)
    this.view.setBigUint64(this.length, BigInt(v), true)
    this.length += 8
  }
  bool(v: boolean): void {
    this.ensure(1)
    this.buf[this.length++] = v ? 1 : 0
  }
  string(s: string): void {
    const bytes = new TextEncoder().encode(s)
    this.u64(bytes.length)
    this.ensure(bytes.length)
    this.buf.set(bytes, this.length)
    this.length += bytes.length
  }
  zeros(n: number): void {
    this.ensure(n)
    this.buf.fill(0, this.length, this.length + n)
    this.length += n
  }
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.length)
  }
}

type MetaValue =
  | { readonly type: "u32"; readonly value: number }
  | { readonly type: "f32"; readonly value: number }
  | { readonly type: "bool"; readonly value: boolean }
  | { readonly type: "string"; readonly value: string }
  | { readonly type: "strings"; readonly value: ReadonlyArray<string> }
  | { readonly type: "f32s"; readonly value: ReadonlyArray<number> }
  | { readonly type: "i32s"; readonly value: ReadonlyArray<number> }

const writeMeta = (w: ByteWriter, key: string, v: MetaValue): void => {
  w.string(key)
  switch (v.type) {
    case "u32":
      w.u32(T_U32)
      w.u32(v.value)
      return
    case "f32":
      w.u32(T_F32)
      w.f32(v.value)
      return
    case "bool":
      w.u32(T_BOOL)
      w.bool(v.value)
      return
    case "string":
      w.u32(T_STRING)
      w.string(v.value)
      return
    case "strings":
      w.u32(T_ARRAY)
      w.u32(T_STRING)
      w.u64(v.value.length)
      for (const s of v.value) w.string(s)
      return
    case "f32s":
      w.u32(T_ARRAY)
      w.u32(T_F32)
      w.u64(v.value.length)
      for (const x of v.value) w.f32(x)
      return
    case "i32s":
      w.u32(T_ARRAY)
      w.u32(T_I32)
      w.u64(v.value.length)
      for (const x of v.value) w.i32(x)
      return
  }
}

const roundUp = (n: number, a: number): number => Math.ceil(n / a) * a

// ---------------------------------------------------------------------------------------------------
// The writer

export interface WriteGgufOptions {
  /** Default: `defaultVocab(config.vocabSize)`. */
  readonly vocab?: GgufVocab
  /**
   * Storage type of the 2-D tensors; norm weights and `rope_freqs` are always F32. Default: the dtype
   * of `weights.embedTokens`. Tensors in another dtype are converted through f32 (exact when widening).
   * Note that llama.cpp's CPU matmul rounds activations to the weight type for F16/BF16 weights, so an
   * oracle that must match f32 arithmetic wants "F32" here, even for bf16 weights.
   */
  readonly fileType?: DType
  /** `general.name`. Default "sirius-ts". */
  readonly name?: string
}

/** One tensor to write: its GGUF name, HF shape, type, and a thunk producing its final bytes. */
interface PlannedTensor {
  readonly name: string
  readonly shape: ReadonlyArray<number>
  readonly dtype: DType
  readonly bytes: () => Uint8Array
}

const convert = (t: RawTensor, dtype: DType): Uint8Array =>
  t.dtype === dtype ? t.data : fromFloat32(t.name, dtype, t.shape, toFloat32(t)).data

const planTensors = (config: LlamaConfig, weights: ModelWeights, fileType: DType): Array<PlannedTensor> => {
  const plan: Array<PlannedTensor> = []
  const factors = ropeFreqFactors(config)
  if (factors !== undefined) {
    plan.push({ name: "rope_freqs.weight", shape: [factors.length], dtype: "F32", bytes: () => new Uint8Array(factors.buffer) })
  }
  const vector = (t: RawTensor) =>
    plan.push({ name: ggufTensorName(t.name), shape: t.shape, dtype: "F32", bytes: () => convert(t, "F32") })
  const matrix = (t: RawTensor, permuteHeads?: number) =>
    plan.push({
      name: ggufTensorName(t.name),
      shape: t.shape,
      dtype: fileType,
      bytes: () => {
        const data = convert(t, fileType)
        if (permuteHeads === undefined) return data
        return permuteQkRows(data, permuteHeads, config.headDim, t.shape[1]! * bytesPerElement[fileType])
      }
    })
  matrix(weights.embedTokens)
  for (const layer of weights.layers) {
    vector(layer.inputLayernorm)
    matrix(layer.qProj, config.numAttentionHeads)
    matrix(layer.kProj, config.numKeyValueHeads)
    matrix(layer.vProj)
    matrix(layer.oProj)
    vector(layer.postAttentionLayernorm)
    matrix(layer.gateProj)
    matrix(layer.upProj)
    matrix(layer.downProj)
  }
  vector(weights.norm)
  // Tied embeddings: no output.weight; llama.cpp then projects with token_embd (§7.2).
  if (!config.tieWordEmbeddings && weights.lmHead !== weights.embedTokens) matrix(weights.lmHead)
  return plan
}

const writeAll = (fd: number, bytes: Uint8Array): void => {
  let off = 0
  while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off)
}

/**
 * Write `weights` (HF names and layout) as a GGUF v3 `llama` file at `path`.
 *
 * When to use: to give llama.cpp the very weights sirius-ts runs (oracle tests), or to make benchmark
 * files.
 *
 * Details: metadata per §6.2 plus `llama.attention.key_length`/`value_length` = head_dim (llama.cpp
 * otherwise assumes hidden/heads, wrong when head_dim is explicit) and the tokenizer keys of §6.3.
 * Tensors follow §7.2's order, with `rope_freqs.weight` first when the config has Llama 3 rope scaling.
 * Q/K rows are permuted (§3), dims are written innermost first, alignment is 32. Each tensor's bytes are
 * produced, written and dropped before the next one.
 *
 * @example
 * writeGguf("/tmp/m.gguf", shapes.tiny, randomWeights(shapes.tiny, { seed: 1 }))
 *
 * @category writers
 */
export const writeGguf = (path: string, config: LlamaConfig, weights: ModelWeights, options: WriteGgufOptions = {}): void => {
  const vocab = options.vocab ?? defaultVocab(config.vocabSize)
  const fileType = options.fileType ?? weights.embedTokens.dtype
  if (vocab.tokens.length !== config.vocabSize) {
    throw new GgufWriteError(`vocab has ${vocab.tokens.length} tokens, config.vocabSize is ${config.vocabSize}`)
  }
  if (config.headDim % 2 !== 0) throw new GgufWriteError(`head_dim ${config.headDim} is odd; RoPE needs pairs`)
  const plan = planTensors(config, weights, fileType)

  const meta: Array<readonly [string, MetaValue]> = [
    ["general.architecture", { type: "string", value: "llama" }],
    ["general.name", { type: "string", value: options.name ?? "sirius-ts" }],
    ["general.alignment", { type: "u32", value: ALIGNMENT }],
    ["general.file_type", { type: "u32", value: llamaFileType[fileType] }],
    ["llama.block_count", { type: "u32", value: config.numHiddenLayers }],
    ["llama.context_length", { type: "u32", value: config.maxPositionEmbeddings }],
    ["llama.embedding_length", { type: "u32", value: config.hiddenSize }],
    ["llama.feed_forward_length", { type: "u32", value: config.intermediateSize }],
    ["llama.attention.head_count", { type: "u32", value: config.numAttentionHeads }],
    ["llama.attention.head_count_kv", { type: "u32", value: config.numKeyValueHeads }],
    ["llama.rope.freq_base", { type: "f32", value: config.ropeTheta }],
    ["llama.attention.layer_norm_rms_epsilon", { type: "f32", value: config.rmsNormEps }],
    ["llama.rope.dimension_count", { type: "u32", value: config.headDim }],
    ["llama.attention.key_length", { type: "u32", value: config.headDim }],
    ["llama.attention.value_length", { type: "u32", value: config.headDim }],
    ["llama.vocab_size", { type: "u32", value: config.vocabSize }],
    ["tokenizer.ggml.model", { type: "string", value: "llama" }],
    ["tokenizer.ggml.tokens", { type: "strings", value: vocab.tokens }],
    ["tokenizer.ggml.scores", { type: "f32s", value: vocab.scores }],
    ["tokenizer.ggml.token_type", { type: "i32s", value: vocab.tokenTypes }],
    ["tokenizer.ggml.bos_token_id", { type: "u32", value: vocab.bosTokenId }],
    ["tokenizer.ggml.eos_token_id", { type: "u32", value: vocab.eosTokenId }],
    ["tokenizer.ggml.unknown_token_id", { type: "u32", value: vocab.unknownTokenId }],
    ["tokenizer.ggml.add_bos_token", { type: "bool", value: vocab.addBosToken }],
    ["tokenizer.ggml.add_eos_token", { type: "bool", value: vocab.addEosToken }]
  ]

  const w = new ByteWriter()
  w.u32(0x46554747) // "GGUF" read as a little-endian u32
  w.u32(3)
  w.u64(plan.length)
  w.u64(meta.length)
  for (const [key, value] of meta) writeMeta(w, key, value)

  let offset = 0
  for (const t of plan) {
    w.string(t.name)
    w.u32(t.shape.length)
    for (let i = t.shape.length - 1; i >= 0; i--) w.u64(t.shape[i]!) // ggml order: innermost first
    w.u32(ggmlType[t.dtype])
    w.u64(offset)
    offset += roundUp(numel(t.shape) * bytesPerElement[t.dtype], ALIGNMENT)
  }
  w.zeros(roundUp(w.length, ALIGNMENT) - w.length)

  const fd = openSync(path, "w")
  try {
    writeAll(fd, w.bytes())
    const pad = new Uint8Array(ALIGNMENT)
    for (const t of plan) {
      const bytes = t.bytes()
      const expected = numel(t.shape) * bytesPerElement[t.dtype]
      if (bytes.length !== expected) {
        throw new GgufWriteError(`${t.name}: ${bytes.length} bytes, shape [${t.shape.join(", ")}] ${t.dtype} needs ${expected}`)
      }
      writeAll(fd, bytes)
      const rest = roundUp(expected, ALIGNMENT) - expected
      if (rest > 0) writeAll(fd, pad.subarray(0, rest))
    }
  } finally {
    closeSync(fd)
  }
}
