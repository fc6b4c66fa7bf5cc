// Generation as a Stream: greedy against an independent recompute-everything oracle, seeded sampling,
// stopping (eos, length, stop strings), request validation, and prompt interruption.
import { Effect, Layer, Stream } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { ReferenceKernels } from "../reference/index.ts"
import * as Forward from "../src/Forward.ts"
import * as Generation from "../src/Generation.ts"
import { Kernels } from "../src/Kernels.ts"
import * as KvCache from "../src/KvCache.ts"
import * as Model from "../src/Model.ts"
import { randomWeights, shapes } from "../testing/RandomModel.ts"
import { argmax } from "../src/Sampler.ts"
import type { TextTokenizer } from "../src/Tokenizer.ts"
import { tinyModelAndPrompt } from "../testing/arbitraries.ts"

const config = shapes.tiny
const weights = randomWeights(config, { seed: 7 })
const run = <A, E>(effect: Effect.Effect<A, E, Kernels>, layer: Layer.Layer<Kernels> = ReferenceKernels.layer) =>
  Effect.runPromise(Effect.provide(effect, layer))
const collect = (model: Model.Model, options: Generation.GenerateOptions) =>
  Stream.runCollect(Generation.generate(model, options))
const finished = (events: ReadonlyArray<Generation.Event>) => {
  const f = events[events.length - 1]!
  if (f._tag !== "Finished") throw new Error("last event is not Finished")
  return f
}

/** Oracle: recompute the whole sequence from scratch for every new token and take the argmax. */
const greedyOracle = (model: Model.Model, prompt: ReadonlyArray<number>, n: number) =>
  Effect.gen(function* () {
    const ids = [...prompt]
    for (let i = 0; i < n; i++) {
      const logits = yield* Effect.scoped(Effect.flatMap(KvCache.make(model.kernels, model.config, ids.length), (cache) => Forward.forward(model, cache, Int32Array.from(ids), 0, "last")))
      ids.push(argmax(logits))
    }
    return ids.slice(prompt.length)
  })

/** A character tokenizer: id i ↔ the letter 'a'+i (ids ≥ 26 decode to nothing). */
const letters: TextTokenizer = {
  encode: (text) => Array.from(text, (c) => c.charCodeAt(0) - 97),
  decode: (ids) => ids.map((i) => (i < 26 ? String.fromCharCode(97 + i) : "")).join("")
}

describe("Generation.generate", () => {
  it("greedy equals recomputing the whole sequence each step (random models and prompts)", () =>
    fc.assert(
      fc.asyncProperty(tinyModelAndPrompt(6), async ({ config, seed, prompt }) => {
        await run(
          Effect.gen(function* () {
            const model = yield* Model.fromWeights(config, randomWeights(config, { seed }))
            const events = yield* collect(model, { prompt, maxNewTokens: 6 })
            expect(finished(events).tokens).toEqual(yield* greedyOracle(model, prompt, 6))
            expect(events[0]!._tag).toBe("Prefilled")
            expect(events.filter((e) => e._tag === "Committed").map((e) => (e as { position: number }).position)).toEqual(
              [0, 1, 2, 3, 4, 5].map((i) => prompt.length + i)
            )
          })
        )
      }),
      { numRuns: 15 }
    ))

  it("sampling: the same seed gives the same tokens, other seeds differ", () =>
    run(
      Effect.gen(function* () {
        const model = yield* Model.fromWeights(config, weights)
        const sampled = (seed: number) =>
          collect(model, {
            prompt: [1, 5, 9],
            maxNewTokens: 16,
            sampling: { temperature: 1.5, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, seed }
          }).pipe(Effect.map((e) => finished(e).tokens))
        const a = yield* sampled(1)
        expect(yield* sampled(1)).toEqual(a)
        const others = [yield* sampled(2), yield* sampled(3)]
        expect(others.some((o) => o.join() !== a.join())).toBe(true)
      })
    ))

  it("stops at an eos id (reason eos) and at max tokens (reason length)", () =>
    run(
      Effect.gen(function* () {
        const model = yield* Model.fromWeights(config, weights)
        const free = finished(yield* collect(model, { prompt: [3, 4], maxNewTokens: 8 }))
        expect(free.reason).toBe("length")
        expect(free.tokens).toHaveLength(8)
        const eos = free.tokens[3]!
        const firstEos = free.tokens.indexOf(eos)
        const stopped = finished(yield* collect(model, { prompt: [3, 4], maxNewTokens: 8, eosTokenIds: [eos] }))
        expect(stopped.reason).toBe("eos")
        expect(stopped.tokens).toEqual(free.tokens.slice(0, firstEos + 1))
      })
    ))

  it("stop strings: found across token boundaries, cut from the text, never emitted in a delta", () =>
    run(
      Effect.gen(function* () {
        const cfg = { ...config, vocabSize: 26 }
        const model = yield* Model.fromWeights(cfg, randomWeights(cfg, { seed: 3 }))
        const free = finished(yield* collect(model, { prompt: [0], maxNewTokens: 12, tokenizer: letters }))
        const stop = free.text.slice(4, 7) // three letters: spans tokens 5..7
        const events = yield* collect(model, { prompt: [0], maxNewTokens: 12, tokenizer: letters, stopStrings: [stop] })
        const f = finished(events)
        expect(f.reason).toBe("stop")
        const at = free.text.indexOf(stop)
        expect(f.text).toBe(free.text.slice(0, at))
        expect(f.tokens).toEqual(free.tokens.slice(0, at + 3))
        const streamed = events.map((e) => (e._tag === "Committed" ? e.text : "")).join("")
        expect(streamed).toBe(f.text)
      })
    ))

  it("rejects bad requests with a GenerationError naming the field", () =>
    run(
      Effect.gen(function* () {
        const model = yield* Model.fromWeights(config, weights)
        const error = (options: Generation.GenerateOptions) =>
          Effect.flip(collect(model, options)).pipe(Effect.map((e) => e as Generation.GenerationError))
        expect((yield* error({ prompt: [], maxNewTokens: 4 })).field).toBe("prompt")
        expect((yield* error({ prompt: [config.vocabSize], maxNewTokens: 4 })).field).toBe("prompt")
        expect((yield* error({ prompt: [1], maxNewTokens: config.maxPositionEmbeddings })).field).toBe("maxNewTokens")
        expect((yield* error({ prompt: [1], maxNewTokens: 0 })).field).toBe("maxNewTokens")
        const sampling = { temperature: -1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, seed: 0 }
        expect((yield* error({ prompt: [1], maxNewTokens: 4, sampling })).field).toBe("temperature")
      })
    ))

  it("interrupting the stream stops the work: taking 3 events runs 2 forward passes", async () => {
    let forwards = 0
    const counting = Layer.succeed(Kernels, {
      ...ReferenceKernels.make(),
      // one embedding lookup per forward pass
      embedding: (table, tokens) => {
        forwards++
        return ReferenceKernels.make().embedding(table, tokens)
      }
    })
    await run(
      Effect.gen(function* () {
        const model = yield* Model.fromWeights(config, weights)
        const events = yield* Stream.runCollect(Stream.take(Generation.generate(model, { prompt: [1, 2], maxNewTokens: 200 }), 3))
        expect(events.map((e) => e._tag)).toEqual(["Prefilled", "Committed", "Committed"])
      }),
      counting
    )
    expect(forwards).toBe(2) // the prefill, and the decode of the first generated token
  })
})
