/**
 * GgufTokenizer: a GGUF file's `tokenizer.ggml.*` metadata turned into the `tokenizer.json` (and
 * `tokenizer_config.json`) objects `@huggingface/tokenizers` takes, built in memory, so a GGUF model
 * tokenizes through the same Tokenizer as an HF directory, with the ids llama.cpp gives.
 *
 * Two tokenizer models, as llama.cpp's `llama-vocab.cpp` runs them:
 * - `llama` (SentencePiece-style BPE with scores): llama.cpp splits text into characters and merges,
 *   while any adjacent pair concatenates to a vocabulary token, the pair whose token has the highest
 *   score (leftmost on ties), then spells unknown characters as `<0xXX>` byte tokens. The equivalent HF
 *   BPE takes its merges from the vocabulary and scores the way HF's SentencePiece converter does
 *   (every split of a token into two vocabulary tokens, ranked by the token's score, highest first;
 *   equal scores keep vocabulary order), with `byte_fallback`, `fuse_unk`, a normalizer that prepends
 *   `▁` (unless `tokenizer.ggml.add_space_prefix` is false) and replaces spaces with `▁` — applied to
 *   every run of text between special tokens, as llama.cpp re-adds the space prefix after each special
 *   token — and the matching decoder.
 * - `gpt2` (byte-level BPE with `tokenizer.ggml.merges`): the pre-tokenizer regex of
 *   `tokenizer.ggml.pre` (`llama-bpe`/`llama3`/`llama-v3`: Llama 3's, with `ignore_merges`, a word that
 *   is itself a token is not merged; `qwen2`/`deepseek-r1-qwen`: Qwen2's, digits one by one), written
 *   as llama.cpp adapts it (`'[sS]` for the case-insensitive contractions), then byte-level mapping and
 *   BPE by merge rank. Other pre-tokenizers are refused by name. No Unicode normalization: llama.cpp
 *   does none (HF's Qwen2 tokenizer.json adds NFC; text already in NFC tokenizes the same).
 * Tokens of type 3 (control) and 2 (unknown) become special added tokens, type 4 (user-defined)
 * non-special added tokens: all are matched in text before the model runs, as llama.cpp does when it
 * parses special tokens. `add_bos_token`/`add_eos_token` become a TemplateProcessing post-processor.
 *
 * Known divergences: llama.cpp's SPM merges a pair whose concatenation is a token even when a part is
 * not itself a token, which HF merges cannot express (real SentencePiece vocabularies contain every
 * character of their pieces); duplicate token strings encode to their last id, as in llama.cpp.
 *
 * This module builds tokenizers; Tokenizer.ts wraps them and Gguf.ts reads the metadata.
 */
import { Effect } from "effect"
import type { GgufHeader } from "./Gguf.ts"
import { ggufError, GgufError, metaBool, metaNumbers, metaString, metaStrings, metaUint } from "./Gguf.ts"

/** The special tokens' strings, for chat templates (`bos_token`, `eos_token`) and stop handling. */
export interface SpecialTokens {
  readonly bos?: string
  readonly eos?: string
  /** End of turn (`<|eot_id|>`, `<|im_end|>`): GGUF `tokenizer.ggml.eot_token_id`. */
  readonly eot?: string
  readonly unk?: string
}

export interface GgufTokenizerParts {
  readonly tokenizerJson: Record<string, unknown>
  readonly tokenizerConfig: Record<string, unknown>
  readonly specialTokens: SpecialTokens
  readonly bosTokenId: number | undefined
  /** eos, eot and eom ids, when present. */
  readonly eosTokenIds: ReadonlyArray<number>
  readonly addBosToken: boolean
  readonly addEosToken: boolean
}

/** llama.cpp's adaptation of Llama 3's pre-tokenizer regex (llama-vocab.cpp, LLAMA_VOCAB_PRE_TYPE_LLAMA3). */
export const LLAMA3_REGEX = String.raw`(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
/** llama.cpp's adaptation of Qwen2's pre-tokenizer regex (LLAMA_VOCAB_PRE_TYPE_QWEN2): digits one at a time. */
export const QWEN2_REGEX = String.raw`(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

/** `tokenizer.ggml.pre` values sirius-ts reproduces, with llama.cpp's aliases. */
const preTokenizers: ReadonlyMap<string, { readonly regex: string; readonly ignoreMerges: boolean; readonly addBos: boolean }> = new Map([
  ["llama-bpe", { regex: LLAMA3_REGEX, ignoreMerges: true, addBos: true }],
  ["llama3", { regex: LLAMA3_REGEX, ignoreMerges: true, addBos: true }],
  ["llama-v3", { regex: LLAMA3_REGEX, ignoreMerges: true, addBos: true }],
  ["qwen2", { regex: QWEN2_REGEX, ignoreMerges: false, addBos: false }],
  ["deepseek-r1-qwen", { regex: QWEN2_REGEX, ignoreMerges: false, addBos: false }]
])

const TOKEN_UNKNOWN = 2
const TOKEN_CONTROL = 3
const TOKEN_USER_DEFINED = 4

/**
 * Merges for a SentencePiece BPE vocabulary, as HF's SentencePiece converter derives them: for every
 * token, each split into two vocabulary tokens (splits of one token ordered by the ids of their parts),
 * all ranked by the token's score, highest first, ties in vocabulary order.
 */
export const sentencePieceMerges = (tokens: ReadonlyArray<string>, scores: ReadonlyArray<number>): Array<readonly [string, string]> => {
  const ids = new Map<string, number>()
  tokens.forEach((t, i) => ids.set(t, i))
  const candidates: Array<{ readonly left: string; readonly right: string; readonly score: number; readonly order: number }> = []
  tokens.forEach((token, i) => {
    if (ids.get(token) !== i) return // a duplicate string: its last id is the one text maps to
    const chars = Array.from(token)
    const local: Array<{ readonly left: string; readonly right: string; readonly l: number; readonly r: number }> = []
    let left = ""
    for (let k = 1; k < chars.length; k++) {
      left += chars[k - 1]
      const right = chars.slice(k).join("")
      const l = ids.get(left)
      const r = ids.get(right)
      if (l !== undefined && r !== undefined) local.push({ left, right, l, r })
    }
    local.sort((a, b) => a.l - b.l || a.r - b.r)
    for (const m of local) candidates.push({ left: m.left, right: m.right, score: scores[i] ?? 0, order: candidates.length })
  })
  candidates.sort((a, b) => b.score - a.score || a.order - b.order)
  return candidates.map((c) => [c.left, c.right] as const)
}

const idKey = Effect.fnUntraced(function* (header: GgufHeader, key: string, n: number) {
  const id = yield* metaUint(header, key)
  if (id !== undefined && id >= n) return yield* ggufError(header.file, key, "", `token id ${id} is outside the ${n}-token vocabulary`)
  return id
})

/**
 * The tokenizer.json / tokenizer_config.json objects for a GGUF's tokenizer, or undefined when the
 * file has no `tokenizer.ggml.model` (or model "none"): the model then runs on ids only.
 *
 * **Details**: fails with a GgufError naming the key for an unsupported model or pre-tokenizer,
 * arrays of mismatched lengths, ids outside the vocabulary, and malformed merges.
 *
 * @category constructors
 */
export const ggufTokenizerParts = (header: GgufHeader): Effect.Effect<GgufTokenizerParts | undefined, GgufError> =>
  Effect.gen(function* () {
    const file = header.file
    const model = yield* metaString(header, "tokenizer.ggml.model")
    if (model === undefined || model === "none") return undefined
    if (model !== "llama" && model !== "gpt2")
      return yield* ggufError(file, "tokenizer.ggml.model", "", `tokenizer model "${model}" is not supported (sirius-ts reads "llama" and "gpt2")`)
    const tokens = yield* metaStrings(header, "tokenizer.ggml.tokens")
    if (tokens === undefined || tokens.length === 0) return yield* ggufError(file, "tokenizer.ggml.tokens", "", "is required (a non-empty array of strings)")
    const n = tokens.length
    const sameLength = <A>(key: string, xs: ReadonlyArray<A> | undefined) =>
      xs !== undefined && xs.length !== n ? Effect.fail(ggufError(file, key, "", `has ${xs.length} entries for ${n} tokens`)) : Effect.succeed(xs)
    const types = yield* sameLength("tokenizer.ggml.token_type", yield* metaNumbers(header, "tokenizer.ggml.token_type"))
    const typeOf = (i: number) => types?.[i] ?? 1
    const bos = yield* idKey(header, "tokenizer.ggml.bos_token_id", n)
    const eos = yield* idKey(header, "tokenizer.ggml.eos_token_id", n)
    const unk = yield* idKey(header, "tokenizer.ggml.unknown_token_id", n)
    const eot = yield* idKey(header, "tokenizer.ggml.eot_token_id", n)
    const eom = yield* idKey(header, "tokenizer.ggml.eom_token_id", n)

    const vocab: Record<string, number> = Object.create(null) as Record<string, number>
    tokens.forEach((t, i) => (vocab[t] = i))
    const addedTokens = tokens.flatMap((content, id) => {
      const type = typeOf(id)
      if (type !== TOKEN_CONTROL && type !== TOKEN_UNKNOWN && type !== TOKEN_USER_DEFINED) return []
      return [{ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: type !== TOKEN_USER_DEFINED }]
    })

    let modelJson: Record<string, unknown>
    let normalizer: unknown = null
    let preTokenizer: unknown = null
    let decoder: unknown
    let defaultAddBos: boolean
    if (model === "llama") {
      const scores = yield* sameLength("tokenizer.ggml.scores", yield* metaNumbers(header, "tokenizer.ggml.scores"))
      const addSpacePrefix = (yield* metaBool(header, "tokenizer.ggml.add_space_prefix")) ?? true
      modelJson = {
        type: "BPE",
        dropout: null,
        unk_token: unk === undefined ? null : tokens[unk],
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: true,
        byte_fallback: true,
        ignore_merges: false,
        vocab,
        merges: sentencePieceMerges(tokens, scores ?? new Array<number>(n).fill(0))
      }
      const replace = { type: "Replace", pattern: { String: " " }, content: "\u2581" }
      normalizer = addSpacePrefix ? { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "\u2581" }, replace] } : replace
      decoder = {
        type: "Sequence",
        decoders: [
          { type: "Replace", pattern: { String: "\u2581" }, content: " " },
          { type: "ByteFallback" },
          { type: "Fuse" },
          ...(addSpacePrefix ? [{ type: "Strip", content: " ", start: 1, stop: 0 }] : [])
        ]
      }
      defaultAddBos = true
    } else {
      const preName = yield* metaString(header, "tokenizer.ggml.pre")
      const pre = preName === undefined ? undefined : preTokenizers.get(preName)
      if (pre === undefined)
        return yield* ggufError(
          file,
          "tokenizer.ggml.pre",
          "",
          preName === undefined
            ? `is required for a "gpt2" tokenizer (sirius-ts reproduces ${[...preTokenizers.keys()].join(", ")})`
            : `pre-tokenizer "${preName}" is not supported (sirius-ts reproduces ${[...preTokenizers.keys()].join(", ")})`
        )
      const rawMerges = yield* metaStrings(header, "tokenizer.ggml.merges")
      if (rawMerges === undefined) return yield* ggufError(file, "tokenizer.ggml.merges", "", `is required for a "gpt2" tokenizer`)
      const merges: Array<readonly [string, string]> = []
      for (const [i, m] of rawMerges.entries()) {
        // llama.cpp splits at the first space after the first character (a left part may start with one).
        const at = m.indexOf(" ", 1)
        if (at < 0 || at === m.length - 1) return yield* ggufError(file, "tokenizer.ggml.merges", "", `merge ${i} ${JSON.stringify(m)} is not "left right"`)
        merges.push([m.slice(0, at), m.slice(at + 1)])
      }
      modelJson = {
        type: "BPE",
        dropout: null,
        unk_token: unk === undefined ? null : tokens[unk],
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: pre.ignoreMerges,
        vocab,
        merges
      }
      preTokenizer = {
        type: "Sequence",
        pretokenizers: [
          { type: "Split", pattern: { Regex: pre.regex }, behavior: "Isolated", invert: false },
          { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false }
        ]
      }
      decoder = { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true }
      defaultAddBos = pre.addBos
    }

    const addBos = (yield* metaBool(header, "tokenizer.ggml.add_bos_token")) ?? defaultAddBos
    const addEos = (yield* metaBool(header, "tokenizer.ggml.add_eos_token")) ?? false
    if (addBos && bos === undefined) return yield* ggufError(file, "tokenizer.ggml.add_bos_token", "", "is true but tokenizer.ggml.bos_token_id is not set")
    if (addEos && eos === undefined) return yield* ggufError(file, "tokenizer.ggml.add_eos_token", "", "is true but tokenizer.ggml.eos_token_id is not set")
    // The post-processor adds special tokens by content: they must be added tokens.
    for (const id of [bos, eos])
      if (id !== undefined && !addedTokens.some((t) => t.id === id))
        addedTokens.push({ id, content: tokens[id]!, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })
    addedTokens.sort((a, b) => a.id - b.id)

    const special = (id: number | undefined) => (id === undefined ? [] : [{ SpecialToken: { id: tokens[id]!, type_id: 0 } }])
    const single = [...(addBos ? special(bos) : []), { Sequence: { id: "A", type_id: 0 } }, ...(addEos ? special(eos) : [])]
    const specialTokensMap: Record<string, unknown> = {}
    for (const id of [addBos ? bos : undefined, addEos ? eos : undefined])
      if (id !== undefined) specialTokensMap[tokens[id]!] = { id: tokens[id]!, ids: [id], tokens: [tokens[id]!] }
    const tokenizerJson: Record<string, unknown> = {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: addedTokens,
      normalizer,
      pre_tokenizer: preTokenizer,
      post_processor: { type: "TemplateProcessing", single, pair: [...single, { Sequence: { id: "B", type_id: 1 } }], special_tokens: specialTokensMap },
      decoder,
      model: modelJson
    }
    const text = (id: number | undefined) => (id === undefined ? {} : { content: tokens[id]! })
    const specialTokens: SpecialTokens = {
      ...(bos === undefined ? {} : { bos: tokens[bos]! }),
      ...(eos === undefined ? {} : { eos: tokens[eos]! }),
      ...(eot === undefined ? {} : { eot: tokens[eot]! }),
      ...(unk === undefined ? {} : { unk: tokens[unk]! })
    }
    const tokenizerConfig: Record<string, unknown> = {
      bos_token: text(bos).content ?? null,
      eos_token: text(eos).content ?? null,
      unk_token: text(unk).content ?? null,
      add_bos_token: addBos,
      add_eos_token: addEos,
      // llama.cpp does not tidy spaces around punctuation when decoding; neither do we.
      clean_up_tokenization_spaces: false
    }
    return {
      tokenizerJson,
      tokenizerConfig,
      specialTokens,
      bosTokenId: bos,
      eosTokenIds: [...new Set([eos, eot, eom].filter((id): id is number => id !== undefined))],
      addBosToken: addBos,
      addEosToken: addEos
    }
  })

// ---------------------------------------------------------------------------------------------------
// The other way: an HF tokenizer.json as GGUF tokenizer metadata (for `sirius quantize` of HF models)

/** HF tokenizer.json's spellings of the two pre-tokenizer regexes (case-insensitive contractions). */
const hfRegexes: ReadonlyMap<string, string> = new Map([
  [String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`, "llama-bpe"],
  [LLAMA3_REGEX, "llama-bpe"],
  [String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`, "qwen2"],
  [QWEN2_REGEX, "qwen2"]
])

type Json = Record<string, unknown>
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v)
/** A component and, for Sequences, its members, flattened. */
const components = (v: unknown, key: string): Array<Json> =>
  !isObject(v) ? [] : v["type"] === "Sequence" && Array.isArray(v[key]) ? (v[key] as Array<unknown>).flatMap((c) => components(c, key)) : [v]
const tokenContent = (v: unknown): string | undefined => (typeof v === "string" ? v : isObject(v) && typeof v["content"] === "string" ? v["content"] : undefined)

/**
 * The GGUF vocabulary of an HF `tokenizer.json` (+ `tokenizer_config.json`), for the two forms
 * GgufTokenizer reads back: byte-level BPE whose Split regex is Llama 3's or Qwen2's (→ `gpt2` with
 * that `pre`), and SentencePiece-style BPE with byte fallback and `▁` (→ `llama`, scores from the merge
 * ranks: a token made by merge r scores −r, as SentencePiece BPE models score their pieces). Tokens are
 * padded with `[PADn]` (unused, type 5) up to `vocabSize` when the model's embedding is larger.
 * Returns a description of what is not supported instead of a vocabulary.
 *
 * @category conversions
 */
export const ggufVocabFromTokenizerJson = (
  tokenizerJson: unknown,
  tokenizerConfig: unknown,
  vocabSize: number
): { readonly vocab: import("./Gguf.ts").GgufVocab | import("./Gguf.ts").GgufBpeVocab } | { readonly unsupported: string } => {
  if (!isObject(tokenizerJson) || !isObject(tokenizerJson["model"])) return { unsupported: "no model in tokenizer.json" }
  const model = tokenizerJson["model"]
  if (model["type"] !== "BPE") return { unsupported: `tokenizer model ${JSON.stringify(model["type"])} (only BPE converts)` }
  const config = isObject(tokenizerConfig) ? tokenizerConfig : {}
  const vocab = isObject(model["vocab"]) ? (model["vocab"] as Record<string, unknown>) : {}
  const added = Array.isArray(tokenizerJson["added_tokens"]) ? (tokenizerJson["added_tokens"] as Array<unknown>).filter(isObject) : []
  const tokens: Array<string | undefined> = new Array(vocabSize)
  for (const [t, id] of Object.entries(vocab)) if (typeof id === "number" && id >= 0 && id < vocabSize) tokens[id] = t
  const special = new Map<number, boolean>()
  for (const a of added)
    if (typeof a["id"] === "number" && typeof a["content"] === "string" && a["id"] < vocabSize) {
      tokens[a["id"]] = a["content"]
      special.set(a["id"], a["special"] === true)
    }
  const beyond = Object.values(vocab).some((id) => typeof id === "number" && id >= vocabSize)
  if (beyond) return { unsupported: `tokenizer.json has ids beyond the model's vocab_size ${vocabSize}` }
  const filled = tokens.map((t, i) => t ?? `[PAD${i}]`)
  const mergesRaw = Array.isArray(model["merges"]) ? (model["merges"] as Array<unknown>) : []
  const merges = mergesRaw.map((m) => (Array.isArray(m) ? `${m[0]} ${m[1]}` : String(m)))
  const idOf = (key: string) => {
    const content = tokenContent(config[key])
    const id = content === undefined ? -1 : filled.indexOf(content)
    return id < 0 ? undefined : id
  }
  const bos = idOf("bos_token")
  const eos = idOf("eos_token")
  const single = components(tokenizerJson["post_processor"], "processors").find((p) => p["type"] === "TemplateProcessing")?.["single"]
  const templateHas = (id: number | undefined) =>
    id !== undefined && Array.isArray(single) && single.some((item) => isObject(item) && isObject(item["SpecialToken"]) && item["SpecialToken"]["id"] === filled[id])
  const addBos = typeof config["add_bos_token"] === "boolean" ? config["add_bos_token"] : templateHas(bos)
  const addEos = typeof config["add_eos_token"] === "boolean" ? config["add_eos_token"] : templateHas(eos)
  if (eos === undefined) return { unsupported: "tokenizer_config.json names no eos_token found in the vocabulary" }

  const pre = components(tokenizerJson["pre_tokenizer"], "pretokenizers")
  if (pre.some((c) => c["type"] === "ByteLevel")) {
    const split = pre.find((c) => c["type"] === "Split")
    const regex = isObject(split?.["pattern"]) ? split["pattern"]["Regex"] : undefined
    const preName = typeof regex === "string" ? hfRegexes.get(regex) : undefined
    if (preName === undefined) return { unsupported: `byte-level pre-tokenizer ${JSON.stringify(regex ?? pre.map((c) => c["type"]))} (recognised: Llama 3's and Qwen2's)` }
    return {
      vocab: {
        model: "gpt2",
        pre: preName,
        tokens: filled,
        tokenTypes: filled.map((_, i) => (tokens[i] === undefined ? 5 : special.has(i) ? (special.get(i) ? TOKEN_CONTROL : TOKEN_USER_DEFINED) : 1)),
        merges,
        ...(bos === undefined ? {} : { bosTokenId: bos }),
        eosTokenId: eos,
        addBosToken: addBos,
        addEosToken: addEos
      }
    }
  }
  const normalizers = components(tokenizerJson["normalizer"], "normalizers")
  const metaspace = pre.find((c) => c["type"] === "Metaspace")
  const spaceAsMeta = normalizers.some((n) => n["type"] === "Replace" && n["content"] === "\u2581") || metaspace !== undefined
  if (model["byte_fallback"] !== true || !spaceAsMeta) return { unsupported: "BPE without byte-level pre-tokenizer or SentencePiece byte fallback and ▁" }
  // A piece made by merge r scores −r; pieces no merge makes (characters, bytes, specials) score below all.
  const scores = new Map<string, number>()
  merges.forEach((m, r) => {
    const at = m.indexOf(" ", 1)
    const piece = m.slice(0, at) + m.slice(at + 1)
    if (!scores.has(piece)) scores.set(piece, -r)
  })
  const addSpacePrefix =
    normalizers.some((n) => n["type"] === "Prepend" && n["prepend"] === "\u2581") ||
    (metaspace !== undefined && (metaspace["prepend_scheme"] === "always" || metaspace["prepend_scheme"] === "first" || metaspace["add_prefix_space"] === true))
  const unk = tokenContent(model["unk_token"])
  const unkId = unk === undefined ? -1 : filled.indexOf(unk)
  return {
    vocab: {
      model: "llama",
      tokens: filled,
      scores: filled.map((t) => scores.get(t) ?? -merges.length - 1),
      tokenTypes: filled.map((t, i) =>
        tokens[i] === undefined ? 5 : i === unkId ? TOKEN_UNKNOWN : special.has(i) ? (special.get(i) ? TOKEN_CONTROL : TOKEN_USER_DEFINED) : /^<0x[0-9A-F]{2}>$/.test(t) ? 6 : 1
      ),
      bosTokenId: bos ?? 0,
      eosTokenId: eos,
      unknownTokenId: unkId < 0 ? 0 : unkId,
      addBosToken: addBos,
      addEosToken: addEos,
      addSpacePrefix
    }
  }
}
