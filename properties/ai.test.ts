// The effect/ai provider (ai/SiriusLanguageModel.ts): LanguageModel.generateText and streamText on the
// bundled model give the library's own answer (text, finish reason, usage), streamed deltas that add up to
// it, settings from Config / withConfigOverride (Sirius mode, budgets, stop strings, sampling), the
// request's stats in the finish part's metadata, and AiErrors for what it cannot do.
import { Effect, Layer, Stream } from "effect"
import { LanguageModel } from "effect/ai"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { SiriusLanguageModel } from "../ai/index.ts"
import { SimdKernels } from "../simd/index.ts"
import * as Bundled from "../src/Bundled.ts"
import * as Client from "../src/Client.ts"
import * as Policy from "../src/Policy.ts"

const question = "Ann has 26 pens. She buys 13 more. She buys 2 more. How many pens now?"
const prompt = `Q: ${question}\nA:`

const provider = SiriusLanguageModel.layer({ model: Bundled.modelDir }).pipe(Layer.provide(SimdKernels.layer({ threads: 1 })))
const run = <A, E>(effect: Effect.Effect<A, E, LanguageModel.LanguageModel>) => Effect.runPromise(Effect.provide(effect, provider))

/** The request's stats, from the finish part's metadata. */
const statsOf = <T>(r: { readonly content: ReadonlyArray<{ readonly type: string; readonly metadata?: unknown }> }) =>
  (r.content.find((p) => p.type === "finish")!.metadata as { readonly sirius: T }).sirius

let client: Client.Client
beforeAll(async () => {
  client = await Client.open(Bundled.modelDir, { kernels: SimdKernels.layer({ threads: 1 }) })
})
afterAll(() => client.close())

describe("SiriusLanguageModel", () => {
  it("generateText: the library's answer, its finish reason and usage (the bundled model's Q/A format)", async () => {
    const expected = await client.generate({ prompt, maxNewTokens: 80 })
    const r = await run(LanguageModel.generateText({ prompt: question }))
    expect(r.text).toBe(expected.text)
    expect(r.text).toContain("The answer is 41.")
    expect(r.finishReason).toBe("stop")
    expect(r.usage.inputTokens.total).toBe(expected.stats.promptTokens)
    expect(r.usage.outputTokens.total).toBe(expected.tokens.length)
  })

  it("streamText: text-start, deltas that add up to the answer, text-end, finish with usage", async () => {
    const whole = await run(LanguageModel.generateText({ prompt: question }))
    const parts = await run(Stream.runCollect(LanguageModel.streamText({ prompt: question })))
    const types = parts.map((p) => p.type)
    expect(types.filter((t) => t !== "text-delta")).toEqual(["response-metadata", "text-start", "text-end", "finish"])
    expect(types.filter((t) => t === "text-delta").length).toBeGreaterThan(5)
    expect(parts.map((p) => (p.type === "text-delta" ? p.delta : "")).join("")).toBe(whole.text)
    const finish = parts.at(-1)!
    expect(finish.type === "finish" && finish.usage.outputTokens.total).toBe(whole.usage.outputTokens.total)
  })

  it("withConfigOverride: Sirius mode with its stats in the finish metadata; budgets, stop strings and seeded sampling", async () => {
    const sirius = await run(
      LanguageModel.generateText({ prompt: question }).pipe(SiriusLanguageModel.withConfigOverride({ mode: "sirius", correctionPeriod: 8, policy: Policy.greedyExact }))
    )
    const full = await run(LanguageModel.generateText({ prompt: question }))
    expect(sirius.text).toBe(full.text) // greedy-exact acceptance is lossless
    const stats = statsOf<{ aal: number; correctionPeriod: number }>(sirius)
    expect(stats.correctionPeriod).toBe(8)
    expect(stats.aal).toBeGreaterThan(1)

    const short = await run(LanguageModel.generateText({ prompt: question }).pipe(SiriusLanguageModel.withConfigOverride({ maxTokens: 4 })))
    expect(short.finishReason).toBe("length")
    expect(short.usage.outputTokens.total).toBe(4)
    const stopped = await run(LanguageModel.generateText({ prompt: question }).pipe(SiriusLanguageModel.withConfigOverride({ stop: ["="] })))
    expect(stopped.text).toBe(full.text.slice(0, full.text.indexOf("=")))

    // overrides nest: the inner one wins field by field, the outer one's other fields stay
    const sampled = (seed: number) =>
      run(
        LanguageModel.generateText({ prompt: question }).pipe(
          SiriusLanguageModel.withConfigOverride({ seed }),
          SiriusLanguageModel.withConfigOverride({ temperature: 4, topK: 20, seed: 1, maxTokens: 30 })
        )
      )
    const [a, b] = [await sampled(7), await sampled(7)]
    expect(a.text).toBe(b.text)
    expect(a.text).toBe((await client.generate({ prompt, maxNewTokens: 30, sampling: { temperature: 4, topK: 20, seed: 7 } })).text)
  })

  it("defaults given to the layer apply under any override", async () => {
    const layer = SiriusLanguageModel.layer({ model: Bundled.modelDir, config: { mode: "sparse", maxTokens: 5 } }).pipe(Layer.provide(SimdKernels.layer({ threads: 1 })))
    const r = await Effect.runPromise(Effect.provide(LanguageModel.generateText({ prompt: question }), layer))
    expect(r.usage.outputTokens.total).toBe(5)
    expect(statsOf<{ sparseForwards: number }>(r).sparseForwards).toBeGreaterThan(0)
  })

  it("what it cannot do is an AiError: a file part, an engine refusal (naming the field)", async () => {
    const file = await run(
      Effect.flip(LanguageModel.generateText({ prompt: [{ role: "user", content: [{ type: "file", mediaType: "image/png", data: new Uint8Array([1]) }] }] }))
    )
    expect(file._tag).toBe("AiError")
    expect(file.reason._tag).toBe("InvalidRequestError")
    expect(file.message).toContain("file parts are not supported")
    const refused = await run(Effect.flip(LanguageModel.generateText({ prompt: question }).pipe(SiriusLanguageModel.withConfigOverride({ temperature: -1 }))))
    expect(refused.reason._tag).toBe("InvalidRequestError")
    expect(refused.reason).toMatchObject({ parameter: "temperature" })
  })
})
