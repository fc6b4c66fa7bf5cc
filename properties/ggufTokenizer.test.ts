/**
 * Tokenizers from GGUF metadata (src/GgufTokenizer.ts) against llama.cpp's own tokenizer on the same
 * file: a SentencePiece-style vocabulary (`llama`, scores and byte fallback) and byte-level BPE
 * vocabularies (`gpt2`, pre-tokenizers `llama-bpe` and `qwen2`), each trained on a generated corpus
 * (properties/vocabs.ts) and written with our GGUF writer. For a corpus of strings — spaces (leading,
 * multiple, trailing), digits and long numbers, punctuation and contractions, newlines and tabs,
 * accents, combining marks, CJK, emoji (ZWJ sequences, flags), characters outside the vocabulary, and
 * special and user-defined tokens inside text — our ids must equal llama.cpp's
 * `model.tokenize(text, true)` (special tokens parsed), BOS must be added as llama.cpp's
 * add_bos_token says, and decoding our ids must give the text back. (Decoding follows HF's decoders
 * without clean-up of spaces before punctuation, which llama.cpp applies for llama-bpe: lossless.)
 */
import { Tokenizer } from "@huggingface/tokenizers"
import { Effect } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { Token } from "node-llama-cpp"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { loadCheckpoint } from "../src/Checkpoint.ts"
import type { LlamaConfig } from "../src/Config.ts"
import { readGgufHeader, writeGguf } from "../src/Gguf.ts"
import type { GgufBpeVocab, GgufVocab } from "../src/Gguf.ts"
import { ggufTokenizerParts, sentencePieceMerges } from "../src/GgufTokenizer.ts"
import { randomWeights, shapes } from "../testing/RandomModel.ts"
import { sharedLlama } from "./llamaCpp.ts"
import { bpeSpecials, corpus, spmSpecials, trainByteLevel, trainSentencePiece, unreachableWords } from "./vocabs.ts"

const texts: ReadonlyArray<string> = [
  "Hello world",
  "hello world, the model made a good inference.",
  " leading space",
  "  two leading spaces",
  "multiple   spaces    inside",
  "trailing space ",
  "trailing spaces   ",
  " ",
  "   ",
  "tabs\tand\nnewlines\n\nand a paragraph\n",
  "\n\nstarts with newlines",
  "\r\nwindows line\r\nendings",
  "digits 1234567890 and 3.14159 and 1,000,000",
  "a long number 12345678901234567890123 then 007",
  "punctuation!? (yes) [no] {maybe} ... -- — “quotes” ‘single’",
  "contractions: don't I'll we've you're it's can't won't they'd she's I'M WE'VE",
  "accents: café naïve résumé Straße ÀÉÎÕÜ",
  "combining marks: e\u0301 a\u0308 n\u0303 (decomposed)",
  "CJK: 你好世界，日本語のテキスト、한국어",
  "Cyrillic and Greek: привет мир Ωμέγα",
  "emoji 🙂👍🏽 🇺🇸 👨‍👩‍👧 end",
  "math Ω≈ç√∫ and arrows → ⇒",
  "zero\u200bwidth and nbsp\u00a0here",
  "code: function f(a, b) { return a + b; } // x=42; y = x*2.5e-3",
  "https://example.com/path?q=1&r=2#frag",
  "the ▁ literal and <0x41> written out",
  "unreachable: zyzzyva quixotically Zyzzyva zyzzyvas",
  "UPPER lower MiXeD",
  "x",
  "a",
  ""
]
const spmSpecialTexts = [
  "<s>starts with bos</s>",
  "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n",
  "call a<tool>b and <tool> again",
  "unknown <unk> token",
  "no space<s>before"
]
const bpeSpecialTexts = [
  `${bpeSpecials.bos}starts with bos${bpeSpecials.eos}`,
  `header ${bpeSpecials.eot} after eot`,
  `call a${bpeSpecials.userDefined}b and ${bpeSpecials.userDefined} again`,
  `${bpeSpecials.eot}${bpeSpecials.eot}`
]

const root = mkdtempSync(join(tmpdir(), "sirius-tokenizer-"))
afterAll(() => rmSync(root, { recursive: true, force: true }))

const text = corpus()
const vocabs: ReadonlyArray<{ readonly label: string; readonly vocab: GgufVocab | GgufBpeVocab; readonly specials: ReadonlyArray<string> }> = [
  { label: "llama (SentencePiece BPE)", vocab: trainSentencePiece(text), specials: spmSpecialTexts },
  { label: "gpt2, pre llama-bpe", vocab: trainByteLevel(text, "llama-bpe"), specials: bpeSpecialTexts },
  { label: "gpt2, pre qwen2", vocab: trainByteLevel(text, "qwen2"), specials: bpeSpecialTexts }
]

describe("sentencePieceMerges", () => {
  it("every split into two vocabulary tokens, ranked by the token's score, splits by part ids", () => {
    const tokens = ["a", "b", "c", "ab", "bc", "abc"]
    const scores = [0, 0, 0, -2, -1, -3]
    expect(sentencePieceMerges(tokens, scores)).toEqual([
      ["b", "c"], // bc: score -1
      ["a", "b"], // ab: score -2
      ["a", "bc"], // abc: score -3, split (a, bc) has the smaller left id
      ["ab", "c"]
    ])
  })
})

for (const { label, vocab, specials } of vocabs) {
  describe(`${label} vs llama.cpp`, () => {
    const config: LlamaConfig = { ...shapes.tiny, vocabSize: vocab.tokens.length }
    const file = join(root, `${label.replace(/\W+/g, "-")}.gguf`)
    writeGguf(file, config, randomWeights(config, { seed: 5 }), { vocab })
    let llamaTokenize: (text: string) => Array<number>
    let dispose: () => Promise<void> = async () => {}

    beforeAll(async () => {
      const llama = await sharedLlama()
      const model = await llama.loadModel({ modelPath: file, vocabOnly: true })
      llamaTokenize = (t) => model.tokenize(t, true).map((id: Token) => id as number)
      dispose = () => model.dispose()
    })
    afterAll(() => dispose())

    const parts = Effect.runSync(Effect.flatMap(readGgufHeader(file), ggufTokenizerParts))!
    const hf = new Tokenizer(parts.tokenizerJson, parts.tokenizerConfig)
    const ours = (t: string) => hf.encode(t, { add_special_tokens: false }).ids

    it(`the vocabulary is realistic (${vocab.tokens.length} tokens)`, () => {
      expect(vocab.tokens.length).toBeGreaterThan(600)
      // Frequent words are single tokens; rare ones split. (SentencePiece adds the word's ▁ itself.)
      const word = (w: string) => (vocab.model === "gpt2" ? ` ${w}` : w)
      expect(ours(word("the")).length).toBe(1)
      expect(ours(word("inference")).length).toBeLessThanOrEqual(2)
      expect(ours(word("xylophone")).length).toBeGreaterThan(2)
      // Only Llama 3's pre-tokenizer emits a whole-word token that no merge reaches (ignore_merges).
      if (vocab.model === "gpt2") expect(ours(unreachableWords[0]).length === 1).toBe(vocab.pre === "llama-bpe")
      // Digits: in threes for Llama 3, one by one for Qwen2, pieces for SentencePiece.
      if (vocab.model === "gpt2") {
        const digits = vocab.tokens.find((t) => /^[0-9]{2,3}$/.test(t))
        expect(digits, "a multi-digit token").toBeDefined()
        expect(ours(digits!).length).toBe(vocab.pre === "qwen2" ? digits!.length : 1)
      }
    })

    it("identical ids for the text corpus", () => {
      for (const t of texts) expect(ours(t), JSON.stringify(t)).toEqual(llamaTokenize(t))
    })

    it("identical ids with special and user-defined tokens in the text (parsed)", () => {
      for (const t of specials) expect(ours(t), JSON.stringify(t)).toEqual(llamaTokenize(t))
    })

    it("identical ids on corpus lines and random slices of it", () => {
      const lines = text.split("\n").slice(0, 40)
      for (const t of lines) expect(ours(t), JSON.stringify(t)).toEqual(llamaTokenize(t))
      for (let i = 0; i < 40; i++) {
        const start = (i * 7919) % (text.length - 200)
        const t = text.slice(start, start + 5 + ((i * 31) % 150))
        expect(ours(t), JSON.stringify(t)).toEqual(llamaTokenize(t))
      }
    })

    it("the checkpoint's tokenizer adds BOS as add_bos_token says, and decodes back to the text", async () => {
      const ckpt = await Effect.runPromise(loadCheckpoint(file))
      const tok = ckpt.tokenizer!
      expect(tok.encode("Hello world")).toEqual([vocab.bosTokenId, ...llamaTokenize("Hello world")])
      // Text without control tokens round-trips (control tokens are skipped when decoding). SentencePiece
      // writes spaces as ▁, so a literal ▁ in the text decodes as a space (llama.cpp's does the same).
      for (const t of [...texts, ...text.split("\n").slice(0, 20)])
        if (vocab.model === "gpt2" || !t.includes("\u2581")) expect(tok.decode(tok.encode(t)), JSON.stringify(t)).toBe(t)
      const user = vocab.model === "gpt2" ? `a${bpeSpecials.userDefined}b` : `a${spmSpecials.userDefined[0]}b`
      // llama.cpp's SentencePiece convention re-adds the space prefix after a special token, so the
      // text after a user-defined token gains a space; byte-level BPE round-trips exactly.
      expect(tok.decode(tok.encode(user))).toBe(vocab.model === "gpt2" ? user : `a${spmSpecials.userDefined[0]} b`)
      expect(ckpt.specialTokens.bos).toBe(vocab.tokens[vocab.bosTokenId!])
      expect(ckpt.specialTokens.eot).toBe(vocab.tokens[vocab.eotTokenId!])
      expect(ckpt.eosTokenIds).toEqual([vocab.eosTokenId, vocab.eotTokenId])
    })
  })
}
