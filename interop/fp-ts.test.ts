// The fp-ts interop on a random tiny checkpoint written to disk (the Promise facade itself: properties/client.test.ts).
import { Effect } from "effect"
import * as E from "fp-ts/Either"
import { concatAll } from "fp-ts/Monoid"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from "vitest"
import { ReferenceKernels } from "../reference/index.ts"
import * as Client from "../src/Client.ts"
import * as Policy from "../src/Policy.ts"
import { randomWeights, shapes, writeHfCheckpoint } from "../testing/RandomModel.ts"
import { acceptAll, acceptAny, countsOf, generate, policyFromPredicate, predicateOf, statsSemigroup } from "./fp-ts.ts"

const dir = mkdtempSync(join(tmpdir(), "sirius-client-"))
let client: Client.Client

beforeAll(async () => {
  await Effect.runPromise(writeHfCheckpoint(dir, shapes.tiny, randomWeights(shapes.tiny, { seed: 11 })))
  client = await Client.open(dir, { kernels: ReferenceKernels.layer })
})
afterAll(() => client.close())

describe("fp-ts interop", () => {
  it("generate is a TaskEither: Right with the completion, Left with the typed error", async () => {
    const right = await generate(client)({ prompt: [1, 2], maxNewTokens: 4 })()
    expect(E.isRight(right) && right.right.tokens.length).toBe(4)
    const left = await generate(client)({ prompt: [shapes.tiny.vocabSize + 5], maxNewTokens: 4 })()
    expect(E.isLeft(left) && left.left._tag).toBe("GenerationError")
    // the Left is the tagged union, not { _tag: string }: a switch on _tag narrows it
    if (E.isLeft(left)) expectTypeOf(left.left._tag).toEqualTypeOf<Client.ClientError["_tag"]>()
    const sirius = await generate(client)({ prompt: [1, 2], maxNewTokens: 4, mode: "sirius", correctionPeriod: 2 })()
    if (E.isRight(sirius)) expectTypeOf(sirius.right.stats.aal).toEqualTypeOf<number>()
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
