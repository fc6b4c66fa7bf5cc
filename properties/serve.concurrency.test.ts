// Concurrency and isolation in `sirius serve` (serve/Admission.ts, serve/Completions.ts):
// - isolation: concurrent requests (mixed modes, greedy and seeded sampling, streamed or not) produce
//   exactly the tokens and log-probabilities they produce alone;
// - disconnects: 100 streams aborted at random points (running or queued) leave every slot free, the
//   backend's memory and the heap where they were, and the next requests correct; a generation stops
//   within a forward pass of its client leaving;
// - overload: with 1 slot and 2 queue places, a burst of 10 gets 3 answers and 7 immediate 503s;
// - memory: a request whose coarse gathers do not fit waits for one that does to finish; one that could
//   never fit is refused at once.
import { Effect } from "effect"
import fc from "fast-check"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Server from "../serve/Server.ts"
import { SimdKernels } from "../simd/index.ts"
import * as Bundled from "../src/Bundled.ts"
import { loadCheckpoint } from "../src/Checkpoint.ts"
import type { LlamaConfig } from "../src/Config.ts"
import { Kernels } from "../src/Kernels.ts"
import * as Model from "../src/Model.ts"
import { randomWeights, shapes, writeHfCheckpoint } from "../testing/RandomModel.ts"
import * as Request from "../src/Request.ts"

const prompts = readFileSync(Bundled.testData, "utf8")
  .trim()
  .split("\n")
  .slice(0, 12)
  .map((l) => (JSON.parse(l) as { prompt: string }).prompt)

/** A random model slow enough to watch (about a millisecond a token) that never emits EOS. */
const slowShape: LlamaConfig = { ...shapes.tiny, hiddenSize: 256, intermediateSize: 1024, numHiddenLayers: 4, numAttentionHeads: 8, numKeyValueHeads: 4, headDim: 32, maxPositionEmbeddings: 1024, eosTokenIds: [] }
const slowDir = mkdtempSync(join(tmpdir(), "sirius-serve-slow-"))

let server: Server.Handle
beforeAll(async () => {
  await Effect.runPromise(writeHfCheckpoint(slowDir, slowShape, randomWeights(slowShape, { seed: 3 })))
  server = await Server.start({ model: Bundled.modelDir, kernels: SimdKernels.layer({ threads: 1 }), port: 0, log: false, parallel: 8, queue: 256 })
  await server.ready
})
afterAll(() => server.close())

const post = (url: string, body: unknown, signal?: AbortSignal) =>
  fetch(`${url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), ...(signal === undefined ? {} : { signal }) })

/** The data messages of an SSE body (the text of `data:` lines; [DONE] included). */
const sseData = (text: string) =>
  text
    .split("\n\n")
    .filter((m) => m.startsWith("data: "))
    .map((m) => m.slice(6))

interface Outcome {
  readonly tokens: ReadonlyArray<string>
  readonly logprobs: ReadonlyArray<number>
  readonly text: string
  readonly finish: string
}

/** A completion's tokens, log-probabilities, text and finish reason, streamed or not. */
const complete = async (url: string, body: Record<string, unknown>): Promise<Outcome> => {
  const r = await post(url, { ...body, logprobs: 0 })
  expect(r.status, await r.clone().text()).toBe(200)
  if (body["stream"] !== true) {
    const json = (await r.json()) as { choices: Array<{ text: string; finish_reason: string; logprobs: { tokens: Array<string>; token_logprobs: Array<number> } }> }
    const c = json.choices[0]!
    return { tokens: c.logprobs.tokens, logprobs: c.logprobs.token_logprobs, text: c.text, finish: c.finish_reason }
  }
  const data = sseData(await r.text())
  expect(data.at(-1)).toBe("[DONE]")
  const chunks = data.slice(0, -1).map((d) => JSON.parse(d) as { choices: Array<{ text: string; finish_reason: string | null; logprobs: { tokens: Array<string>; token_logprobs: Array<number> } | null }> })
  const choices = chunks.map((c) => c.choices[0]!)
  return {
    tokens: choices.flatMap((c) => c.logprobs?.tokens ?? []),
    logprobs: choices.flatMap((c) => c.logprobs?.token_logprobs ?? []),
    text: choices.map((c) => c.text).join(""),
    finish: choices.at(-1)!.finish_reason!
  }
}

const metric = async (url: string, name: string) => {
  const text = await (await fetch(`${url}/metrics`)).text()
  const line = text.split("\n").find((l) => l.startsWith(`${name} `))
  return Number(line?.split(" ")[1])
}

const idle = async (s: Server.Handle) => {
  for (let i = 0; i < 200 && (s.snapshot().busy > 0 || s.snapshot().queued > 0); i++) await new Promise((r) => setTimeout(r, 25))
  return s.snapshot()
}

describe("isolation", () => {
  const request = fc.record({
    prompt: fc.constantFrom(...prompts),
    sirius: fc.oneof(
      fc.constant({ mode: "full" }),
      fc.record({ mode: fc.constant("sparse"), sparsity: fc.constantFrom("coarse", "fine"), density: fc.constantFrom(0.4, 0.6) }),
      fc.record({ mode: fc.constant("sirius"), sparsity: fc.constantFrom("coarse", "fine"), period: fc.constantFrom(4, 16), tree_width: fc.constantFrom(1, 1, 2) })
    ),
    sampling: fc.oneof(fc.constant({}), fc.record({ temperature: fc.constantFrom(0.7, 1.5), seed: fc.nat(1000) })),
    max_tokens: fc.integer({ min: 6, max: 40 }),
    stream: fc.boolean()
  })

  it("concurrent requests produce exactly the tokens (and log-probabilities) they produce alone", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(request, { minLength: 4, maxLength: 6 }), async (requests) => {
        const bodies = requests.map(({ sampling, ...r }) => ({ ...r, ...sampling }))
        const alone: Array<Outcome> = []
        for (const b of bodies) alone.push(await complete(server.url, b))
        const together = await Promise.all(bodies.map((b) => complete(server.url, b)))
        expect(together).toEqual(alone)
      }),
      { numRuns: 3 }
    )
    expect(await idle(server)).toMatchObject({ busy: 0, queued: 0, reservedBytes: 0 })
  })
})

describe("disconnects", () => {
  // global.gc without --expose-gc: the flag set at run time, the function taken from a fresh context
  setFlagsFromString("--expose-gc")
  const gc = runInNewContext("gc") as () => void
  const heap = () => {
    gc()
    gc()
    return process.memoryUsage().heapUsed
  }

  /** `n` streams, each aborted at a random point: after a random delay (often while queued) or a few chunks. */
  const abortMany = async (n: number, rng: () => number) => {
    await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const controller = new AbortController()
        const mode = ["full", "sparse", "sirius"][i % 3]
        const body = { prompt: prompts[i % prompts.length], stream: true, max_tokens: 16, ...(mode === "full" ? {} : { sirius: { mode, sparsity: "coarse" } }) }
        const byTime = rng() < 0.5
        const limit = byTime ? rng() * 60 : Math.floor(rng() * 8)
        if (byTime) setTimeout(() => controller.abort(), limit)
        try {
          const r = await post(server.url, body, controller.signal)
          const reader = r.body!.getReader()
          for (let k = 0; byTime || k < limit; k++) if ((await reader.read()).done) break
          controller.abort()
        } catch {
          // aborted before the headers, or while reading
        }
      })
    )
  }

  it("100 streams aborted at random points: every slot free, memory and heap flat, the next requests correct", async () => {
    const expected = await complete(server.url, { prompt: prompts[1], sirius: { mode: "sirius" } })
    const memoryBefore = await metric(server.url, "sirius_backend_memory_used_bytes")
    let seed = 42
    const rng = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)
    await abortMany(20, rng) // warms every path up
    expect(await idle(server)).toMatchObject({ busy: 0, queued: 0, reservedBytes: 0 })
    const heapBefore = heap()
    await abortMany(100, rng)
    expect(await idle(server)).toMatchObject({ busy: 0, queued: 0, reservedBytes: 0 })
    const growth = heap() - heapBefore
    expect(growth, `heap grew by ${(growth / 2 ** 20).toFixed(2)} MiB over 100 aborted streams`).toBeLessThan(4 * 2 ** 20)
    expect(await metric(server.url, "sirius_backend_memory_used_bytes")).toBe(memoryBefore) // every gather freed
    expect(await metric(server.url, "sirius_requests_cancelled_total")).toBeGreaterThan(50)
    expect(await complete(server.url, { prompt: prompts[1], sirius: { mode: "sirius" } })).toEqual(expected)
  })

  it("a generation stops within a forward pass of its client leaving, streamed or not", async () => {
    const s = await Server.start({ model: slowDir, kernels: SimdKernels.layer({ threads: 1 }), port: 0, log: false })
    try {
      await s.ready
      const controller = new AbortController()
      // logprobs: a model without a tokenizer streams no text, but a chunk per token with its logprob
      const r = await post(s.url, { prompt: [5, 6, 7], max_tokens: 1000, stream: true, logprobs: 0 }, controller.signal)
      const reader = r.body!.getReader()
      for (let k = 0; k < 3; k++) await reader.read()
      controller.abort()
      await new Promise((resolve) => setTimeout(resolve, 100))
      const atAbort = await metric(s.url, "sirius_generated_tokens_total")
      await new Promise((resolve) => setTimeout(resolve, 400))
      const later = await metric(s.url, "sirius_generated_tokens_total")
      expect(later - atAbort).toBeLessThanOrEqual(1)
      expect(later).toBeLessThan(900) // stopped long before its budget
      expect(await idle(s)).toMatchObject({ busy: 0, queued: 0 })
      expect(await metric(s.url, "sirius_requests_cancelled_total")).toBe(1)

      // not streamed: the same, though nothing was sent yet
      const quiet = new AbortController()
      const pending = post(s.url, { prompt: [5, 6, 7], max_tokens: 1000 }, quiet.signal).catch(() => undefined)
      await new Promise((resolve) => setTimeout(resolve, 300))
      quiet.abort()
      await pending
      await new Promise((resolve) => setTimeout(resolve, 100))
      const stopped = await metric(s.url, "sirius_generated_tokens_total")
      await new Promise((resolve) => setTimeout(resolve, 400))
      expect((await metric(s.url, "sirius_generated_tokens_total")) - stopped).toBeLessThanOrEqual(1)
      expect(stopped - later).toBeLessThan(900)
      expect(await idle(s)).toMatchObject({ busy: 0, queued: 0 })
      expect(await metric(s.url, "sirius_requests_cancelled_total")).toBe(2)
    } finally {
      await s.close()
    }
  })
})

describe("overload", () => {
  it("1 slot and 2 queue places: a burst of 10 gets 3 answers and 7 immediate 503s; nothing hangs, nothing is lost", async () => {
    const s = await Server.start({ model: slowDir, kernels: SimdKernels.layer({ threads: 1 }), port: 0, log: false, parallel: 1, queue: 2 })
    try {
      await s.ready
      const body = { prompt: [5, 6, 7], max_tokens: 150 }
      const alone = await complete(s.url, body)
      const started = performance.now()
      const results = await Promise.all(
        Array.from({ length: 10 }, async () => {
          const r = await post(s.url, body)
          return { status: r.status, retryAfter: r.headers.get("retry-after"), json: (await r.json()) as unknown, at: performance.now() - started }
        })
      )
      const ok = results.filter((r) => r.status === 200)
      const refused = results.filter((r) => r.status === 503)
      expect(ok).toHaveLength(3)
      expect(refused).toHaveLength(7)
      for (const r of ok) expect((r.json as { choices: Array<{ text: string }> }).choices[0]!.text).toBe(alone.text)
      for (const r of refused) {
        expect(r.retryAfter).toBe("1")
        expect(r.json).toEqual({
          error: { message: "the server is at capacity: 1 request running and 2 waiting; retry later", type: "unavailable_error", param: null, code: "server_overloaded" }
        })
      }
      // the refusals came at once, before even the first answer
      expect(Math.max(...refused.map((r) => r.at))).toBeLessThan(Math.min(...ok.map((r) => r.at)))
      expect(await idle(s)).toMatchObject({ busy: 0, queued: 0 })
      expect(await metric(s.url, 'sirius_requests_total{endpoint="/v1/completions",status="503"}')).toBe(7)
    } finally {
      await s.close()
    }
  })
})

describe("backend memory", () => {
  it("coarse requests that do not fit together run one after another; one that could never fit is refused at once", async () => {
    // what the model takes and what a request allocates, measured with the engine's own functions
    const longPrompt = `Q: ${"Tom has 2 pens. He buys 3 more. ".repeat(6)}How many pens now?\nA:`
    const { resident, one, huge } = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const checkpoint = yield* loadCheckpoint(Bundled.modelDir)
          const model = yield* Model.fromCheckpoint(checkpoint, { sparse: true })
          const kernels = yield* Kernels
          const bytes = (prompt: string, density: number) => {
            const P = checkpoint.tokenizer!.encode(prompt).length
            return Request.backendBytes(model, { granularity: "coarse", density }, { prompt: P, maxNewTokens: Math.min(80, 256 - P) })
          }
          return { resident: kernels.memory!().usedBytes, one: Math.max(...prompts.slice(0, 3).map((p) => bytes(p, 0.3))), huge: bytes(longPrompt, 1) }
        }).pipe(Effect.provide(SimdKernels.layer({ threads: 1 })))
      )
    )
    // room for one request, not two; the long dense-gather request could never fit
    const limit = resident + Math.round(1.5 * one)
    expect(resident + huge).toBeGreaterThan(limit)
    const s = await Server.start({ model: Bundled.modelDir, kernels: SimdKernels.layer({ threads: 1, maxMemoryBytes: limit }), port: 0, log: false, parallel: 4 })
    try {
      await s.ready
      const bodies = prompts.slice(0, 3).map((prompt) => ({ prompt, sirius: { mode: "sirius", sparsity: "coarse", density: 0.3 } }))
      const alone: Array<Outcome> = []
      for (const b of bodies) alone.push(await complete(s.url, b))
      let maxBusy = 0
      let maxQueued = 0
      const watch = setInterval(() => {
        maxBusy = Math.max(maxBusy, s.snapshot().busy)
        maxQueued = Math.max(maxQueued, s.snapshot().queued)
      }, 1)
      const together = await Promise.all(bodies.map((b) => complete(s.url, b)))
      clearInterval(watch)
      expect(together).toEqual(alone)
      expect(maxBusy).toBe(1)
      expect(maxQueued).toBeGreaterThan(0)

      const r = await post(s.url, { prompt: longPrompt, sirius: { mode: "sparse", sparsity: "coarse", density: 1 } })
      expect(r.status).toBe(400)
      expect(await r.json()).toEqual({
        error: {
          message: expect.stringMatching(/^this request needs \d+\.\d MiB of the backend's memory, and only \d+\.\d MiB of its \d+\.\d MiB are free beside the model: ask for less/) as unknown,
          type: "invalid_request_error",
          param: null,
          code: "insufficient_backend_memory"
        }
      })
      expect(await idle(s)).toMatchObject({ busy: 0, queued: 0, reservedBytes: 0 })
    } finally {
      await s.close()
    }
  })
})
