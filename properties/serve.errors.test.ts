// Bad requests to `sirius serve` (serve/), each with its status and OpenAI-shaped error body asserted
// exactly: malformed JSON, wrong types (Effect Schema, the field named), unknown model, prompt + max_tokens
// beyond the context, a body over the limit (with and without Content-Length), unknown `sirius` options,
// unsupported fields, the engine's own refusals (streamed requests too: a 400, not a 200 holding an error),
// unknown paths; the model loading (503) or failing to load; API keys and CORS. None of them crashes the
// server or leaks a slot.
import { Effect, Layer } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Server from "../serve/Server.ts"
import { SimdKernels } from "../simd/index.ts"
import * as Bundled from "../src/Bundled.ts"
import { Kernels } from "../src/Kernels.ts"

const prompt = "Q: Ann has 26 pens. She buys 13 more. She buys 2 more. How many pens now?\nA:"
const promptTokens = 77 // that prompt, with the BOS

let server: Server.Handle
beforeAll(async () => {
  server = await Server.start({ model: Bundled.modelDir, kernels: SimdKernels.layer({ threads: 1 }), port: 0, log: false, parallel: 1, queue: 1, maxBodyBytes: 4096 })
  await server.ready
})
afterAll(() => server.close())

const post = (path: string, body: unknown, init: RequestInit = {}) =>
  // a string or a stream is sent as it is (a malformed body, a chunked one); anything else as JSON
  fetch(`${server.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: typeof body === "string" || body instanceof ReadableStream ? body : JSON.stringify(body), ...init })

/** Status and body of an error answer. */
const answer = async (response: Response) => ({ status: response.status, body: (await response.json()) as unknown })

const error = (status: number, message: string, param: string | null, code: string | null = null, type = "invalid_request_error") => ({
  status,
  body: { error: { message, type, param, code } }
})

describe("malformed and mistyped bodies", () => {
  it("malformed JSON; a body that is not an object", async () => {
    const r = await answer(await post("/v1/completions", "{bad"))
    expect(r).toEqual(error(400, expect.stringMatching(/^the request body is not valid JSON \(.+\)$/) as unknown as string, null, "invalid_json"))
    expect(await answer(await post("/v1/completions", [1, 2]))).toEqual(error(400, "the request body must be a JSON object (got [1,2])", null))
  })

  it("wrong types and missing fields name the field (Effect Schema)", async () => {
    const cases: ReadonlyArray<readonly [string, unknown, ReturnType<typeof error>]> = [
      ["/v1/completions", { prompt, temperature: "hot" }, error(400, 'temperature: expected number | null (got "hot")', "temperature")],
      ["/v1/completions", { prompt, max_tokens: 0 }, error(400, "max_tokens: expected a value greater than or equal to 1 (got 0)", "max_tokens")],
      ["/v1/completions", { prompt, max_tokens: 2.5 }, error(400, "max_tokens: expected an integer (got 2.5)", "max_tokens")],
      ["/v1/completions", { prompt, stop: [1] }, error(400, "stop.0: expected string (got 1)", "stop.0")],
      ["/v1/completions", { prompt, stream: "yes" }, error(400, 'stream: expected boolean | null (got "yes")', "stream")],
      ["/v1/completions", {}, error(400, "prompt: is required", "prompt")],
      ["/v1/chat/completions", { messages: [] }, error(400, "messages: expected a value with a length of at least 1 (got [])", "messages")],
      ["/v1/chat/completions", { messages: [{ role: "bot", content: "hi" }] }, error(400, 'messages.0.role: expected "system" | "developer" | "user" | "assistant" | "tool" (got "bot")', "messages.0.role")],
      ["/v1/chat/completions", { messages: [{ role: "user", content: "hi" }], top_logprobs: 2 }, error(400, "top_logprobs: requires logprobs: true", "top_logprobs")],
      [
        "/v1/chat/completions",
        { messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] },
        error(400, 'messages.0.content.0: only text parts are supported (got a part of type "image_url")', "messages.0.content.0")
      ]
    ]
    for (const [path, body, expected] of cases) expect(await answer(await post(path, body)), JSON.stringify(body)).toEqual(expected)
  })

  it("fields that would change the output but are not supported are refused by name; other unknown fields are ignored", async () => {
    expect(await answer(await post("/v1/completions", { prompt, n: 2 }))).toEqual(error(400, "n: only one choice per request is supported (n must be 1) (got 2)", "n", "unsupported_parameter"))
    expect(await answer(await post("/v1/completions", { prompt, best_of: 3 }))).toEqual(error(400, "best_of: best_of is not supported (it must be 1) (got 3)", "best_of", "unsupported_parameter"))
    expect(await answer(await post("/v1/completions", { prompt, echo: true }))).toEqual(error(400, "echo: echo is not supported (got true)", "echo", "unsupported_parameter"))
    const ok = await post("/v1/completions", { prompt, max_tokens: 2, n: 1, echo: false, user: "someone", frobnicate: { deeply: true } })
    expect(ok.status).toBe(200)
  })
})

describe("requests the model cannot serve", () => {
  it("another model's name: 404", async () => {
    expect(await answer(await post("/v1/completions", { model: "gpt-4", prompt }))).toEqual(
      error(404, "The model 'gpt-4' does not exist: this server serves 'sirius-tiny-arith'", "model", "model_not_found")
    )
  })

  it("prompt + max_tokens beyond the context; a prompt that fills it", async () => {
    expect(await answer(await post("/v1/completions", { prompt, max_tokens: 200 }))).toEqual(
      error(400, `max_tokens: the prompt (${promptTokens} tokens) + max_tokens (200) exceeds the model's context of 256 tokens (max_position_embeddings)`, "max_tokens", "context_length_exceeded")
    )
    expect(await answer(await post("/v1/chat/completions", { messages: [{ role: "user", content: "x" }], max_completion_tokens: 300 }))).toEqual(
      error(400, "max_completion_tokens: the prompt (8 tokens) + max_completion_tokens (300) exceeds the model's context of 256 tokens (max_position_embeddings)", "max_completion_tokens", "context_length_exceeded")
    )
    expect(await answer(await post("/v1/completions", { prompt: "1".repeat(300) }))).toEqual(
      error(400, "prompt: the prompt is 301 tokens, and the model's context is 256 (max_position_embeddings): no room to generate", "prompt", "context_length_exceeded")
    )
    // without max_tokens the default is cut to what the context leaves: no error for the server's default
    const r = (await (await post("/v1/completions", { prompt: "1".repeat(250) })).json()) as { usage: { completion_tokens: number } }
    expect(r.usage.completion_tokens).toBeLessThanOrEqual(256 - 251)
  })

  it("a body over the limit: 413, with or without Content-Length", async () => {
    const big = JSON.stringify({ prompt: "x".repeat(5000) })
    const expected = error(413, "the request body exceeds the server's limit of 4096 bytes", null, "request_too_large")
    expect(await answer(await post("/v1/completions", big))).toEqual(expected)
    const chunked = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 5; i++) controller.enqueue(new TextEncoder().encode(big.slice(i * 1000, (i + 1) * 1000)))
        controller.enqueue(new TextEncoder().encode(big.slice(5000)))
        controller.close()
      }
    })
    expect(await answer(await post("/v1/completions", chunked, { duplex: "half" } as RequestInit))).toEqual(expected)
  })

  it("the sirius extension: unknown options, options the mode would ignore, impossible combinations", async () => {
    expect(await answer(await post("/v1/completions", { prompt, sirius: { mode: "sirius", bogus: 1 } }))).toEqual(
      error(400, "sirius.bogus: unknown option (known: mode, sparsity, density, period, threshold, tree_width, acceptance, events)", "sirius.bogus")
    )
    expect(await answer(await post("/v1/completions", { prompt, sirius: { mode: "turbo" } }))).toEqual(error(400, 'sirius.mode: expected "full" | "sparse" | "sirius" (got "turbo")', "sirius.mode"))
    expect(await answer(await post("/v1/completions", { prompt, sirius: { period: 4 } }))).toEqual(
      error(400, "sirius.period: applies to mode sirius, and this request's mode is full (the server's default; set sirius.mode)", "sirius.period")
    )
    expect(await answer(await post("/v1/completions", { prompt, sirius: { mode: "sparse", tree_width: 2 } }))).toEqual(
      error(400, "sirius.tree_width: applies to mode sirius, and this request's mode is sparse", "sirius.tree_width")
    )
    expect(await answer(await post("/v1/completions", { prompt, sirius: { mode: "sirius", tree_width: 2, acceptance: "speculative" } }))).toEqual(
      error(400, "sirius.acceptance: speculative samples its own drafts, which tree drafting (tree_width 2) cannot honour: use tree_width 1, or acceptance greedy-exact or threshold", "sirius.acceptance")
    )
    const calibrated = await answer(await post("/v1/completions", { prompt, sirius: { mode: "sparse", sparsity: "fine-threshold", density: 0.3 } }))
    expect(calibrated.status).toBe(400)
    expect(calibrated.body).toMatchObject({ error: { param: "sirius.sparsity", message: expect.stringMatching(/^sirius\.sparsity: fine-threshold needs the thresholds `sirius calibrate --density 0\.3` writes/) as unknown } })
  })

  it("the engine's own refusals are 400s naming the field, streamed requests included", async () => {
    const expected = error(400, "prompt: token id 999 is outside the vocabulary [0, 57)", "prompt")
    expect(await answer(await post("/v1/completions", { prompt: [5, 999] }))).toEqual(expected)
    const streamed = await post("/v1/completions", { prompt: [5, 999], stream: true })
    expect(streamed.headers.get("content-type")).toMatch(/^application\/json/)
    expect(await answer(streamed)).toEqual(expected)
  })

  it("unknown paths: 404; known paths with another method: 405", async () => {
    expect(await answer(await fetch(`${server.url}/v1/embeddings`, { method: "POST" }))).toEqual(error(404, "Unknown request URL: POST /v1/embeddings", null, "unknown_url"))
    expect(await answer(await fetch(`${server.url}/v1/completions`))).toEqual(error(405, "GET /v1/completions: use POST", null, "method_not_allowed"))
  })

  it("after all of them: every slot free, nothing queued, and the next request is answered", async () => {
    expect(server.snapshot()).toMatchObject({ busy: 0, queued: 0, reservedBytes: 0 })
    const r = (await (await post("/v1/completions", { prompt })).json()) as { choices: Array<{ text: string }> }
    expect(r.choices[0]!.text).toContain("The answer is 41.")
  })
})

describe("loading", () => {
  it("503 while the model loads (health: llama.cpp's body; generation: OpenAI's, with Retry-After), then 200", async () => {
    let release: () => void = () => {}
    const gate = new Promise<void>((resolve) => (release = resolve))
    // a backend that becomes available only when the test says so
    const slow = Layer.effect(Kernels, Effect.andThen(Effect.promise(() => gate), SimdKernels.make({ threads: 1 })))
    const s = await Server.start({ model: Bundled.modelDir, kernels: slow, port: 0, log: false })
    try {
      expect(await answer(await fetch(`${s.url}/health`))).toEqual({ status: 503, body: { error: { code: 503, message: "Loading model", type: "unavailable_error" } } })
      const r = await fetch(`${s.url}/v1/completions`, { method: "POST", body: JSON.stringify({ prompt }) })
      expect(r.headers.get("retry-after")).toBe("5")
      expect(await answer(r)).toEqual(error(503, "Loading model", null, "model_loading", "unavailable_error"))
      expect(((await (await fetch(`${s.url}/v1/models`)).json()) as { data: Array<{ id: string }> }).data[0]!.id).toBe("sirius-tiny-arith")
      release()
      await s.ready
      expect(await answer(await fetch(`${s.url}/health`))).toEqual({ status: 200, body: { status: "ok" } })
    } finally {
      release()
      await s.close()
    }
  })

  it("a model that fails to load: health says why (500), ready rejects, requests get 500", async () => {
    const s = await Server.start({ model: "/nonexistent/model", kernels: SimdKernels.layer({ threads: 1 }), port: 0, log: false })
    try {
      await expect(s.ready).rejects.toMatchObject({ _tag: "CheckpointError" })
      const health = await answer(await fetch(`${s.url}/health`))
      expect(health).toEqual({
        status: 500,
        body: { error: { code: 500, message: expect.stringMatching(/^the model failed to load: CheckpointError: \/nonexistent\/model: no such file or directory/) as unknown, type: "server_error" } }
      })
      expect((await fetch(`${s.url}/v1/completions`, { method: "POST", body: "{}" })).status).toBe(500)
    } finally {
      await s.close()
    }
  })
})

describe("API key and CORS", () => {
  it("--api-key: 401 without the bearer key or with another; /health stays open", async () => {
    const s = await Server.start({ model: Bundled.modelDir, kernels: SimdKernels.layer({ threads: 1 }), port: 0, log: false, apiKey: "sekret", cors: "https://app.example" })
    try {
      await s.ready
      const body = JSON.stringify({ prompt, max_tokens: 2 })
      expect(await answer(await fetch(`${s.url}/v1/completions`, { method: "POST", body }))).toEqual(
        error(401, "No API key provided: send the header Authorization: Bearer <key>", null, "invalid_api_key")
      )
      expect(await answer(await fetch(`${s.url}/v1/models`, { headers: { authorization: "Bearer wrong" } }))).toEqual(error(401, "Incorrect API key provided", null, "invalid_api_key"))
      expect((await fetch(`${s.url}/metrics`)).status).toBe(401)
      expect((await fetch(`${s.url}/health`)).status).toBe(200)
      const ok = await fetch(`${s.url}/v1/completions`, { method: "POST", body, headers: { authorization: "Bearer sekret", origin: "https://app.example" } })
      expect(ok.status).toBe(200)
      expect(ok.headers.get("access-control-allow-origin")).toBe("https://app.example")
      // a preflight carries no key: it is answered before authorization
      const preflight = await fetch(`${s.url}/v1/chat/completions`, {
        method: "OPTIONS",
        headers: { origin: "https://app.example", "access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type" }
      })
      expect(preflight.status).toBe(204)
      expect(preflight.headers.get("access-control-allow-origin")).toBe("https://app.example")
      expect(preflight.headers.get("access-control-allow-methods")).toContain("POST")
      expect(preflight.headers.get("access-control-allow-headers")).toBe("authorization,content-type")
    } finally {
      await s.close()
    }
  })
})
