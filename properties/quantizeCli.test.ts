/**
 * `sirius quantize` end to end through the CLI's main(): HF directories (with SentencePiece-style and
 * byte-level tokenizer.json files, a chat template) and GGUF files in, GGUF files out that llama.cpp
 * loads, evaluates and tokenizes like our tokenizer; the weights read back are exactly the quantized
 * ones; the type mix, fallbacks and usage errors; and `generate --quantize`.
 */
import { Tokenizer } from "@huggingface/tokenizers"
import { Effect } from "effect"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { Token } from "node-llama-cpp"
import { afterAll, describe, expect, it } from "vitest"
import { main } from "../cli/main.ts"
import { loadCheckpoint } from "../src/Checkpoint.ts"
import type { LlamaConfig } from "../src/Config.ts"
import { readGgufHeader, writeGguf } from "../src/Gguf.ts"
import type { GgufBpeVocab, GgufVocab } from "../src/Gguf.ts"
import { ggufTokenizerParts } from "../src/GgufTokenizer.ts"
import { randomWeights, shapes, writeHfCheckpoint } from "../testing/RandomModel.ts"
import { quantizeWeights, weightEntries } from "../src/Weights.ts"
import { openOracle, sharedLlama } from "./llamaCpp.ts"
import { corpus, trainByteLevel, trainSentencePiece } from "./vocabs.ts"

const root = mkdtempSync(join(tmpdir(), "sirius-quantize-"))
afterAll(() => rmSync(root, { recursive: true, force: true }))

const run = async (...argv: Array<string>) => {
  let out = ""
  let err = ""
  const code = await main(argv, { out: (s) => void (out += s), err: (s) => void (err += s) })
  return { code, out, err }
}

const text = corpus(3000)
const TEMPLATE = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"

/** An HF directory whose tokenizer.json is the one sirius-ts builds for `vocab` (what HF's converters produce for such vocabularies). */
const hfDir = async (name: string, config: LlamaConfig, vocab: GgufVocab | GgufBpeVocab): Promise<string> => {
  const dir = join(root, name)
  mkdirSync(dir)
  await Effect.runPromise(writeHfCheckpoint(dir, config, randomWeights(config, { seed: 11 })))
  const scratch = join(root, `${name}.vocab.gguf`)
  const small: LlamaConfig = { ...shapes.tiny, numHiddenLayers: 1, vocabSize: config.vocabSize }
  writeGguf(scratch, small, randomWeights(small, { seed: 1 }), { vocab })
  const parts = (await Effect.runPromise(Effect.flatMap(readGgufHeader(scratch), ggufTokenizerParts)))!
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(parts.tokenizerJson))
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(parts.tokenizerConfig))
  writeFileSync(join(dir, "chat_template.jinja"), TEMPLATE)
  return dir
}

const samples = ["Hello world, the model made a good inference.", " two  spaces and 12345 digits!", "café 你好 🙂", "<|im_start|>user\nhi<|im_end|>"]

describe("sirius quantize", () => {
  const spm = trainSentencePiece(text, 300)
  const config: LlamaConfig = { ...shapes.tiny, hiddenSize: 256, headDim: 64, intermediateSize: 512, vocabSize: spm.tokens.length }

  it("HF directory (SentencePiece tokenizer) → Q4_K_M-like GGUF: llama.cpp loads, evaluates and tokenizes it like us", { timeout: 60_000 }, async () => {
    const dir = await hfDir("spm", config, spm)
    const out = join(root, "spm-q4km.gguf")
    const r = await run("quantize", dir, out, "--type", "q4_k_m", "--json")
    expect(r.code, r.err).toBe(0)
    const report = JSON.parse(r.out)
    expect(report.tensors).toEqual({ F32: 5, Q4_K: 11, Q6_K: 5 }) // 5 norms; q k o gate up ×2 + token_embd; v down ×2 + output
    expect(report.fallbacks).toEqual([])

    const ckpt = await Effect.runPromise(loadCheckpoint(out))
    expect(ckpt.chatTemplate).toBe(TEMPLATE)
    const hf = await Effect.runPromise(loadCheckpoint(dir))
    const mix = quantizeWeights(hf.config, hf.weights, "Q4_K")
    // Every Q4_K matrix reads back as exactly the quantization of the HF one (Q/K permuted and back).
    const got = new Map(weightEntries(ckpt.config, ckpt.weights).map((t) => [t.name, t]))
    for (const t of weightEntries(hf.config, mix)) if (got.get(t.name)!.dtype === "Q4_K") expect(got.get(t.name)!.data, t.name).toEqual(t.data)

    const oracle = await openOracle(out)
    try {
      const p = await oracle.probabilities([1, 300, 301])
      expect(p[2]!.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 4)
    } finally {
      await oracle.dispose()
    }
    const llama = await sharedLlama()
    const model = await llama.loadModel({ modelPath: out, vocabOnly: true })
    try {
      const ours = new Tokenizer(JSON.parse(JSON.stringify((await Effect.runPromise(Effect.flatMap(readGgufHeader(out), ggufTokenizerParts)))!.tokenizerJson)), {})
      for (const s of samples) expect(ours.encode(s, { add_special_tokens: false }).ids, s).toEqual(model.tokenize(s, true).map((t: Token) => t as number))
      // And the GGUF tokenizer equals the HF directory's.
      for (const s of samples) expect(ckpt.tokenizer!.encode(s), s).toEqual(hf.tokenizer!.encode(s))
    } finally {
      await model.dispose()
    }
  })

  it("HF directory (byte-level llama-bpe tokenizer) → Q8_0 GGUF with the same tokenizer", { timeout: 60_000 }, async () => {
    const bpe = trainByteLevel(text, "llama-bpe", 300)
    const dir = await hfDir("bpe", { ...config, vocabSize: bpe.tokens.length }, bpe)
    const out = join(root, "bpe-q8.gguf")
    const r = await run("quantize", dir, out, "--type", "q8_0")
    expect(r.code, r.err).toBe(0)
    expect(r.err).toMatch(/wrote .*Q8_0/)
    const header = await Effect.runPromise(readGgufHeader(out))
    expect(header.metadata.get("tokenizer.ggml.pre")).toEqual({ type: "string", value: "llama-bpe" })
    const [ckpt, hf] = await Promise.all([Effect.runPromise(loadCheckpoint(out)), Effect.runPromise(loadCheckpoint(dir))])
    for (const s of samples) expect(ckpt.tokenizer!.encode(s), s).toEqual(hf.tokenizer!.encode(s))
    const llama = await sharedLlama()
    const model = await llama.loadModel({ modelPath: out, vocabOnly: true })
    try {
      for (const s of samples) expect([bpe.bosTokenId, ...model.tokenize(s, true).map((t: Token) => t as number)], s).toEqual(ckpt.tokenizer!.encode(s))
    } finally {
      await model.dispose()
    }
  })

  it("GGUF → GGUF keeps the tokenizer metadata and chat template; rows that do not fit fall back", { timeout: 60_000 }, async () => {
    const small = join(root, "small.gguf")
    writeGguf(small, shapes.tiny, randomWeights(shapes.tiny, { seed: 2 }), { chatTemplate: TEMPLATE })
    const out = join(root, "small-q4k.gguf")
    const r = await run("quantize", small, out, "--type", "q4_k", "--json")
    expect(r.code, r.err).toBe(0)
    const report = JSON.parse(r.out)
    // hidden 64: no row is a whole Q4_K block, so every matrix falls back to Q8_0 (rows of 32).
    expect(report.tensors.Q4_K).toBeUndefined()
    expect(report.fallbacks).toContain("blk.0.attn_q.weight (Q4_K → Q8_0)")
    const [a, b] = await Promise.all([Effect.runPromise(readGgufHeader(small)), Effect.runPromise(readGgufHeader(out))])
    for (const [key, value] of a.metadata) if (key.startsWith("tokenizer.")) expect(b.metadata.get(key), key).toEqual(value)
    const oracle = await openOracle(out)
    await oracle.dispose()
  })

  it("usage errors exit 2 with one line; a bad input exits 1 naming it", async () => {
    const missingType = await run("quantize", "a", "b.gguf")
    expect([missingType.code, missingType.err]).toEqual([2, "sirius: error: --type is required (q8_0|q4_0|q4_k|q6_k|q4_k_m|f16|bf16|f32)\n"])
    const badType = await run("quantize", "a", "b.gguf", "--type", "q3_k")
    expect(badType.code).toBe(2)
    expect(badType.err).toContain("--type must be one of")
    const notGguf = await run("quantize", "a", "b.bin", "--type", "q8_0")
    expect(notGguf.code).toBe(2)
    const missing = await run("quantize", join(root, "nope"), join(root, "x.gguf"), "--type", "q8_0")
    expect(missing.code).toBe(1)
    expect(missing.err).toContain("no such file or directory; expected a model directory")
  })

  it("generate --quantize q8_0 runs an HF checkpoint with quantized matrices", async () => {
    const dir = join(root, "gen")
    await Effect.runPromise(writeHfCheckpoint(dir, shapes.tiny, randomWeights(shapes.tiny, { seed: 3 })))
    const r = await run("generate", "--model", dir, "--prompt-ids", "1,2,3", "--max-tokens", "4", "--quantize", "q8_0", "--json")
    expect(r.code, r.err).toBe(0)
    expect(JSON.parse(r.out).tokens).toHaveLength(4)
    const bad = await run("generate", "--model", dir, "--prompt-ids", "1", "--quantize", "q4_k")
    expect(bad.code).toBe(2)
  })
})
