/**
 * Correction policies: how a Sirius request drafts, when it verifies, which drafts it accepts, and what
 * it emits where it rejects. The engine (Sirius.ts) owns the loop; a policy only decides.
 *
 * Built-ins (sirius-algorithm.md §3.4, §6):
 * - `threshold` (Sirius, lossy by design): accept a draft iff the full model's tempered probability
 *   softmax(logits/τ)[draft] ≥ acceptanceThreshold (τ = 0.6, threshold 0.1).
 * - `greedyExact`: accept iff the draft is the token full-model decoding would emit there (its argmax after
 *   the same repetition penalty): the output equals full greedy decoding.
 * - `speculative`: rejection sampling between the sparse (q) and full (p) sampling distributions: accept
 *   with probability min(1, p/q), else emit a draw from norm(max(0, p − q)): the output is distributed
 *   exactly as full-model sampling. With temperature 0 it is `greedyExact`.
 * Sampling settings always apply to the tokens the full model emits (corrections and bonus tokens).
 */
import * as Sampler from "./Sampler.ts"

/** The acceptance test's temperature (Sirius's hard-coded 0.6), one named constant. */
export const acceptanceTemperature = 0.6

export interface DraftContext {
  /** Sparse-model logits for the next token. */
  readonly sparseLogits: Float32Array
  /** Prompt, committed and drafted ids so far. */
  readonly context: ReadonlyArray<number>
  readonly sampling: Sampler.SamplingOptions
  readonly rng: Sampler.Rng
}

export interface WindowContext {
  /** Tokens in the window so far: the full-model token that opens it plus the drafts (1..correctionPeriod). */
  readonly windowLength: number
  readonly correctionPeriod: number
  /** The sparse logits that produced the newest draft. */
  readonly sparseLogits: Float32Array
}

export interface VerifyContext {
  readonly draft: number
  /** Full-model logits at the draft's position (given the accepted prefix). */
  readonly fullLogits: Float32Array
  /** Sparse-model logits the draft was drawn from. */
  readonly sparseLogits: Float32Array
  /** Prompt, committed and accepted ids before the draft. */
  readonly context: ReadonlyArray<number>
  readonly sampling: Sampler.SamplingOptions
  readonly rng: Sampler.Rng
}

export interface CorrectContext {
  readonly fullLogits: Float32Array
  /** The rejected draft and its sparse logits; undefined for the bonus token after a fully accepted window. */
  readonly rejected: { readonly draft: number; readonly sparseLogits: Float32Array } | undefined
  readonly context: ReadonlyArray<number>
  readonly sampling: Sampler.SamplingOptions
  readonly rng: Sampler.Rng
}

export interface CorrectionPolicy {
  readonly name: string
  /** Choose the next draft from the sparse logits. */
  readonly draft: (ctx: DraftContext) => number
  /** Verify before the window is full (adaptive policies); the window is always verified when full. */
  readonly verifyEarly: (ctx: WindowContext) => boolean
  readonly accept: (ctx: VerifyContext) => boolean
  /** The full model's token at the first rejected position, or the bonus token. */
  readonly correct: (ctx: CorrectContext) => number
}

const greedyDraft = (ctx: DraftContext): number => Sampler.argmax(Sampler.penalize(ctx.sparseLogits, ctx.context, ctx.sampling.repetitionPenalty))
const sampleFull = (ctx: CorrectContext): number => Sampler.sample(ctx.fullLogits, ctx.context, ctx.sampling, ctx.rng)
const never = (): boolean => false

/** softmax(logits / τ)[id], in float64. */
export const temperedProbability = (logits: Float32Array, id: number, temperature = acceptanceTemperature): number => {
  let max = -Infinity
  for (const v of logits) max = Math.max(max, v)
  let sum = 0
  for (const v of logits) sum += Math.exp((v - max) / temperature)
  return Math.exp((logits[id]! - max) / temperature) / sum
}

export const threshold = (acceptanceThreshold = 0.1, temperature = acceptanceTemperature): CorrectionPolicy => ({
  name: `threshold(${acceptanceThreshold})`,
  draft: greedyDraft,
  verifyEarly: never,
  accept: (ctx) => temperedProbability(ctx.fullLogits, ctx.draft, temperature) >= acceptanceThreshold,
  correct: sampleFull
})

export const greedyExact: CorrectionPolicy = {
  name: "greedy-exact",
  draft: greedyDraft,
  verifyEarly: never,
  accept: (ctx) => ctx.draft === Sampler.argmax(Sampler.penalize(ctx.fullLogits, ctx.context, ctx.sampling.repetitionPenalty)),
  correct: (ctx) => Sampler.sample(ctx.fullLogits, ctx.context, { ...ctx.sampling, temperature: 0 }, ctx.rng)
}

/** The sampling distribution as a dense probability vector. */
const probabilities = (logits: Float32Array, ctx: { context: ReadonlyArray<number>; sampling: Sampler.SamplingOptions }): Float64Array => {
  const p = new Float64Array(logits.length)
  for (const e of Sampler.distribution(Sampler.penalize(logits, ctx.context, ctx.sampling.repetitionPenalty), ctx.sampling)) p[e.id] = e.p
  return p
}

const drawFrom = (p: Float64Array, rng: Sampler.Rng): number => {
  let total = 0
  for (const v of p) total += v
  const u = Sampler.nextFloat(rng) * total
  let acc = 0
  let last = 0
  for (let i = 0; i < p.length; i++) {
    if (p[i]! <= 0) continue
    acc += p[i]!
    last = i
    if (u < acc) return i
  }
  return last
}

export const speculative: CorrectionPolicy = {
  name: "speculative",
  draft: (ctx) => (ctx.sampling.temperature === 0 ? greedyDraft(ctx) : drawFrom(probabilities(ctx.sparseLogits, ctx), ctx.rng)),
  verifyEarly: never,
  accept: (ctx) => {
    if (ctx.sampling.temperature === 0) return greedyExact.accept(ctx)
    const p = probabilities(ctx.fullLogits, ctx)[ctx.draft]!
    const q = probabilities(ctx.sparseLogits, ctx)[ctx.draft]!
    return q <= p || Sampler.nextFloat(ctx.rng) < p / q
  },
  correct: (ctx) => {
    if (ctx.sampling.temperature === 0) return greedyExact.correct(ctx)
    const p = probabilities(ctx.fullLogits, ctx)
    if (ctx.rejected === undefined) return drawFrom(p, ctx.rng)
    const q = probabilities(ctx.rejected.sparseLogits, ctx)
    const residual = p.map((pi, i) => Math.max(0, pi - q[i]!))
    return residual.some((r) => r > 0) ? drawFrom(residual, ctx.rng) : drawFrom(p, ctx.rng)
  }
}

export type AcceptanceName = "threshold" | "greedy-exact" | "speculative"

export const byName = (name: AcceptanceName, acceptanceThreshold = 0.1): CorrectionPolicy =>
  name === "threshold" ? threshold(acceptanceThreshold) : name === "greedy-exact" ? greedyExact : speculative

/** Shannon entropy (nats) of softmax(logits): the sparse model's uncertainty, for adaptive policies. */
export const entropy = (logits: Float32Array): number => {
  let max = -Infinity
  for (const v of logits) max = Math.max(max, v)
  let sum = 0
  for (const v of logits) sum += Math.exp(v - max)
  let h = 0
  for (const v of logits) {
    const p = Math.exp(v - max) / sum
    if (p > 0) h -= p * Math.log(p)
  }
  return h
}
