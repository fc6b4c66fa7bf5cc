/**
 * Sampler: turns one row of logits into a token id. Pure functions over explicit state (a seeded PRNG),
 * in the shape of llama2.c's sampler.
 *
 * Order of processing (HF transformers' order): repetition penalty → temperature → top-k → top-p → min-p
 * → draw. Temperature 0 is greedy (argmax after the repetition penalty). Ties in argmax go to the
 * lowest id. The same seed and the same logits give the same tokens.
 */

export interface SamplingOptions {
  /** 0 = greedy. */
  readonly temperature: number
  /** Keep the k most likely tokens; 0 = off. */
  readonly topK: number
  /** Keep the smallest set whose probability mass reaches p; 1 = off. */
  readonly topP: number
  /** Drop tokens whose probability is below minP · p(most likely); 0 = off. */
  readonly minP: number
  /** HF/CTRL penalty on every token already in the context: logit/θ if positive, logit·θ if negative; 1 = off. */
  readonly repetitionPenalty: number
  readonly seed: number
}

export const greedy: SamplingOptions = { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, seed: 0 }

/** A 32-bit state PRNG (mulberry32): tiny, seedable, good enough for sampling. */
export interface Rng {
  state: number
}
export const rng = (seed: number): Rng => ({ state: seed >>> 0 })
/** Uniform in [0, 1). */
export const nextFloat = (r: Rng): number => {
  r.state = (r.state + 0x6d2b79f5) >>> 0
  let t = r.state
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

export const argmax = (logits: ArrayLike<number>): number => {
  let best = 0
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i
  return best
}

/**
 * The logits with the repetition penalty applied: a penalised copy, or the logits themselves when the
 * penalty is 1 (no copy on the common path; callers treat the result as read-only).
 */
export const penalize = (logits: Float32Array, context: Iterable<number>, penalty: number): Float32Array => {
  if (penalty === 1) return logits
  const out = logits.slice()
  for (const id of new Set(context)) out[id] = out[id]! > 0 ? out[id]! / penalty : out[id]! * penalty
  return out
}

/**
 * The filtered, renormalised distribution the sampler draws from, as (id, p) pairs sorted by
 * descending probability (ties by id). Exposed so tests and the speculative acceptance rule can use it.
 */
export const distribution = (logits: Float32Array, options: SamplingOptions): Array<{ id: number; p: number }> => {
  const { temperature, topK, topP, minP } = options
  let max = -Infinity
  for (const v of logits) max = Math.max(max, v)
  let entries = Array.from(logits, (v, id) => ({ id, p: Math.exp((v - max) / temperature) }))
  entries.sort((a, b) => b.p - a.p || a.id - b.id)
  if (topK > 0) entries = entries.slice(0, topK)
  const normalise = () => {
    const sum = entries.reduce((s, e) => s + e.p, 0)
    for (const e of entries) e.p /= sum
  }
  normalise()
  if (topP < 1) {
    let mass = 0
    let keep = 0
    while (keep < entries.length && mass < topP) mass += entries[keep++]!.p
    entries = entries.slice(0, Math.max(1, keep))
    normalise()
  }
  if (minP > 0) {
    const floor = minP * entries[0]!.p
    entries = entries.filter((e) => e.p >= floor)
    normalise()
  }
  return entries
}

/** Pick the next token from one row of logits. `context` = prompt and generated ids so far. */
export const sample = (logits: Float32Array, context: Iterable<number>, options: SamplingOptions, r: Rng): number => {
  const penalized = penalize(logits, context, options.repetitionPenalty)
  if (options.temperature === 0) return argmax(penalized)
  const entries = distribution(penalized, options)
  const u = nextFloat(r)
  let acc = 0
  for (const e of entries) {
    acc += e.p
    if (u < acc) return e.id
  }
  return entries[entries.length - 1]!.id
}
