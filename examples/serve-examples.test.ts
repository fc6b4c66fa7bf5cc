/**
 * The serving examples run: examples/serve-effect-app.ts (an Effect HTTP app with its own route over the
 * library) answers and streams, and examples/openai-client.ts talks to `sirius serve` with the openai
 * package, its extension request included.
 */
import { Context, Effect, Layer, Logger } from "effect"
import { HttpServer } from "effect/http"
import { describe, expect, it, vi } from "vitest"
import * as Server from "../serve/Server.ts"
import { SimdKernels } from "../simd/index.ts"
import * as Bundled from "../src/Bundled.ts"
import { main } from "./openai-client.ts"
import { app } from "./serve-effect-app.ts"

describe("serving examples", () => {
  it("serve-effect-app: POST /solve streams the answer; a bad body is a 400", async () => {
    const result = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const context = yield* Layer.build(app(0))
          const address = Context.get(context, HttpServer.HttpServer).address
          const url = `http://127.0.0.1:${address._tag === "UnixPathAddress" ? 0 : address.port}/solve`
          const ok = yield* Effect.promise(() => fetch(url, { method: "POST", body: JSON.stringify({ question: "Tom has 23 apples. He buys 15 more. He gives away 9. How many apples now?" }) }))
          const bad = yield* Effect.promise(() => fetch(url, { method: "POST", body: JSON.stringify({ question: "" }) }))
          return { status: ok.status, text: yield* Effect.promise(() => ok.text()), bad: bad.status }
        })
      ).pipe(Effect.provide(Logger.layer([])))
    )
    expect(result.status).toBe(200)
    expect(result.text).toContain("The answer is 29.")
    expect(result.bad).toBe(400)
  })

  it("openai-client: chat, streamed chat and a Sirius request through the extension", async () => {
    const server = await Server.start({ model: Bundled.modelDir, kernels: SimdKernels.layer({ threads: 1 }), port: 0, log: false })
    const lines: Array<string> = []
    const log = vi.spyOn(console, "log").mockImplementation((...args: Array<unknown>) => void lines.push(args.join(" ")))
    const write = vi.spyOn(process.stdout, "write").mockImplementation(() => true)
    try {
      await server.ready
      await main(server.url)
    } finally {
      log.mockRestore()
      write.mockRestore()
      await server.close()
    }
    expect(lines[0]).toMatch(/^sirius-tiny-arith: 23\+15=38\. 38-9=29\. The answer is 29\. \(\d+ tokens, stop\)$/)
    expect(lines[1]).toMatch(/^\(\d+ tokens in all\)$/)
    expect(lines[2]).toMatch(/^sirius: 23\+15=38\. 38-9=29\. The answer is 29\.  AAL \d\.\d\d\/8, effective density \d\.\d{3}, \d+ corrected$/)
  })
})
