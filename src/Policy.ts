/**
 * Correction policies: how a Sirius request drafts, when it verifies, which drafts it accepts, and what
 * it emits where it rejects. The engine (Sirius.ts) owns the loop; a policy only decides.
 *
 * Built-ins (docs/sirius.md, acceptance policies):
 * - `threshold` (Sirius, lossy by design): accept a draft iff the full model's tempered probability
 *   softmax(logits/τ)[draft] ≥ acceptanceThreshold (τ = 0.6, threshold 0.1).
 * - `greedyExact`: accept iff the draft is the token full-model decoding would emit there (its argmax after
 *   the same repetition penalty): the output equals full greedy decoding.
 * - `speculative`: rejection sampling between the sparse (q) and full (p) sampling distributions: accept
 *   with probability min(1, p/q), else emit a draw from norm(max(0, p − q)): the output is distributed
 *   exactly as full-model sampling. With temperature 0 it is `greedyExact`.
 * Sampling settings always apply to the tokens the full model emits (corrections and bonus tokens).
 */
import { Effect, Schema } from "effect"
import * as Sampler from "./Sampler.ts"

/**
 * A correction policy returned something the engine cannot use (a token outside the vocabulary, NaN, a
 * non-integer, a non-boolean) or threw. Names the policy and the method; nothing it returned is committed.
 */
export class PolicyError extends Schema.TaggedError<PolicyError>()("PolicyError", {
  policy: Schema.String,
  method: Schema.String,
  message: Schema.String
}) {}

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
  /**
   * Tokens in the window so far: the full-model token that opens it plus the drafts. Asked after each
   * draft while the window is not full, so 2..correctionPeriod − 1 (a full window is always verified).
   */
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
  /**
   * Choose the next draft from the sparse logits (chain drafting only). Default: the sparse model's greedy
   * token. Tree drafting (treeWidth > 1) grows a beam of the sparse model's top tokens instead, so a policy
   * with its own `draft` cannot be given a tree (the types of `Sirius.SiriusOptions` refuse it).
   */
  readonly draft?: (ctx: DraftContext) => number
  /** Verify before the window is full (adaptive policies); the window is always verified when full. */
  readonly verifyEarly: (ctx: WindowContext) => boolean
  readonly accept: (ctx: VerifyContext) => boolean
  /** The full model's token at the first rejected position, or the bonus token. */
  readonly correct: (ctx: CorrectContext) => number
}

/** A policy usable with tree drafting: the tree chooses the drafts, so the policy must not. */
export type TreePolicy = CorrectionPolicy & { readonly draft?: never }

export const greedyDraft = (ctx: DraftContext): number => Sampler.argmax(Sampler.penalize(ctx.sparseLogits, ctx.context, ctx.sampling.repetitionPenalty))
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

export const threshold = (acceptanceThreshold = 0.1, temperature = acceptanceTemperature): TreePolicy => ({
  name: `threshold(${acceptanceThreshold})`,
  verifyEarly: never,
  accept: (ctx) => temperedProbability(ctx.fullLogits, ctx.draft, temperature) >= acceptanceThreshold,
  correct: sampleFull
})

export const greedyExact: TreePolicy = {
  name: "greedy-exact",
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

/**
 * The policy with every call checked: a returned token must be an integer id in [0, vocabSize), a
 * decision a boolean; a throw or anything else fails with a PolicyError naming the method, so garbage is
 * never committed.
 */
export interface CheckedPolicy {
  readonly name: string
  readonly hasDraft: boolean
  readonly draft: (ctx: DraftContext) => Effect.Effect<number, PolicyError>
  readonly verifyEarly: (ctx: WindowContext) => Effect.Effect<boolean, PolicyError>
  readonly accept: (ctx: VerifyContext) => Effect.Effect<boolean, PolicyError>
  readonly correct: (ctx: CorrectContext) => Effect.Effect<number, PolicyError>
}

export const checked = (policy: CorrectionPolicy, vocabSize: number): CheckedPolicy => {
  const call = <A>(method: string, f: () => unknown, valid: (v: unknown) => v is A, expected: string): Effect.Effect<A, PolicyError> => {
    let value: unknown
    try {
      value = f()
    } catch (e) {
      return Effect.fail(new PolicyError({ policy: policy.name, method, message: `${policy.name}.${method} threw: ${e instanceof Error ? e.message : String(e)}` }))
    }
    return valid(value)
      ? Effect.succeed(value)
      : Effect.fail(new PolicyError({ policy: policy.name, method, message: `${policy.name}.${method} returned ${describe(value)}; expected ${expected}` }))
  }
  const isToken = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0 && v < vocabSize
  const isBoolean = (v: unknown): v is boolean => typeof v === "boolean"
  const token = `a token id, an integer in [0, ${vocabSize})`
  const draft = policy.draft ?? greedyDraft
  return {
    name: policy.name,
    hasDraft: policy.draft !== undefined,
    draft: (ctx) => call("draft", () => draft(ctx), isToken, token),
    verifyEarly: (ctx) => call("verifyEarly", () => policy.verifyEarly(ctx), isBoolean, "a boolean"),
    accept: (ctx) => call("accept", () => policy.accept(ctx), isBoolean, "a boolean"),
    correct: (ctx) => call("correct", () => policy.correct(ctx), isToken, token)
  }
}

const describe = (v: unknown): string => (typeof v === "number" ? String(v) : typeof v === "string" ? JSON.stringify(v) : v === undefined ? "undefined" : typeof v === "object" ? (v === null ? "null" : "an object") : typeof v)

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
