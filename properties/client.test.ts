// The Promise facade (src/Client.ts) without traps: any Kernels layer, typed rejections that are Error
// subclasses with a _tag, disposal when opening fails, aborts and closed clients as their own errors, stats
// typed by mode, load progress; and custom policies checked at every call (Policy.PolicyError).
import { Effect, Layer } from "effect"
import { mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from "vitest"
import { SimdKernels } from "../simd/index.ts"
import * as Bundled from "../src/Bundled.ts"
import * as Client from "../src/Client.ts"
import { Kernels } from "../src/Kernels.ts"
import type { LoadProgress } from "../src/LoadProgress.ts"
import * as Policy from "../src/Policy.ts"
import { randomWeights, shapes, writeHfCheckpoint } from "../testing/RandomModel.ts"
import { ReferenceKernels } from "../reference/index.ts"

const dir = mkdtempSync(join(tmpdir(), "sirius-client-"))
let client: Client.Client

beforeAll(async () => {
  await Effect.runPromise(writeHfCheckpoint(dir, shapes.tiny, randomWeights(shapes.tiny, { seed: 11 })))
  // a layer that can fail (KernelError): Client.open takes it as it is
  client = await Client.open(dir, { kernels: SimdKernels.layer({ threads: 1 }) })
})
afterAll(() => client.close())

/** The rejection of a promise, which must be an Error subclass carrying a _tag. */
const rejection = async (p: Promise<unknown>): Promise<Client.ClientError> => {
  const e = await p.then(
    () => undefined,
    (e: unknown) => e
  )
  expect(e).toBeInstanceOf(Error)
  expect(typeof (e as { _tag?: unknown })._tag).toBe("string")
  return e as Client.ClientError
}

describe("Client.open", () => {
  it("runs on the simd backend, and reports load progress (read, then upload) up to the totals", async () => {
    const seen: Array<LoadProgress> = []
    const c = await Client.open(dir, { kernels: SimdKernels.layer({ threads: 1 }), onProgress: (p) => seen.push(p) })
    expect(c.backend).toMatch(/^simd\(1 thread/)
    for (const phase of ["read", "upload"] as const) {
      const ps = seen.filter((p) => p.phase === phase)
      expect(ps.length).toBeGreaterThan(0)
      const last = ps[ps.length - 1]!
      expect(last.tensors).toBe(last.totalTensors)
      expect(last.bytes).toBe(last.totalBytes)
      ps.forEach((p, i) => i > 0 && expect(p.bytes).toBeGreaterThanOrEqual(ps[i - 1]!.bytes))
    }
    await c.close()
  })

  it("rejects with the checkpoint's or the backend's typed error, and disposes what it built", async () => {
    let released = 0
    const tracked = Layer.effect(
      Kernels,
      Effect.acquireRelease(Effect.succeed(ReferenceKernels.make()), () => Effect.sync(() => void released++))
    )
    const missing = await rejection(Client.open(join(dir, "absent"), { kernels: tracked }))
    expect(missing._tag).toBe("CheckpointError")
    expect(missing.message).toContain("no such file or directory")
    expect(released).toBe(1)
    const backend = await rejection(Client.open(dir, { kernels: SimdKernels.layer({ threads: 0 }) }))
    expect(backend._tag).toBe("KernelError")
    expect(backend.message).toBe("threads must be a positive integer, got 0")
  })
})

describe("Client requests", () => {
  it("stats are typed by mode: Sirius stats for mode sirius", async () => {
    const sirius = await client.generate({ prompt: [5, 6], maxNewTokens: 12, mode: "sirius", correctionPeriod: 4, policy: Policy.greedyExact })
    expectTypeOf(sirius.stats.aal).toEqualTypeOf<number>()
    expect(sirius.stats.aal).toBeGreaterThan(0)
    const full = await client.generate({ prompt: [5, 6], maxNewTokens: 12 })
    expectTypeOf(full.stats).not.toHaveProperty("aal")
    expect(sirius.tokens).toEqual(full.tokens)
  })

  it("an aborted request rejects with AbortedError, from generate and from a stream", async () => {
    const before = await rejection(client.generate({ prompt: [1], maxNewTokens: 5 }, { signal: AbortSignal.abort() }))
    expect(before._tag).toBe("AbortedError")
    expect(before.message).toBe("the request was aborted: This operation was aborted") // AbortSignal.abort()'s reason
    const controller = new AbortController()
    let seen = 0
    const streamed = await rejection(
      (async () => {
        for await (const e of client.stream({ prompt: [1], maxNewTokens: 200 }, { signal: controller.signal }))
          if (e._tag === "Committed" && ++seen === 3) controller.abort(new Error("user left"))
      })()
    )
    expect(streamed._tag).toBe("AbortedError")
    expect(streamed.message).toBe("the request was aborted: user left")
    expect(seen).toBe(3)
  })

  it("a stream yields the same tokens as generate; breaking out of it stops the request", async () => {
    const done = await client.generate({ prompt: [1, 2, 3], maxNewTokens: 8 })
    const committed: Array<number> = []
    for await (const e of client.stream({ prompt: [1, 2, 3], maxNewTokens: 8 })) if (e._tag === "Committed") committed.push(e.token)
    expect(committed).toEqual(done.tokens)
    let n = 0
    for await (const e of client.stream({ prompt: [1, 2, 3], maxNewTokens: 100 })) if (e._tag === "Committed" && ++n === 2) break
    expect(n).toBe(2)
  })

  it("a closed client rejects with ClientClosedError, including a request in flight", async () => {
    const c = await Client.open(dir, { kernels: ReferenceKernels.layer })
    const inFlight = c.generate({ prompt: [1], maxNewTokens: 60 })
    await c.close()
    expect((await rejection(inFlight))._tag).toBe("ClientClosedError")
    const after = await rejection(c.generate({ prompt: [1], maxNewTokens: 2 }))
    expect(after).toMatchObject({ _tag: "ClientClosedError", message: "the client is closed" })
    const stream = await rejection((async () => { for await (const _ of c.stream({ prompt: [1] })) void _ })())
    expect(stream._tag).toBe("ClientClosedError")
  })

  it("a bad request rejects with GenerationError naming the field", async () => {
    const e = await rejection(client.generate({ prompt: [shapes.tiny.vocabSize + 5], maxNewTokens: 4 }))
    expect(e).toMatchObject({ _tag: "GenerationError", field: "prompt", message: `prompt: token id ${shapes.tiny.vocabSize + 5} is outside the vocabulary [0, ${shapes.tiny.vocabSize})` })
  })
})

describe("messages: a conversation through the model's chat template", () => {
  const question = "Ann has 26 pens. She buys 13 more. She buys 2 more. How many pens now?"
  let bundled: Client.Client
  let templated: Client.Client
  const templatedDir = mkdtempSync(join(tmpdir(), "sirius-client-chat-"))
  beforeAll(async () => {
    bundled = await Client.open(Bundled.modelDir, { kernels: SimdKernels.layer({ threads: 1 }) })
    // the bundled model with a template of its own (the weights linked, not copied)
    for (const f of ["config.json", "model.safetensors", "tokenizer.json", "generation_config.json"]) symlinkSync(join(Bundled.modelDir, f), join(templatedDir, f))
    const config = JSON.parse(readFileSync(join(Bundled.modelDir, "tokenizer_config.json"), "utf8"))
    const template = "{% for m in messages %}{{ m.role | upper }}> {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}A:{% endif %}"
    writeFileSync(join(templatedDir, "tokenizer_config.json"), JSON.stringify({ ...config, chat_template: template }))
    templated = await Client.open(templatedDir, { kernels: SimdKernels.layer({ threads: 1 }) })
  })
  afterAll(async () => {
    await bundled?.close()
    await templated?.close()
  })

  it("a model without a template: one user message is the question/answer format's prompt", async () => {
    const chat = await bundled.generate({ messages: [{ role: "user", content: question }], mode: "sirius" })
    const plain = await bundled.generate({ prompt: `Q: ${question}\nA:`, mode: "sirius" })
    expect(chat.tokens).toEqual(plain.tokens)
    expect(chat.stats.promptTokens).toBe(plain.stats.promptTokens)
    expect(chat.text).toContain("The answer is 41.")
  })

  it("a model with a template renders it (roles, generation prompt), in every mode", async () => {
    for (const mode of ["full", "sparse", "sirius"] as const) {
      const chat = await templated.generate({ messages: [{ role: "system", content: "Count." }, { role: "user", content: question }], mode, maxNewTokens: 8 } as Client.Request)
      const plain = await templated.generate({ prompt: `SYSTEM> Count.\nUSER> ${question}\nA:`, mode, maxNewTokens: 8 } as Client.Request)
      expect(chat.tokens, mode).toEqual(plain.tokens)
      expect(chat.stats.promptTokens, mode).toBe(plain.stats.promptTokens)
    }
  })

  it("bad conversations reject with GenerationError naming messages", async () => {
    const e1 = await rejection(bundled.generate({ messages: [{ role: "tool", content: "42" }] }))
    expect(e1).toMatchObject({ _tag: "GenerationError", field: "messages" })
    expect(e1.message).toMatch(/^messages\.0\.role: "tool" has no place/)
    expect(await rejection(bundled.generate({ messages: [] }))).toMatchObject({ _tag: "GenerationError", field: "messages", message: "messages: the conversation is empty" })
    // callers without types: neither, or both
    expect(await rejection(bundled.generate({} as Client.Request))).toMatchObject({ field: "prompt", message: "prompt, messages: give exactly one of them" })
    expect(await rejection(bundled.generate({ prompt: "Q:", messages: [{ role: "user", content: "x" }] } as unknown as Client.Request))).toMatchObject({ field: "prompt" })
    expect(await rejection(bundled.generate({ messages: [{ role: "user" }] } as unknown as Client.Request))).toMatchObject({
      field: "messages",
      message: "messages.0: expected { role: string, content: string }"
    })
    // a model without a tokenizer cannot encode a conversation
    expect(await rejection(client.generate({ messages: [{ role: "user", content: "x" }] }))).toMatchObject({ _tag: "GenerationError", field: "messages" })
  })

  it("prompt and messages exclude each other in the types", () => {
    // @ts-expect-error: both
    const both: Client.Request = { prompt: "x", messages: [{ role: "user", content: "x" }] }
    void both
  })
})

describe("custom policies are checked", () => {
  const V = shapes.tiny.vocabSize
  const base = Policy.threshold(0.1)
  const cases: Array<[string, Policy.CorrectionPolicy, string, string]> = [
    ["correct returning a token outside the vocabulary", { ...base, name: "bad", correct: () => 9999 }, "correct", `bad.correct returned 9999; expected a token id, an integer in [0, ${V})`],
    ["correct returning NaN", { ...base, name: "nan", correct: () => NaN }, "correct", `nan.correct returned NaN; expected a token id, an integer in [0, ${V})`],
    ["draft returning a non-integer", { ...base, name: "half", draft: () => 1.5 }, "draft", `half.draft returned 1.5; expected a token id, an integer in [0, ${V})`],
    ["accept returning a non-boolean", { ...base, name: "maybe", accept: () => "yes" as unknown as boolean }, "accept", `maybe.accept returned "yes"; expected a boolean`],
    ["verifyEarly throwing", { ...base, name: "boom", verifyEarly: () => { throw new Error("kaput") } }, "verifyEarly", "boom.verifyEarly threw: kaput"]
  ]
  for (const [what, policy, method, message] of cases)
    it(`${what} is a PolicyError naming the method; nothing it returned is committed`, async () => {
      const committed: Array<number> = []
      const e = await rejection(
        (async () => {
          for await (const ev of client.stream({ prompt: [3, 4], maxNewTokens: 20, mode: "sirius", correctionPeriod: 4, policy }))
            if (ev._tag === "Committed") committed.push(ev.token)
        })()
      )
      expect(e).toMatchObject({ _tag: "PolicyError", policy: policy.name, method, message })
      expect(committed.every((t) => Number.isInteger(t) && t >= 0 && t < V)).toBe(true)
    })

  it("a policy with its own draft cannot be given a tree: a type error, and a GenerationError at run time", async () => {
    const drafting: Policy.CorrectionPolicy = { ...base, name: "own-draft", draft: () => 1 }
    // @ts-expect-error: tree drafting chooses the drafts, so a policy with `draft` is refused by the types
    const request: Client.Request = { prompt: [1], mode: "sirius", treeWidth: 3, policy: drafting }
    const e = await rejection(client.generate(request))
    expect(e).toMatchObject({
      _tag: "GenerationError",
      field: "policy",
      message: "policy: own-draft chooses its own drafts, which tree drafting (treeWidth 3) cannot honour: the beam chooses them; use treeWidth 1 or a policy without draft"
    })
  })
})
