/**
 * vocabs: realistic tokenizer vocabularies for tests, trained here (no model files, no network).
 *
 * A deterministic corpus (English-like words, numbers, punctuation, code, accented Latin, CJK, Cyrillic)
 * trains two tiny BPEs:
 * - a SentencePiece-style vocabulary (`tokenizer.ggml.model = "llama"`): `<unk>`, `<s>`, `</s>`, a few
 *   control and user-defined tokens, the 256 byte tokens `<0xXX>`, every corpus character, then pieces
 *   learned by BPE over `▁`-prefixed words, scored −rank (earlier merges score higher), as
 *   SentencePiece BPE models are;
 * - a byte-level BPE vocabulary (`"gpt2"`): GPT-2's 256 byte characters, then merges learned over the
 *   corpus pre-tokenized by the Llama 3 regex, a few whole words no merge reaches, then special tokens.
 * Test code only.
 */
import type { GgufBpeVocab, GgufVocab } from "../src/Gguf.ts"
import { LLAMA3_REGEX } from "../src/GgufTokenizer.ts"

/** mulberry32. */
const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const words = (
  "the of and to in is was for on that with as by at from it an be this are or his which but not have had they one you were her all she there would " +
  "their we him been has when who will more no if out so said what up its about into than them can only other new some could time these two may " +
  "then do first any my now such like our over man me even most made after also did many before must through back years where much your way well " +
  "down should because each just those people how too little state good very make world still own see men work long get here between both life " +
  "being under never day same another know while last might us great old year off come since against go came right used take three token model " +
  "language inference sparse correction weights tensor matrix vector attention layer hidden quantize llama qwen hello world testing tokenizer " +
  "don't I'll we've you're it's can't won't they'd she's"
).split(" ")
const foreign = ["café", "naïve", "résumé", "über", "Straße", "señor", "façade", "你好", "世界", "日本語", "テキスト", "한국어", "привет", "мир", "Ωμέγα"]
const punctuation = [".", ",", "!", "?", ";", ":", "(", ")", "[", "]", "{", "}", "\"", "'", "-", "--", "...", "/", "=", "+", "*", "&", "%", "$", "#", "@"]

/** A deterministic multilingual corpus of about `n` words. */
export const corpus = (n = 6000, seed = 7): string => {
  const r = prng(seed)
  const pick = <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(r() * xs.length)]!
  const out: Array<string> = []
  for (let i = 0; i < n; i++) {
    const x = r()
    let w = x < 0.8 ? pick(words) : x < 0.88 ? String(Math.floor(r() ** 3 * 100000)) : x < 0.95 ? pick(foreign) : pick(punctuation)
    if (r() < 0.08) w = w.charAt(0).toUpperCase() + w.slice(1)
    out.push(w)
    out.push(r() < 0.05 ? "\n" : r() < 0.02 ? "  " : " ")
  }
  return out.join("")
}

/** Most frequent adjacent pair over words (symbol lists) weighted by counts; ties broken by text order. */
const bestPair = (words: ReadonlyArray<{ symbols: Array<string>; count: number }>): readonly [string, string] | undefined => {
  const counts = new Map<string, number>()
  for (const w of words)
    for (let i = 0; i + 1 < w.symbols.length; i++) {
      const key = `${w.symbols[i]}\u0000${w.symbols[i + 1]}`
      counts.set(key, (counts.get(key) ?? 0) + w.count)
    }
  let best: string | undefined
  let bestCount = 1
  for (const [key, c] of counts) if (c > bestCount || (c === bestCount && best !== undefined && key < best)) [best, bestCount] = [key, c]
  if (best === undefined) return undefined
  const [a, b] = best.split("\u0000") as [string, string]
  return [a, b]
}

/** Train `n` BPE merges over words given as symbol lists; returns the merges in rank order. */
const trainMerges = (wordCounts: ReadonlyMap<string, number>, split: (w: string) => Array<string>, n: number): Array<readonly [string, string]> => {
  const ws = [...wordCounts].map(([w, count]) => ({ symbols: split(w), count }))
  const merges: Array<readonly [string, string]> = []
  for (let k = 0; k < n; k++) {
    const pair = bestPair(ws)
    if (pair === undefined) break
    const [a, b] = pair
    merges.push(pair)
    for (const w of ws) {
      const s = w.symbols
      const next: Array<string> = []
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          next.push(a + b)
          i++
        } else next.push(s[i]!)
      }
      w.symbols = next
    }
  }
  return merges
}

const count = (items: Iterable<string>): Map<string, number> => {
  const m = new Map<string, number>()
  for (const x of items) m.set(x, (m.get(x) ?? 0) + 1)
  return m
}

/** Control tokens of the SentencePiece vocabulary (besides `<s>`, `</s>`) and its user-defined token. */
export const spmSpecials = { control: ["<|im_start|>", "<|im_end|>"], userDefined: ["<tool>"] } as const

/**
 * A SentencePiece-style vocabulary trained on `text` with `merges` merges (see the module header).
 * Ids: 0 `<unk>`, 1 `<s>`, 2 `</s>`, then spmSpecials, then the 256 byte tokens, characters, pieces.
 */
export const trainSentencePiece = (text: string, merges = 400): GgufVocab => {
  // SentencePiece sees whitespace as ▁ glued to the following word.
  const escaped = text.replaceAll(" ", "\u2581")
  const units = escaped.split(/(?=\u2581)|\n/).filter((w) => w.length > 0)
  const learned = trainMerges(count(units), (w) => Array.from(w), merges)
  const tokens: Array<string> = ["<unk>", "<s>", "</s>", ...spmSpecials.control, ...spmSpecials.userDefined]
  const tokenTypes: Array<number> = [2, 3, 3, ...spmSpecials.control.map(() => 3), ...spmSpecials.userDefined.map(() => 4)]
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`)
    tokenTypes.push(6)
  }
  const scores: Array<number> = tokens.map(() => 0)
  const seen = new Set(tokens)
  const add = (t: string, score: number) => {
    if (seen.has(t)) return
    seen.add(t)
    tokens.push(t)
    tokenTypes.push(1)
    scores.push(score)
  }
  // Pieces first by rank (score −rank), then every character of the corpus (lower scores).
  learned.forEach(([a, b], rank) => add(a + b, -rank))
  ;[...new Set(Array.from(escaped.replaceAll("\n", "")))].sort().forEach((c, i) => add(c, -(learned.length + i)))
  return { tokens, scores, tokenTypes, bosTokenId: 1, eosTokenId: 2, unknownTokenId: 0, eotTokenId: 4, addBosToken: true, addEosToken: false }
}

/** GPT-2's byte → printable character table (bytes_to_unicode). */
export const byteChars: ReadonlyArray<string> = (() => {
  const keep = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)
  const out: Array<string> = new Array(256)
  let n = 0
  for (let b = 0; b < 256; b++) out[b] = keep(b) ? String.fromCodePoint(b) : String.fromCodePoint(256 + n++)
  return out
})()
const byteLevel = (s: string): string => Array.from(new TextEncoder().encode(s), (b) => byteChars[b]!).join("")

/** Special tokens of the byte-level vocabularies: bos, eos, eot (control) and one user-defined token. */
export const bpeSpecials = { bos: "<|begin_of_text|>", eos: "<|end_of_text|>", eot: "<|eot_id|>", userDefined: "<tool_call>" } as const

/**
 * Whole-word tokens no merge sequence reaches, as real byte-level vocabularies have: with Llama 3's
 * `ignore_merges` a word that is itself a token is emitted whole, without it BPE splits it.
 */
export const unreachableWords = [" zyzzyva", " quixotically"] as const

/**
 * A byte-level BPE vocabulary for `pre` ("llama-bpe" or "qwen2"): the 256 byte characters, `merges`
 * merged tokens learned on `text` pre-tokenized by Llama 3's regex (as cl100k-style vocabularies are,
 * so it holds multi-digit tokens that Qwen2's one-digit pre-tokenizer never produces), the
 * unreachableWords, then the special tokens.
 */
export const trainByteLevel = (text: string, pre: "llama-bpe" | "qwen2", merges = 400): GgufBpeVocab => {
  const regex = new RegExp(LLAMA3_REGEX, "gu")
  const learned = trainMerges(count(Array.from(text.matchAll(regex), (m) => byteLevel(m[0]))), (w) => Array.from(w), merges)
  // Two merges can spell the same token ("ab"+"c", "a"+"bc"): each string is one token.
  const tokens = [...new Set([...byteChars, ...learned.map(([a, b]) => a + b), ...unreachableWords.map(byteLevel)])]
  const tokenTypes = tokens.map(() => 1)
  const special = (t: string, type: number) => {
    tokens.push(t)
    tokenTypes.push(type)
    return tokens.length - 1
  }
  const bos = special(bpeSpecials.bos, 3)
  const eos = special(bpeSpecials.eos, 3)
  const eot = special(bpeSpecials.eot, 3)
  special(bpeSpecials.userDefined, 4)
  return {
    model: "gpt2",
    pre,
    tokens,
    tokenTypes,
    merges: learned.map(([a, b]) => `${a} ${b}`),
    bosTokenId: bos,
    eosTokenId: eos,
    eotTokenId: eot,
    addBosToken: true,
    addEosToken: false
  }
}
