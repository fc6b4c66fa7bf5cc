// Acceptance rules with statistics: speculative acceptance (rejection sampling between the sparse model q
// and the full model p) emits tokens distributed as the full model's sampling distribution, checked with a
// stated total-variation bound over many seeded draws, at the policy level and end to end through Sirius;
// and the tree's winner rule on a tree whose pruned dead end is longer than every final beam.
import { Effect, Stream } from "effect"
import { describe, expect, it } from "vitest"
import { ReferenceKernels } from "../reference/index.ts"
import type { LlamaConfig } from "../src/Config.ts"
import * as DraftTree from "../src/DraftTree.ts"
import * as Forward from "../src/Forward.ts"
import * as KvCache from "../src/KvCache.ts"
import * as Model from "../src/Model.ts"
import * as Policy from "../src/Policy.ts"
import * as Sampler from "../src/Sampler.ts"
import * as Sirius from "../src/Sirius.ts"
import { seeded } from "../testing/arbitraries.ts"
import { randomWeights } from "../testing/RandomModel.ts"

/** The sampling distribution (after temperature and filters) as a dense vector. */
const dist = (logits: Float32Array, sampling: Sampler.SamplingOptions): Float64Array => {
  const p = new Float64Array(logits.length)
  for (const e of Sampler.distribution(logits, sampling)) p[e.id] = e.p
  return p
}
const tv = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let d = 0
  for (let i = 0; i < a.length; i++) d += Math.abs(a[i]! - b[i]!)
  return d / 2
}
/**
 * With N draws from a distribution over V outcomes, the empirical distribution is within ε of it in total
 * variation except with probability δ, for ε = sqrt((V ln 2 + ln(1/δ)) / (2N)) (the L1 concentration
 * inequality: P(‖p̂ − p‖₁ ≥ 2ε) ≤ (2^V − 2)·e^(−2Nε²)). δ = 1e-6: a correct sampler fails one run in a million.
 */
const tvBound = (V: number, N: number, delta = 1e-6) => Math.sqrt((V * Math.LN2 + Math.log(1 / delta)) / (2 * N))

/** One draft/verify round of a policy: draft from q, accept or correct against p; the emitted token. */
const round = (policy: Policy.CorrectionPolicy, q: Float32Array, p: Float32Array, sampling: Sampler.SamplingOptions, rng: Sampler.Rng) => {
  const draft = (policy.draft ?? Policy.greedyDraft)({ sparseLogits: q, context: [], sampling, rng })
  if (policy.accept({ draft, fullLogits: p, sparseLogits: q, context: [], sampling, rng })) return draft
  return policy.correct({ fullLogits: p, rejected: { draft, sparseLogits: q }, context: [], sampling, rng })
}

describe("speculative acceptance emits the full model's distribution", () => {
  const V = 12
  const N = 60_000
  const cases = [
    { temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, seed: 0 },
    { temperature: 0.7, topK: 6, topP: 0.95, minP: 0, repetitionPenalty: 1, seed: 0 }
  ] as const

  for (const sampling of cases)
    it(`at temperature ${sampling.temperature}, top-k ${sampling.topK}, top-p ${sampling.topP}: within the TV bound over ${N} draws; always accepting is caught`, () => {
      const q = seeded(1, V, 3) // sparse model
      const p = seeded(2, V, 3) // full model
      const target = dist(p, sampling)
      const bound = tvBound(V, N)
      // the test has power: the sparse distribution is far from the full one
      expect(tv(dist(q, sampling), target)).toBeGreaterThan(5 * bound)
      const rng = Sampler.rng(42)
      const counts = new Float64Array(V)
      for (let i = 0; i < N; i++) counts[round(Policy.speculative, q, p, sampling, rng)]!++
      expect(tv(counts.map((c) => c / N), target)).toBeLessThan(bound)
      // a planted bug, accepting every draft, emits q instead of p
      const lax: Policy.CorrectionPolicy = { ...Policy.speculative, accept: () => true }
      const wrong = new Float64Array(V)
      for (let i = 0; i < N; i++) wrong[round(lax, q, p, sampling, rng)]!++
      expect(tv(wrong.map((c) => c / N), target)).toBeGreaterThan(bound)
    })

  it("end to end through Sirius: the token after the prefill's is distributed as the full model's next-token distribution", async () => {
    const config: LlamaConfig = {
      architecture: "llama", vocabSize: 16, hiddenSize: 32, intermediateSize: 64, numHiddenLayers: 2, numAttentionHeads: 2, numKeyValueHeads: 1, headDim: 16,
      maxPositionEmbeddings: 32, rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: undefined, tieWordEmbeddings: false, attentionBias: false, bosTokenId: undefined, eosTokenIds: []
    }
    const sampling = { ...Sampler.greedy, temperature: 1.5 }
    const prompt = [3, 7, 1]
    const runs = 3000
    const { firsts, seconds, fullNext } = await Effect.runPromise(
      Effect.provide(
        Effect.gen(function* () {
          const model = yield* Model.fromWeights(config, randomWeights(config, { seed: 9 }), { sparse: true })
          const firsts: Array<number> = []
          const seconds: Array<number> = []
          for (let seed = 0; seed < runs; seed++) {
            const events = yield* Stream.runCollect(
              Sirius.generate(model, { prompt, maxNewTokens: 2, sampling: { ...sampling, seed }, correctionPeriod: 2, policy: Policy.speculative, sparsity: { granularity: "fine", density: 0.25 } })
            )
            const finished = Array.from(events).at(-1)!
            if (finished._tag !== "Finished") throw new Error("no Finished event")
            firsts.push(finished.tokens[0]!)
            seconds.push(finished.tokens[1]!)
          }
          // the full model's next-token logits after the most frequent first token
          const counts = new Map<number, number>()
          for (const f of firsts) counts.set(f, (counts.get(f) ?? 0) + 1)
          const mode = [...counts.entries()].sort((a, b) => b[1] - a[1])[0]![0]
          const fullNext = yield* Effect.scoped(
            Effect.flatMap(KvCache.make(model.kernels, config, 8), (cache) => Forward.forward(model, cache, Int32Array.from([...prompt, mode]), 0, "last"))
          )
          return { firsts, seconds, fullNext: { mode, logits: fullNext } }
        }),
        ReferenceKernels.layer
      )
    )
    const given = seconds.filter((_, i) => firsts[i] === fullNext.mode)
    const empirical = new Float64Array(config.vocabSize)
    for (const s of given) empirical[s]! += 1 / given.length
    const bound = tvBound(config.vocabSize, given.length)
    expect(given.length).toBeGreaterThan(400)
    expect(tv(empirical, dist(fullNext.logits, sampling))).toBeLessThan(bound)
  })
})

describe("the tree's winner", () => {
  /** A node of a hand-built tree (scores descending along the beams). */
  const node = (token: number, parent: number, depth: number, score: number): DraftTree.Node => ({ token, parent, depth, score, sparseLogits: new Float32Array(1) })

  it("is chosen among the final beams only: a longer accepted path on a pruned dead end does not win", () => {
    // width 2. Round 1: nodes 1 (score −1) and 2 (−2). Round 2 keeps two children of node 1: 3, 4 — node 2 is
    // now a dead end. Round 3: 5 (child of 3), 6 (child of 4): the final beams.
    const tree: DraftTree.Tree = {
      nodes: [node(0, -1, 0, 0), node(10, 0, 1, -1), node(11, 0, 1, -2), node(12, 1, 2, -1.5), node(13, 1, 2, -1.7), node(14, 3, 3, -2), node(15, 4, 3, -2.1)],
      leaves: [5, 6],
      closed: false
    }
    // the full model rejects node 1 and accepts the dead end 2: every final beam's accepted prefix is empty
    const ok = [true, false, true, false, false, false, false]
    expect(DraftTree.winner(tree, ok)).toEqual({ node: 0, rejected: 1 })
    // accepting node 1 and 3 but not 5: the first beam (higher score) wins with two accepted drafts
    expect(DraftTree.winner(tree, [true, true, true, true, false, false, true])).toEqual({ node: 3, rejected: 5 })
    // a tie in accepted length goes to the higher-scored beam (leaves are kept best first)
    expect(DraftTree.winner(tree, [true, true, false, true, true, false, false])).toEqual({ node: 3, rejected: 5 })
    // a fully accepted beam: no rejected node (the next token is a bonus)
    expect(DraftTree.winner(tree, [true, true, false, false, true, false, true])).toEqual({ node: 6, rejected: undefined })
  })
})
