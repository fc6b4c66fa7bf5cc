// The Promise/AsyncIterable facade and the fp-ts interop, on a random tiny checkpoint written to disk.
import { Effect } from "effect"
import * as E from "fp-ts/Either"
import { concatAll } from "fp-ts/Monoid"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ReferenceKernels } from "../reference/index.ts"
import * as Client from "../src/Client.ts"
import * as Policy from "../src/Policy.ts"
import { randomWeights, shapes, writeHfCheckpoint } from "../src/RandomModel.ts"
import { acceptAll, acceptAny, countsOf, generate, policyFromPredicate, predicateOf, statsSemigroup } from "./fp-ts.ts"

const dir = mkdtempSync(join(tmpdir(), "sirius-client-"))
let client: Client.Client

beforeAll(async () => {
  await Effect.runPromise(writeHfCheckpoint(dir, shapes.tiny, randomWeights(shapes.tiny, { seed: 11 })))
  client = await Client.open(dir, { kernels: ReferenceKernels.layer })
})
afterAll(() => client.close())

describe("Client (Promise / AsyncIterable)", () => {
  it("generate resolves to the Finished event; stream yields the same committed tokens", async () => {
    const done = await client.generate({ prompt: [1, 2, 3], maxNewTokens: 8 })
    expect(done.tokens).toHaveLength(8)
    const committed: Array<number> = []
    for await (const e of client.stream({ prompt: [1, 2, 3], maxNewTokens: 8 })) if (e._tag === "Committed") committed.push(e.token)
    expect(committed).toEqual(done.tokens)
  })

  it("sirius with greedy-exact gives the full model's tokens", async () => {
    const full = await client.generate({ prompt: [5, 6], maxNewTokens: 12 })
    const sirius = await client.generate({ prompt: [5, 6], maxNewTokens: 12, mode: "sirius", correctionPeriod: 4, policy: Policy.greedyExact })
    expect(sirius.tokens).toEqual(full.tokens)
  })

  it("an AbortSignal stops a stream promptly", async () => {
    const controller = new AbortController()
    let seen = 0
    for await (const e of client.stream({ prompt: [1], maxNewTokens: 200 }, { signal: controller.signal })) {
      if (e._tag === "Committed" && ++seen === 3) controller.abort()
      expect(e._tag).not.toBe("Finished")
    }
    expect(seen).toBe(3)
    await expect(client.generate({ prompt: [1], maxNewTokens: 5 }, { signal: AbortSignal.abort() })).rejects.toBeDefined()
  })
})

describe("fp-ts interop", () => {
  it("generate is a TaskEither: Right with the completion, Left with the typed error", async () => {
    const right = await generate(client)({ prompt: [1, 2], maxNewTokens: 4 })()
    expect(E.isRight(right) && right.right.tokens.length).toBe(4)
    const left = await generate(client)({ prompt: [shapes.tiny.vocabSize + 5], maxNewTokens: 4 })()
    expect(E.isLeft(left) && left.left._tag).toBe("GenerationError")
  })

  it("acceptance predicates combine with Monoids; the combined policy runs", async () => {
    const never = () => false
    const ctx = { draft: 0, fullLogits: Float32Array.of(5, 0), sparseLogits: Float32Array.of(5, 0), context: [], sampling: { ...Policy.greedyExact, temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, seed: 0 }, rng: { state: 0 } }
    const exact = predicateOf(Policy.greedyExact)
    expect(concatAll(acceptAll)([exact, never])(ctx)).toBe(false)
    expect(concatAll(acceptAny)([exact, never])(ctx)).toBe(true)
    // strictest of greedy-exact and threshold(0.1): still lossless
    const strict = policyFromPredicate(Policy.threshold(0.1), concatAll(acceptAll)([exact, predicateOf(Policy.threshold(0.1))]))
    const full = await client.generate({ prompt: [7, 8], maxNewTokens: 10 })
    const done = await client.generate({ prompt: [7, 8], maxNewTokens: 10, mode: "sirius", correctionPeriod: 4, policy: strict })
    expect(done.tokens).toEqual(full.tokens)
    const merged = statsSemigroup.concat(countsOf(full), countsOf(done))
    expect(merged.requests).toBe(2)
    expect(merged.generatedTokens).toBe(20)
    expect(merged.fullForwards).toBe(full.stats.fullForwards + done.stats.fullForwards)
  })
})
