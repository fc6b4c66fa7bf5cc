/**
 * The library in a real browser: Debian's chromium (headless, through playwright-core; never a downloaded
 * browser) loads the esbuild bundle of browser/entry.ts from a 127.0.0.1 server with COOP/COEP headers.
 * On WebGPU (SwiftShader, with --enable-unsafe-webgpu) and on WebGL2:
 *   - every Kernels op runs in the page against the reference computed in Node (sirius-ts/testing's
 *     kernelsAgreeWithReference over browser/remote.ts), and so does the forward-pass law;
 *   - the page loads a random tiny model from its origin (fetch + the browser safetensors parser) and
 *     decodes greedily with Generation.generate; the tokens must be the Node reference's.
 * Each check asserts the backend that ran in the page. Without /usr/bin/chromium the browser checks are
 * skipped with the reason printed (CI installs it with apt: see the report in the issue).
 *
 * SwiftShader emulates the GPU on the CPU: tiny shapes and few runs keep this file well under 90 s.
 */
import { Effect, Exit, Layer } from "effect"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type Browser, chromium, type Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { buildBundle } from "../browser/build.ts"
import type { GenerateResult, SiriusPage, WireError } from "../browser/protocol.ts"
import { remoteLayer } from "../browser/remote.ts"
import { parseSafetensors } from "../browser/safetensors.ts"
import { indexHtml, serve, type StaticServer } from "../browser/server.ts"
import { ReferenceKernels } from "../reference/index.ts"
import { readSafetensors } from "../src/Safetensors.ts"
import { randomWeights, shapes, writeHfCheckpoint } from "../testing/RandomModel.ts"
import { greedy, kernelsAgreeWithReference, nearTie } from "../testing/index.ts"
import { compare } from "../testing/tolerance.ts"
import { multiTokenEqualsDecode } from "../testing/forward.ts"

const run = <A, E>(e: Effect.Effect<A, E>): Promise<A> => Effect.runPromise(e)
const chromiumPath = "/usr/bin/chromium"
const hasChromium = existsSync(chromiumPath)
if (!hasChromium) console.log(`[browser.test] browser checks skipped: ${chromiumPath} is absent (apt-get install chromium)`)

// The model the page loads: shapes.tiny (hidden 64, 2 layers, vocab 320), f32, written as an HF directory.
const config = shapes.tiny
const weights = randomWeights(config, { seed: 7 })
const prompt = [1, 17, 42, 99, 5]
const maxNewTokens = 8
const modelDir = mkdtempSync(join(tmpdir(), "sirius-browser-"))
await run(writeHfCheckpoint(modelDir, config, weights))
afterAll(() => rmSync(modelDir, { recursive: true, force: true }))

describe("browser safetensors loader", () => {
  it("parses what the Node reader reads, tensor for tensor, byte for byte", async () => {
    const file = join(modelDir, "model.safetensors")
    const bytes = readFileSync(file)
    const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)
    const fromBrowser = await run(parseSafetensors(buffer, file))
    const fromNode = await run(readSafetensors(file))
    expect([...fromBrowser.keys()]).toEqual([...fromNode.keys()])
    for (const [name, t] of fromNode) {
      const b = fromBrowser.get(name)!
      expect([b.dtype, b.shape]).toEqual([t.dtype, t.shape])
      expect(Buffer.from(b.data).equals(Buffer.from(t.data))).toBe(true)
    }
  })

  it("rejects damaged files with a CheckpointError, like the Node reader", async () => {
    const file = join(modelDir, "model.safetensors")
    const good = new Uint8Array(readFileSync(file))
    const header = Number(new DataView(good.buffer).getBigUint64(0, true))
    const damaged: Array<[string, Uint8Array, RegExp]> = [
      ["too short", good.slice(0, 5), /shorter than the 8-byte header/],
      ["truncated data", good.slice(0, 8 + header + 10), /beyond the .*data region/],
      ["header past the end", good.slice(0, 8 + header - 1), /exceeds the .* bytes after the length field/],
      ["not JSON", (() => { const b = good.slice(); b[8] = 0x7b; b[9] = 0x7b; return b })(), /not valid UTF-8 JSON/]
    ]
    for (const [what, bytes, message] of damaged) {
      const error = await run(Effect.flip(parseSafetensors(bytes.buffer as ArrayBuffer, "m.safetensors")))
      expect(error._tag, what).toBe("CheckpointError")
      expect(error.message, what).toMatch(message)
    }
  })
})

describe.skipIf(!hasChromium)("in chromium (WebGPU via SwiftShader, WebGL2)", () => {
  let server: StaticServer
  let browser: Browser
  let page: Page
  const pageErrors: Array<string> = []

  beforeAll(async () => {
    const [bundle] = await Promise.all([buildBundle()])
    server = await serve({ "/index.html": indexHtml, "/bundle.js": bundle }, { "/model/": modelDir })
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: ["--enable-unsafe-webgpu", "--no-sandbox", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic"]
    })
    page = await browser.newPage()
    page.on("pageerror", (e) => pageErrors.push(e.message))
    await page.goto(`${server.url}/index.html`)
    await page.waitForFunction(() => (globalThis as unknown as { sirius?: SiriusPage }).sirius !== undefined)
  })
  afterAll(async () => {
    await browser?.close()
    await server?.close()
    expect(pageErrors).toEqual([])
  })

  it("the page is cross-origin isolated and has WebGPU and WebGL2", async () => {
    expect(await page.evaluate(() => globalThis.crossOriginIsolated)).toBe(true)
    const reasons = await page.evaluate(() => (globalThis as unknown as { sirius: SiriusPage }).sirius.backends())
    expect(reasons["webgpu"]).toBeNull()
    expect(reasons["webgl2"]).toBeNull()
    // headless-gl is a Node backend: demanding it in a page is a typed error, not a fallback.
    expect(reasons["headlessgl"]).toMatch(/only in Node/)
  })

  const reference = (steps: number) => run(greedy(ReferenceKernels.make(), config, 7, "F32", prompt, steps))

  for (const mode of ["webgpu", "webgl2"] as const) {
    describe(`gpu:${mode}`, () => {
      it("every Kernels op agrees with the reference (computed in Node) within the f32 bound", async () => {
        const report = await kernelsAgreeWithReference(remoteLayer(page, mode), { numRuns: 4 })
        expect(report.backend).toBe(`gpu:${mode}`)
        const ops = Object.entries(report.ops).map(([op, r]) => `${op} ${r!.maxAbs.toExponential(1)} (${(100 * r!.maxRatio).toFixed(1)}%)`)
        console.log(`[browser.test] gpu:${mode} max |Δ| per op: ${ops.join(", ")}`)
      })

      it("a multi-token forward equals token-by-token decode, bitwise", () =>
        multiTokenEqualsDecode(Layer.orDie(remoteLayer(page, mode)), { atol: 0, rtol: 0 }, 2))

      it("loads a model from the page's origin and decodes the reference's greedy tokens", async () => {
        const result = await page.evaluate(
          (request) => (globalThis as unknown as { sirius: SiriusPage }).sirius.generate(request),
          { mode, base: "/model/", prompt, maxNewTokens }
        )
        if ("error" in result) throw new Error((result as WireError).error.message)
        const r = result as GenerateResult
        expect(r.backend).toBe(`gpu:${mode}`)
        const want = await reference(maxNewTokens)
        for (let i = 0; i < maxNewTokens; i++) {
          if (r.tokens[i] === want[i]!.id) continue
          expect(want[i]!.margin, `step ${i}: ${r.tokens[i]} vs ${want[i]!.id}`).toBeLessThan(nearTie)
          break
        }
        const logits = compare(r.prefillLogits, want[0]!.logits, { atol: Infinity, rtol: 0 })
        console.log(
          `[browser.test] gpu:${mode} greedy ${JSON.stringify(r.tokens)}: ${r.tokensPerSecond.toFixed(1)} tokens/s, ` +
            `load ${r.loadMs.toFixed(0)} ms, prefill logits max |Δ| ${logits.maxAbs.toExponential(2)}`
        )
      })
    })
  }

  it("a backend the page cannot run is a BackendUnavailableError, in the page as in Node", async () => {
    const exit = await Effect.runPromiseExit(Effect.scoped(Layer.build(remoteLayer(page, "headlessgl"))))
    expect(Exit.isFailure(exit)).toBe(true)
    if (Exit.isFailure(exit)) expect(JSON.stringify(exit.cause)).toMatch(/BackendUnavailableError/)
  })
})
