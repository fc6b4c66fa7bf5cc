// `sirius serve` through the official `openai` client (serve/): models, completions and chat completions,
// streamed and not, stop strings, seeds, usage, logprobs, the `sirius` extension and its stats, and the
// opt-in Sirius events. The server's answers are checked against the library itself (Client, the same
// engine on the same backend): the same tokens, the same counts.
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import OpenAI from "openai"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Server from "../serve/Server.ts"
import { modelId } from "../serve/ServedModel.ts"
import { SimdKernels } from "../simd/index.ts"
import * as Bundled from "../src/Bundled.ts"
import * as Client from "../src/Client.ts"
import * as Policy from "../src/Policy.ts"

const question = "Ann has 26 pens. She buys 13 more. She buys 2 more. How many pens now?"
const prompt = `Q: ${question}\nA:`

let server: Server.Handle
let openai: OpenAI
let client: Client.Client

beforeAll(async () => {
  server = await Server.start({ model: Bundled.modelDir, kernels: SimdKernels.layer({ threads: 1 }), port: 0, log: false })
  await server.ready
  openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 })
  client = await Client.open(Bundled.modelDir, { kernels: SimdKernels.layer({ threads: 1 }) })
})
afterAll(async () => {
  await server.close()
  await client.close()
})

/** Our extension fields on a request (the openai types do not know them). */
const withExtras = <T>(params: T, extras: Record<string, unknown>): T => ({ ...params, ...extras }) as T

interface SiriusStats {
  readonly mode: string
  readonly aal?: number
  readonly effective_density?: number
  readonly parameter_density: number
  readonly corrected_tokens?: number
  readonly rollbacks?: number
  readonly verifications?: number
}
const siriusOf = (r: unknown) => (r as { sirius?: SiriusStats }).sirius

describe("models", () => {
  it("lists the served model by its directory's name", async () => {
    const list = await openai.models.list()
    expect(list.data.map((m) => m.id)).toEqual(["sirius-tiny-arith"])
    expect((await openai.models.retrieve("sirius-tiny-arith")).id).toBe("sirius-tiny-arith")
  })

  it("a model file's id is its name without the extension (GGUF files); a directory's, its name", () => {
    const dir = mkdtempSync(join(tmpdir(), "sirius-id-"))
    writeFileSync(join(dir, "TinyLlama-1.1B-Chat.Q4_K_M.gguf"), "")
    expect(modelId(join(dir, "TinyLlama-1.1B-Chat.Q4_K_M.gguf"))).toBe("TinyLlama-1.1B-Chat.Q4_K_M")
    expect(modelId(`${Bundled.modelDir}/`)).toBe("sirius-tiny-arith")
  })
})

describe("completions", () => {
  it("answer, finish reason and usage equal the library's (full mode, greedy)", async () => {
    const expected = await client.generate({ prompt, maxNewTokens: 80 })
    const r = await openai.completions.create({ model: "sirius-tiny-arith", prompt })
    expect(r.object).toBe("text_completion")
    expect(r.choices[0]!.text).toBe(expected.text)
    expect(r.choices[0]!.text).toContain("The answer is 41.")
    expect(r.choices[0]!.finish_reason).toBe("stop")
    expect(r.usage).toEqual({ prompt_tokens: expected.stats.promptTokens, completion_tokens: expected.tokens.length, total_tokens: expected.stats.promptTokens + expected.tokens.length })
    expect(siriusOf(r)).toBeUndefined() // full mode: no Sirius stats
  })

  it("streamed: the chunks' text is the whole answer, then the finish reason, the usage chunk, [DONE]", async () => {
    const whole = await openai.completions.create({ model: "sirius-tiny-arith", prompt, max_tokens: 30 })
    const stream = await openai.completions.create({ model: "sirius-tiny-arith", prompt, max_tokens: 30, stream: true, stream_options: { include_usage: true } })
    let text = ""
    const finishes: Array<string | null> = []
    let usage: OpenAI.CompletionUsage | null | undefined
    let usageChunks = 0
    for await (const c of stream) {
      if (c.choices.length === 0) {
        usageChunks++
        usage = c.usage
        continue
      }
      expect(c.usage).toBeNull() // every other chunk says null, as OpenAI's do
      text += c.choices[0]!.text
      finishes.push(c.choices[0]!.finish_reason)
    }
    expect(text).toBe(whole.choices[0]!.text)
    expect(finishes.at(-1)).toBe("length")
    expect(finishes.slice(0, -1).every((f) => f === null)).toBe(true)
    expect(usageChunks).toBe(1)
    expect(usage).toEqual(whole.usage)
    expect(whole.usage!.completion_tokens).toBe(30)
  })

  it("stop strings (a list or one string) cut the text before them and finish with stop", async () => {
    const full = (await openai.completions.create({ model: "sirius-tiny-arith", prompt })).choices[0]!.text
    for (const stop of [["="], "=", ["zzz", "."]]) {
      const r = await openai.completions.create({ model: "sirius-tiny-arith", prompt, stop })
      const first = Math.min(...(typeof stop === "string" ? [stop] : stop).map((s) => (full.indexOf(s) < 0 ? Infinity : full.indexOf(s))))
      expect(r.choices[0]!.text).toBe(full.slice(0, first))
      expect(r.choices[0]!.finish_reason).toBe("stop")
    }
  })

  it("a seed makes sampling repeatable, and equals the library's sampling with that seed", async () => {
    const params = withExtras({ model: "sirius-tiny-arith", prompt, temperature: 4, seed: 7, max_tokens: 40 }, { top_k: 20 })
    const a = await openai.completions.create(params)
    const b = await openai.completions.create(params)
    expect(a.choices[0]!.text).toBe(b.choices[0]!.text)
    const lib = await client.generate({ prompt, maxNewTokens: 40, sampling: { temperature: 4, seed: 7, topK: 20 } })
    expect(a.choices[0]!.text).toBe(lib.text)
    const others = await Promise.all([8, 9, 10].map((seed) => openai.completions.create({ ...params, seed })))
    expect(others.some((o) => o.choices[0]!.text !== a.choices[0]!.text)).toBe(true)
  })

  it("logprobs: N gives each token's log-probability and N alternatives; greedy tokens are the best", async () => {
    const r = await openai.completions.create({ model: "sirius-tiny-arith", prompt, max_tokens: 12, logprobs: 3 })
    const lp = r.choices[0]!.logprobs!
    expect(lp.tokens).toHaveLength(12)
    expect(lp.tokens!.join("")).toBe(r.choices[0]!.text)
    expect(lp.text_offset).toEqual(lp.tokens!.map((_, i) => lp.tokens!.slice(0, i).join("").length))
    lp.top_logprobs!.forEach((top, i) => {
      const values = Object.values(top)
      expect(values).toHaveLength(3)
      expect(lp.token_logprobs![i]).toBeLessThanOrEqual(0)
      expect(lp.token_logprobs![i]).toBe(Math.max(...values)) // greedy: the chosen token is the most likely
      expect(top[lp.tokens![i]!]).toBe(lp.token_logprobs![i])
    })
    const lib: Array<number> = []
    for await (const e of client.stream({ prompt, maxNewTokens: 12, logprobs: 3 })) if (e._tag === "Committed") lib.push(e.logprob!.logprob)
    expect(lp.token_logprobs).toEqual(lib)
  })
})

describe("chat completions", () => {
  it("the bundled model's Q/A fallback: one user message answers as the completion of `Q: …\\nA:`", async () => {
    const completion = await openai.completions.create({ model: "sirius-tiny-arith", prompt })
    const chat = await openai.chat.completions.create({ model: "sirius-tiny-arith", messages: [{ role: "user", content: question }] })
    expect(chat.object).toBe("chat.completion")
    expect(chat.choices[0]!.message).toEqual({ role: "assistant", content: completion.choices[0]!.text })
    expect(chat.choices[0]!.finish_reason).toBe("stop")
    expect(chat.usage).toEqual(completion.usage)
  })

  it("streamed: a role chunk, content deltas, the finish, the usage chunk", async () => {
    const whole = await openai.chat.completions.create({ model: "sirius-tiny-arith", messages: [{ role: "user", content: question }], max_completion_tokens: 20 })
    const stream = await openai.chat.completions.create({
      model: "sirius-tiny-arith",
      messages: [{ role: "user", content: question }],
      max_completion_tokens: 20,
      stream: true,
      stream_options: { include_usage: true }
    })
    const chunks: Array<OpenAI.ChatCompletionChunk> = []
    for await (const c of stream) chunks.push(c)
    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: "assistant", content: "" })
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? "").join("")).toBe(whole.choices[0]!.message.content)
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe("length")
    expect(chunks.at(-1)!.choices).toEqual([])
    expect(chunks.at(-1)!.usage).toEqual(whole.usage)
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1)
  })

  it("logprobs: true with top_logprobs: the chat format, with each token's UTF-8 bytes", async () => {
    const r = await openai.chat.completions.create({ model: "sirius-tiny-arith", messages: [{ role: "user", content: question }], max_tokens: 6, logprobs: true, top_logprobs: 2 })
    const content = r.choices[0]!.logprobs!.content!
    expect(content).toHaveLength(6)
    expect(content.map((t) => t.token).join("")).toBe(r.choices[0]!.message.content)
    for (const t of content) {
      expect(t.bytes).toEqual([...Buffer.from(t.token, "utf8")])
      expect(t.top_logprobs).toHaveLength(2)
      expect(t.top_logprobs[0]!.logprob).toBe(t.logprob)
    }
  })
})

describe("the sirius extension", () => {
  it("mode sirius answers with the request's stats; greedy-exact acceptance is lossless (the full model's text)", async () => {
    const full = await openai.completions.create({ model: "sirius-tiny-arith", prompt })
    const r = await openai.completions.create(withExtras({ model: "sirius-tiny-arith", prompt }, { sirius: { mode: "sirius", acceptance: "greedy-exact", period: 8 } }))
    expect(r.choices[0]!.text).toBe(full.choices[0]!.text)
    const s = siriusOf(r)!
    expect(s.mode).toBe("sirius")
    expect(s.aal).toBeGreaterThan(1)
    expect(s.aal).toBeLessThanOrEqual(8)
    expect(s.effective_density).toBeGreaterThan(0)
    expect(s.parameter_density).toBeGreaterThan(0)
    expect(s.parameter_density).toBeLessThan(1)
    expect(s.corrected_tokens).toBeGreaterThanOrEqual(0)
    expect(s.rollbacks).toBeGreaterThanOrEqual(0)
    const lib = await client.generate({ prompt, maxNewTokens: 80, mode: "sirius", correctionPeriod: 8, policy: Policy.greedyExact })
    expect(s.aal).toBe(lib.stats.aal)
    expect(s.corrected_tokens).toBe(lib.stats.correctedTokens)
  })

  it("mode sparse reports its parameter density and no Sirius-only stats; the stats ride on the last streamed chunk", async () => {
    const r = await openai.completions.create(withExtras({ model: "sirius-tiny-arith", prompt, max_tokens: 10 }, { sirius: { mode: "sparse", sparsity: "fine", density: 0.5 } }))
    const s = siriusOf(r)!
    expect(s.mode).toBe("sparse")
    expect(s.parameter_density).toBeLessThan(1)
    expect(s.aal).toBeUndefined()
    const stream = await openai.completions.create(withExtras({ model: "sirius-tiny-arith", prompt, max_tokens: 10, stream: true as const }, { sirius: { mode: "sirius" } }))
    let last: unknown
    for await (const c of stream) last = c
    expect(siriusOf(last)?.aal).toBeGreaterThan(0)
  })

  it("events: true streams drafts and verifications as named events (choices: []) beside unchanged chunks", async () => {
    const plain = await openai.chat.completions.create({ model: "sirius-tiny-arith", messages: [{ role: "user", content: question }], max_tokens: 24 })
    const stream = await openai.chat.completions.create(
      withExtras({ model: "sirius-tiny-arith", messages: [{ role: "user" as const, content: question }], max_tokens: 24, stream: true as const }, { sirius: { mode: "sirius", period: 4, events: true } })
    )
    const objects = new Map<string, number>()
    let text = ""
    for await (const c of stream) {
      objects.set(c.object, (objects.get(c.object) ?? 0) + 1)
      if (c.object === "chat.completion.chunk") text += c.choices[0]?.delta.content ?? ""
      else expect(c.choices).toEqual([])
    }
    expect(objects.get("sirius.drafted")).toBeGreaterThan(0)
    expect(objects.get("sirius.verified")).toBeGreaterThanOrEqual(24 / 4 - 1)
    // threshold acceptance may correct a draft, so compare with the same mode without events
    const same = await openai.chat.completions.create(withExtras({ model: "sirius-tiny-arith", messages: [{ role: "user" as const, content: question }], max_tokens: 24 }, { sirius: { mode: "sirius", period: 4 } }))
    expect(text).toBe(same.choices[0]!.message.content)
    expect(plain.choices[0]!.message.content!.slice(0, 5)).toBe(text.slice(0, 5))
  })
})
