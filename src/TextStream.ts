/**
 * TextStream: incremental detokenisation with stop strings. Tokens are committed one or more at a time;
 * it yields the text deltas that are safe to show: it holds back an incomplete UTF-8 sequence (decoded
 * as U+FFFD) and any tail that could still grow into a stop string, and cuts the text before the first
 * stop string found. Every newly committed token is searched, however many arrive at once.
 */
import type { TextTokenizer } from "./Tokenizer.ts"

export interface TextStream {
  readonly ids: Array<number>
  /** Full decoded text so far (before any stop-string cut). */
  text: string
  /** Characters of `text` already handed out as deltas. */
  emitted: number
  /** Index of the first stop string in `text`, once found. */
  stopAt: number | undefined
}

export const make = (): TextStream => ({ ids: [], text: "", emitted: 0, stopAt: undefined })

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
  const searchFrom = Math.max(0, ts.text.length - Math.max(0, ...stops.map((s) => s.length)))
  ts.text = tokenizer.decode(ts.ids)
  for (const s of stops) {
    const i = ts.text.indexOf(s, searchFrom)
    if (s.length > 0 && i >= 0 && (ts.stopAt === undefined || i < ts.stopAt)) ts.stopAt = i
  }
  let safe = ts.stopAt ?? ts.text.length - pendingStopPrefix(ts.text, stops)
  while (safe > ts.emitted && ts.stopAt === undefined && ts.text.charCodeAt(safe - 1) === 0xfffd) safe--
  return take(ts, safe)
}

/** The final text (cut at the stop string) and whatever was held back. */
export const flush = (ts: TextStream): string => take(ts, ts.stopAt ?? ts.text.length)

export const finalText = (ts: TextStream): string => ts.text.slice(0, ts.stopAt ?? ts.text.length)

const take = (ts: TextStream, upTo: number): string => {
  if (upTo <= ts.emitted) return ""
  const delta = ts.text.slice(ts.emitted, upTo)
  ts.emitted = upTo
  return delta
}
