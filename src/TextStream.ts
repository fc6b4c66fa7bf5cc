/**
 * TextStream: incremental detokenisation with stop strings. Tokens are committed one or more at a time;
 * it yields the text deltas that are safe to show: it holds back an incomplete UTF-8 sequence (decoded
 * as U+FFFD) and any tail that could still grow into a stop string, and cuts the text before the first
 * stop string found.
 *
 * Decoding is incremental (the scheme of vLLM's `detokenize_incrementally`): each commit decodes only the
 * tokens since a recent offset, twice (with and without the new tokens), and appends the difference. A
 * slice is decoded from a few tokens back so that decoders which treat the first token specially (a
 * SentencePiece leading space) see the same prefix in both decodes. Cost per commit: O(new tokens + a
 * few), not O(everything so far).
 */
import type { TextTokenizer } from "./Tokenizer.ts"

/** Tokens of context decoded before the new ones (enough for a multi-token UTF-8 character). */
const CONTEXT = 6

export interface TextStream {
  readonly ids: Array<number>
  /** Text of ids[0..readOffset) (before any stop-string cut). */
  text: string
  /** ids[prefixOffset..readOffset) is the context decoded before new tokens. */
  prefixOffset: number
  readOffset: number
  /** Characters of `text` already handed out as deltas. */
  emitted: number
  /** Index of the first stop string in `text`, once found. */
  stopAt: number | undefined
}

export const make = (): TextStream => ({ ids: [], text: "", prefixOffset: 0, readOffset: 0, emitted: 0, stopAt: undefined })

/** Longest suffix of `text` that is a proper prefix of some stop string: it may still become one. */
const pendingStopPrefix = (text: string, stops: ReadonlyArray<string>): number => {
  let longest = 0
  for (const s of stops)
    for (let n = Math.min(s.length - 1, text.length); n > longest; n--)
      if (text.endsWith(s.slice(0, n))) {
        longest = n
        break
      }
  return longest
}

/** The text of ids (tokenizers refuse an empty list). */
const decode = (tokenizer: TextTokenizer, ids: ReadonlyArray<number>): string => (ids.length === 0 ? "" : tokenizer.decode(ids))

/** Decode the tokens read so far into `text`, unless they end inside a UTF-8 sequence. */
const advance = (ts: TextStream, tokenizer: TextTokenizer): void => {
  const prefix = decode(tokenizer, ts.ids.slice(ts.prefixOffset, ts.readOffset))
  const full = decode(tokenizer, ts.ids.slice(ts.prefixOffset))
  // an incomplete character decodes as U+FFFD: wait for the tokens that complete it
  if (full.length <= prefix.length || full.endsWith("\ufffd")) return
  ts.text += full.slice(prefix.length)
  ts.readOffset = ts.ids.length
  ts.prefixOffset = Math.max(0, ts.readOffset - CONTEXT)
}

/**
 * Commit tokens; returns the new safe delta. After this, `stopAt` is set if a stop string appeared.
 * Without a tokenizer the text stays empty (id-only models).
 */
export const push = (
  ts: TextStream,
  tokens: ReadonlyArray<number>,
  tokenizer: TextTokenizer | undefined,
  stops: ReadonlyArray<string>
): string => {
  ts.ids.push(...tokens)
  if (tokenizer === undefined || ts.stopAt !== undefined) return ""
  const before = ts.text.length
  advance(ts, tokenizer)
  const longestStop = Math.max(0, ...stops.map((s) => s.length))
  const searchFrom = Math.max(0, before - longestStop + 1)
  for (const s of stops) {
    const i = s.length > 0 ? ts.text.indexOf(s, searchFrom) : -1
    if (i >= 0 && (ts.stopAt === undefined || i < ts.stopAt)) ts.stopAt = i
  }
  return take(ts, ts.stopAt ?? ts.text.length - pendingStopPrefix(ts.text, stops))
}

/** The rest of the text (cut at the stop string), including what was held back. */
export const flush = (ts: TextStream, tokenizer: TextTokenizer | undefined): string => {
  if (tokenizer !== undefined && ts.stopAt === undefined && ts.readOffset < ts.ids.length) {
    // the stream ends inside a character: show what the tokenizer makes of it (U+FFFD)
    const prefix = decode(tokenizer, ts.ids.slice(ts.prefixOffset, ts.readOffset))
    ts.text += decode(tokenizer, ts.ids.slice(ts.prefixOffset)).slice(prefix.length)
    ts.readOffset = ts.ids.length
  }
  return take(ts, ts.stopAt ?? ts.text.length)
}

export const finalText = (ts: TextStream): string => ts.text.slice(0, ts.stopAt ?? ts.text.length)

const take = (ts: TextStream, upTo: number): string => {
  if (upTo <= ts.emitted) return ""
  const delta = ts.text.slice(ts.emitted, upTo)
  ts.emitted = upTo
  return delta
}
