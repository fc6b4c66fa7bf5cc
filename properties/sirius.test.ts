// Sirius against full-model decoding: the lossless configurations reproduce it exactly, the KV after
// every verification is full-model KV, and the reported metrics follow from the event log.
import { Effect, Stream } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { ReferenceKernels } from "../reference/index.ts"
import type { LlamaConfig } from "../src/Config.ts"
import * as Forward from "../src/Forward.ts"
import * as Generation from "../src/Generation.ts"
import type { Kernels } from "../src/Kernels.ts"
import * as KvCache from "../src/KvCache.ts"
import * as Model from "../src/Model.ts"
import * as Policy from "../src/Policy.ts"
import * as Request from "../src/Request.ts"
import { type KvSnapshot, snapshot } from "../testing/kv.ts"
import { randomWeights } from "../testing/RandomModel.ts"
import * as Sirius from "../src/Sirius.ts"
import type { Granularity } from "../src/Sparsity.ts"
import { tinyModelAndPrompt } from "../testing/arbitraries.ts"
import { assertClose } from "../testing/tolerance.ts"

const run = <A, E>(effect: Effect.Effect<A, E, Kernels>) => Effect.runPromise(Effect.provide(effect, ReferenceKernels.layer))
const load = (config: LlamaConfig, seed: number) => Model.fromWeights(config, randomWeights(config, { seed }), { sparse: true })
const finished = <E extends { _tag: string }>(events: ReadonlyArray<E>) => events[events.length - 1] as Extract<E, { _tag: "Finished" }>

const fullGreedy = (model: Model.Model, prompt: ReadonlyArray<number>, maxNewTokens: number) =>
  Stream.runCollect(Generation.generate(model, { prompt, maxNewTokens })).pipe(Effect.map((e) => finished(e).tokens))

const sirius = (model: Model.Model, options: Partial<Sirius.SiriusOptions> & { prompt: ReadonlyArray<number> }) =>
  Stream.runCollect(
    Sirius.generate(model, { maxNewTokens: 12, sparsity: { granularity: "coarse", density: 0.5 }, ...options } as Sirius.SiriusOptions)
  )

/** Drive a request by hand (Sirius.init, Request.prefill, Sirius.step) and snapshot the KV after every verification. */
const kvAfterVerifications = (model: Model.Model, options: Partial<Sirius.SiriusOptions> & { prompt: ReadonlyArray<number> }) =>
  Effect.scoped(
    Effect.gen(function* () {
      const s = yield* Sirius.init(model, { maxNewTokens: 12, sparsity: { granularity: "coarse", density: 0.5 }, ...options } as Sirius.SiriusOptions)
      yield* Request.prefill(s)
      const snapshots: Array<{ kv: KvSnapshot; length: number }> = []
      while (s.finished === undefined) {
        const events = yield* Sirius.step(s)
        // every slot below lastCheck must now hold full-model K/V of the committed tokens
        if (events.some((e) => e._tag === "Verified")) snapshots.push({ kv: yield* snapshot(model.kernels, s.cache), length: s.lastCheck })
      }
      return { snapshots, tokens: [...s.text.ids] }
    })
  )

const scenario = tinyModelAndPrompt(6).chain((m) =>
  fc.record({
    m: fc.constant(m),
    k: fc.integer({ min: 2, max: 8 }),
    granularity: fc.constantFrom<Granularity>("fine", "coarse"),
    density: fc.constantFrom(0.25, 0.5, 0.75)
  })
)

describe("Sirius ≡ full-model decoding where it must be", () => {
  it("correctionPeriod 1 is full-model greedy decoding", () =>
    fc.assert(
      fc.asyncProperty(scenario, ({ m: { config, seed, prompt }, granularity, density }) =>
        run(
          Effect.gen(function* () {
            const model = yield* load(config, seed)
            const events = yield* sirius(model, { prompt, correctionPeriod: 1, sparsity: { granularity, density } })
            expect(finished(events).tokens).toEqual(yield* fullGreedy(model, prompt, 12))
            expect(finished(events).stats.sparseForwards).toBe(0)
          })
        )
      ),
      { numRuns: 10 }
    ))

  it("greedy-exact and threshold > 0.5 reproduce full greedy decoding for any period, granularity and density", () =>
    fc.assert(
      fc.asyncProperty(scenario, fc.constantFrom<Policy.CorrectionPolicy>(Policy.greedyExact, Policy.threshold(0.51)), ({ m: { config, seed, prompt }, k, granularity, density }, policy) =>
        run(
          Effect.gen(function* () {
            const model = yield* load(config, seed)
            const events = yield* sirius(model, { prompt, correctionPeriod: k, policy, sparsity: { granularity, density } })
            expect(finished(events).tokens).toEqual(yield* fullGreedy(model, prompt, 12))
          })
        )
      ),
      { numRuns: 25 }
    ))

  it("speculative at temperature 0 is greedy-exact", () =>
    fc.assert(
      fc.asyncProperty(scenario, ({ m: { config, seed, prompt }, k, granularity, density }) =>
        run(
          Effect.gen(function* () {
            const model = yield* load(config, seed)
            const events = yield* sirius(model, { prompt, correctionPeriod: k, policy: Policy.speculative, sparsity: { granularity, density } })
            expect(finished(events).tokens).toEqual(yield* fullGreedy(model, prompt, 12))
          })
        )
      ),
      { numRuns: 10 }
    ))

  it("at density 1.0 with greedy-exact every draft is accepted (AAL = k)", () =>
    fc.assert(
      fc.asyncProperty(scenario, ({ m: { config, seed, prompt }, k, granularity }) =>
        run(
          Effect.gen(function* () {
            const model = yield* load(config, seed)
            const events = yield* sirius(model, {
              prompt,
              maxNewTokens: 3 * k + 1,
              correctionPeriod: k,
              policy: Policy.greedyExact,
              sparsity: { granularity, density: 1 }
            })
            const f = finished(events)
            if (f.reason === "length") {
              expect(f.stats.rollbacks).toBe(0)
              expect(f.stats.aal).toBe(k)
            }
          })
        )
      ),
      { numRuns: 15 }
    ))
})

describe("Sirius state and metrics", () => {
  it("after every verification the committed KV equals a full-model prefill of the committed tokens", () =>
    fc.assert(
      fc.asyncProperty(scenario, fc.constantFrom(0.001, 0.1, 0.3), ({ m: { config, seed, prompt }, k, granularity, density }, thr) =>
        run(
          Effect.gen(function* () {
            const model = yield* load(config, seed)
            const { snapshots, tokens } = yield* kvAfterVerifications(model, {
              prompt,
              correctionPeriod: k,
              policy: Policy.threshold(thr),
              sparsity: { granularity, density }
            })
            expect(snapshots.length).toBeGreaterThan(0)
            const all = [...prompt, ...tokens]
            for (const { kv, length } of snapshots) {
              expect(kv.keys[0]!.length).toBe(length * config.numKeyValueHeads * config.headDim)
              const expected = yield* Effect.scoped(
                Effect.gen(function* () {
                  const fresh = yield* KvCache.make(model.kernels, config, length)
                  yield* Forward.forward(model, fresh, Int32Array.from(all.slice(0, length)), 0, "last")
                  return yield* snapshot(model.kernels, fresh)
                })
              )
              // the window pass and the prefill compute each slot with identical arithmetic on the reference
              kv.keys.forEach((keys, l) => expect(Array.from(keys)).toEqual(Array.from(expected.keys[l]!)))
              kv.values.forEach((values, l) => expect(Array.from(values)).toEqual(Array.from(expected.values[l]!)))
            }
          })
        )
      ),
      { numRuns: 15 }
    ))

  it("AAL, rollbacks, forward counts and corrections recomputed from the event log equal the stats", () =>
    fc.assert(
      fc.asyncProperty(scenario, fc.constantFrom(0.05, 0.1, 0.3), ({ m: { config, seed, prompt }, k, granularity, density }, thr) =>
        run(
          Effect.gen(function* () {
            const model = yield* load(config, seed)
            const events = yield* sirius(model, { prompt, maxNewTokens: 20, correctionPeriod: k, policy: Policy.threshold(thr), sparsity: { granularity, density } })
            const f = finished(events)
            const verified = events.filter((e) => e._tag === "Verified") as Array<Extract<Sirius.SiriusEvent, { _tag: "Verified" }>>
            const advances = verified.map((v) => v.accepted + 1)
            const periods = advances.length > 1 ? advances.slice(0, -1) : advances
            expect(f.stats.aal).toBeCloseTo(periods.reduce((a, b) => a + b, 0) / periods.length, 12)
            expect(f.stats.effectiveDensity).toBeCloseTo(((k - 1) * f.stats.parameterDensity + 1) / f.stats.aal, 12)
            expect(f.stats.verifications).toBe(verified.length)
            expect(f.stats.rollbacks).toBe(verified.filter((v) => v.rollback > 0).length)
            expect(f.stats.sparseForwards).toBe(events.filter((e) => e._tag === "Drafted").length)
            expect(f.stats.fullForwards).toBe(verified.length + 1)
            const committed = events.filter((e) => e._tag === "Committed") as Array<Extract<Sirius.SiriusEvent, { _tag: "Committed" }>>
            expect(committed.map((c) => c.token)).toEqual(f.tokens)
            expect(f.tokens.length).toBeLessThanOrEqual(20)
            expect(f.stats.correctedFraction).toBeCloseTo(committed.filter((c) => c.source === "correction").length / f.tokens.length, 12)
            committed.forEach((c, i) => expect(c.position).toBe(prompt.length + i))
            // every draft window holds at most k − 1 drafts, and at least one full-model token per k
            for (const v of verified) expect(v.drafts.length).toBeLessThanOrEqual(k - 1)
          })
        )
      ),
      { numRuns: 20 }
    ))

  it("a drafted eos is verified at once; generation stops only on a committed eos", () =>
    fc.assert(
      fc.asyncProperty(scenario, ({ m: { config, seed, prompt }, k, granularity, density }) =>
        run(
          Effect.gen(function* () {
            const model = yield* load(config, seed)
            // make a frequent token the eos: the greedy continuation's second token
            const free = yield* fullGreedy(model, prompt, 4)
            const eos = free[1]!
            const events = yield* sirius(model, { prompt, correctionPeriod: k, eosTokenIds: [eos], policy: Policy.threshold(0.001), sparsity: { granularity, density } })
            const f = finished(events)
            let pendingEos = false
            for (const e of events) {
              if (e._tag === "Drafted") {
                expect(pendingEos).toBe(false) // no drafting past a drafted eos
                pendingEos = e.token === eos
              }
              if (e._tag === "Verified") pendingEos = false
            }
            if (f.reason === "eos") expect(f.tokens[f.tokens.length - 1]).toBe(eos)
            expect(f.tokens.slice(0, -1)).not.toContain(eos)
          })
        )
      ),
      { numRuns: 15 }
    ))

  it("rejects a bad correctionPeriod", () =>
    run(
      Effect.gen(function* () {
        const config = { ...(yield* Effect.sync(() => ({}))), architecture: "llama", vocabSize: 20, hiddenSize: 8, intermediateSize: 16, numHiddenLayers: 1, numAttentionHeads: 2, numKeyValueHeads: 1, headDim: 4, maxPositionEmbeddings: 64, rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: undefined, tieWordEmbeddings: false, attentionBias: false, bosTokenId: undefined, eosTokenIds: [] } satisfies LlamaConfig
        const model = yield* load(config, 1)
        const error = yield* Effect.flip(sirius(model, { prompt: [1], correctionPeriod: 0 }))
        expect((error as Generation.GenerationError).field).toBe("correctionPeriod")
      })
    ))
})

describe("Sirius tree drafting", () => {
  const treeScenario = scenario.chain((s) => fc.record({ s: fc.constant(s), width: fc.integer({ min: 2, max: 4 }) }))

  it("greedy-exact reproduces full greedy decoding for every tree width", () =>
    fc.assert(
      fc.asyncProperty(treeScenario, ({ s: { m: { config, seed, prompt }, k, granularity, density }, width }) =>
        run(
          Effect.gen(function* () {
            const model = yield* load(config, seed)
            const events = yield* sirius(model, { prompt, correctionPeriod: k, treeWidth: width, policy: Policy.greedyExact, sparsity: { granularity, density } })
            expect(finished(events).tokens).toEqual(yield* fullGreedy(model, prompt, 12))
          })
        )
      ),
      { numRuns: 20 }
    ))

  it("tree width 1 equals the chain (no eos ids): same tokens, same verifications", () =>
    fc.assert(
      fc.asyncProperty(scenario, fc.constantFrom(0.01, 0.1, 0.3), ({ m: { config, seed, prompt }, k, granularity, density }, thr) =>
        run(
          Effect.gen(function* () {
            const model = yield* load(config, seed)
            const options = { prompt, correctionPeriod: k, policy: Policy.threshold(thr), sparsity: { granularity, density } }
            const chain = yield* sirius(model, options)
            const tree = yield* sirius(model, { ...options, drafting: "tree" })
            const verifications = (events: ReadonlyArray<Sirius.SiriusEvent>) =>
              events.filter((e) => e._tag === "Verified").map((e) => (e._tag === "Verified" ? [e.start, e.accepted, e.rollback, e.token, e.drafts.join()] : []))
            expect(finished(tree).tokens).toEqual(finished(chain).tokens)
            expect(verifications(tree)).toEqual(verifications(chain))
          })
        )
      ),
      { numRuns: 20 }
    ))

  it("after every tree verification the compacted KV equals a full-model prefill of the committed tokens", () =>
    fc.assert(
      fc.asyncProperty(treeScenario, fc.constantFrom(0.01, 0.1), ({ s: { m: { config, seed, prompt }, k, granularity, density }, width }, thr) =>
        run(
          Effect.gen(function* () {
            const model = yield* load(config, seed)
            const { snapshots, tokens } = yield* kvAfterVerifications(model, {
              prompt,
              correctionPeriod: k,
              treeWidth: width,
              policy: Policy.threshold(thr),
              sparsity: { granularity, density }
            })
            expect(snapshots.length).toBeGreaterThan(0)
            const events = yield* sirius(model, { prompt, correctionPeriod: k, treeWidth: width, policy: Policy.threshold(thr), sparsity: { granularity, density } })
            expect(finished(events).tokens).toEqual(tokens)
            const all = [...prompt, ...tokens]
            for (const { kv, length } of snapshots) {
              const expected = yield* Effect.scoped(
                Effect.gen(function* () {
                  const fresh = yield* KvCache.make(model.kernels, config, length)
                  yield* Forward.forward(model, fresh, Int32Array.from(all.slice(0, length)), 0, "last")
                  return yield* snapshot(model.kernels, fresh)
                })
              )
              // a tree pass attends over masked slots in another order than a causal prefill: f32-close, not bitwise
              kv.keys.forEach((keys, l) => assertClose(`keys ${l}`, keys, expected.keys[l]!, { atol: 1e-5, rtol: 1e-5 }))
              kv.values.forEach((values, l) => assertClose(`values ${l}`, values, expected.values[l]!, { atol: 1e-5, rtol: 1e-5 }))
            }
            // the best of w branches advances at least as far as the chain would on average is not guaranteed
            // per request; but every window is bounded by k − 1 levels
            for (const e of events) if (e._tag === "Verified") expect(e.accepted).toBeLessThanOrEqual(k - 1)
          })
        )
      ),
      { numRuns: 15 }
    ))
})
