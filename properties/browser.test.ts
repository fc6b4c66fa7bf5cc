/**
 * The library in a real browser: Debian's chromium (headless, through playwright-core; never a downloaded
 * browser) loads the esbuild bundle of browser/entry.ts from a 127.0.0.1 server with COOP/COEP headers.
 * On WebGPU (SwiftShader, with --enable-unsafe-webgpu) and on WebGL2, the gpu pipeline (gpu/pipeline.ts):
 *   - every Kernels op runs in the page, its handles on the page's device, against the reference computed
 *     in Node (sirius-ts/testing's kernelsAgreeWithReference over browser/remote.ts), and so do the
 *     forward-pass laws (bitwise: the KV cache's re-emitting writes included);
 *   - the page loads a random tiny model from its origin (fetch + the browser safetensors parser) and
 *     decodes greedily with Generation.generate; the tokens must be the Node reference's, greedy-exact
 *     Sirius must commit exactly those tokens, and every forward pass must upload one buffer and read one
 *     back (the page reports its runtime's traffic);
 *   - a lost device (WebGPU: destroyed; WebGL2: WEBGL_lose_context) is a KernelError, not a hang.
 * Each check asserts the backend that ran in the page. Without /usr/bin/chromium the browser checks are
 * skipped with the reason printed (CI installs it with apt: see the report in the issue).
 *
 * SwiftShader emulates the GPU on the CPU: tiny shapes and few runs keep this file well under 90 s.
 */
import { Cause, Effect, Exit, Layer } from "effect"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type Browser, chromium, type Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { buildBundle } from "../browser/build.ts"
import type { GenerateRequest, GenerateResult, SiriusPage, WireError } from "../browser/protocol.ts"
import { remoteKernels, remoteLayer } from "../browser/remote.ts"
import { parseSafetensors } from "../browser/safetensors.ts"
import { indexHtml, serve, type StaticServer } from "../browser/server.ts"
import { ReferenceKernels } from "../reference/index.ts"
import * as Forward from "../src/Forward.ts"
import * as KvCache from "../src/KvCache.ts"
import * as Model from "../src/Model.ts"
import { Kernels } from "../src/Kernels.ts"
import { readSafetensors } from "../src/Safetensors.ts"
import { randomWeights, shapes, writeHfCheckpoint } from "../testing/RandomModel.ts"
import { greedy, kernelsAgreeWithReference, nearTie } from "../testing/index.ts"
import { compare } from "../testing/tolerance.ts"
import { multiTokenEqualsDecode, overwriteEqualsFreshPrefill } from "../testing/forward.ts"

const run = <A, E>(e: Effect.Effect<A, E>): Promise<A> => Effect.runPromise(e)
const chromiumPath = "/usr/bin/chromium"
const hasChromium = existsSync(chromiumPath)
if (!hasChromium) console.log(`[browser.test] browser checks skipped: ${chromiumPath} is absent (apt-get install chromium)`)

// The model the page loads: shapes.tiny (hidden 64, 2 layers, vocab 320), f32, written as an HF directory.
const config = shapes.tiny
const weights = randomWeights(config, { seed: 7 })
const prompt = [1, 17, 42, 99, 5]
const maxNewTokens = 10
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

  const generate = async (request: GenerateRequest): Promise<GenerateResult> => {
    const result = await page.evaluate((r) => (globalThis as unknown as { sirius: SiriusPage }).sirius.generate(r), request)
    if ("error" in result) throw new Error((result as WireError).error.message)
    return result as GenerateResult
  }
  /** Every forward pass of a generation moved one buffer each way (tree or chain, full or sparse). */
  const oneUploadOneReadback = (label: string, r: GenerateResult) => {
    for (const [i, f] of r.forwards.entries()) {
      expect([f.inputUploads, f.residentUploads, f.readbacks], `${label}: forward ${i} (T=${f.tokens})`).toEqual([1, 0, 1])
      expect(f.inputBytes, `${label}: forward ${i}`).toBeGreaterThanOrEqual(4 * 2 * f.tokens)
    }
  }

  for (const mode of ["webgpu", "webgl2"] as const) {
    describe(`gpu:${mode} (the pipeline)`, () => {
      it("every Kernels op agrees with the reference (computed in Node) within the f32 bound", async () => {
        const report = await kernelsAgreeWithReference(remoteLayer(page, mode), { numRuns: 2 })
        expect(report.backend).toBe(`gpu:${mode}`)
        const ops = Object.entries(report.ops).map(([op, r]) => `${op} ${r!.maxAbs.toExponential(1)} (${(100 * r!.maxRatio).toFixed(1)}%)`)
        console.log(`[browser.test] gpu:${mode} max |Δ| per op: ${ops.join(", ")}`)
      })

      it("a multi-token forward equals token-by-token decode, and a rewritten window a fresh prefill, bitwise", async () => {
        await multiTokenEqualsDecode(Layer.orDie(remoteLayer(page, mode)), { atol: 0, rtol: 0 }, 1)
        await overwriteEqualsFreshPrefill(Layer.orDie(remoteLayer(page, mode)), { atol: 0, rtol: 0 }, 1)
      })

      it("decodes the reference's greedy tokens; greedy-exact Sirius commits exactly them; one upload and one readback per forward", async () => {
        const full = await generate({ mode, base: "/model/", prompt, maxNewTokens })
        expect(full.backend).toBe(`gpu:${mode}`)
        const want = await reference(maxNewTokens)
        for (let i = 0; i < maxNewTokens; i++) {
          if (full.tokens[i] === want[i]!.id) continue
          expect(want[i]!.margin, `step ${i}: ${full.tokens[i]} vs ${want[i]!.id}`).toBeLessThan(nearTie)
          break
        }
        oneUploadOneReadback("full", full)
        expect(full.forwards.length).toBe(maxNewTokens)
        for (const generation of [
          { mode: "sirius", granularity: "fine", density: 0.5, correctionPeriod: 4, acceptance: "greedy-exact" },
          { mode: "sirius", granularity: "coarse", density: 0.5, correctionPeriod: 4, treeWidth: 2, acceptance: "greedy-exact" }
        ] as const) {
          const label = `${generation.granularity} w=${"treeWidth" in generation ? generation.treeWidth : 1}`
          const sirius = await generate({ mode, base: "/model/", prompt, maxNewTokens, generation })
          expect(sirius.tokens, label).toEqual(full.tokens)
          expect(sirius.verifications, label).toBeGreaterThan(1)
          // coarse sparsity's prefill also reads each layer's GRIFFIN statistic back (F floats, once per request)
          oneUploadOneReadback(label, generation.granularity === "coarse" ? { ...sirius, forwards: sirius.forwards.slice(1) } : sirius)
        }
        const logits = compare(full.prefillLogits, want[0]!.logits, { atol: Infinity, rtol: 0 })
        const bytes = full.forwards.at(-1)!
        console.log(
          `[browser.test] gpu:${mode} greedy ${JSON.stringify(full.tokens)}: ${full.tokensPerSecond.toFixed(1)} tokens/s, load ${full.loadMs.toFixed(0)} ms, ` +
            `prefill logits max |Δ| ${logits.maxAbs.toExponential(2)}; a decode forward: ${bytes.dispatches} launches, ${bytes.inputBytes} B up, ${bytes.readbackBytes} B down`
        )
      })

      it("the host path (a readback per op) is still there and decodes the same tokens", async () => {
        const host = await generate({ mode, pipeline: false, base: "/model/", prompt, maxNewTokens: 4 })
        const pipeline = await generate({ mode, base: "/model/", prompt, maxNewTokens: 4 })
        expect(host.backend).toBe(`gpu:${mode}(per-op readback)`)
        expect(host.tokens).toEqual(pipeline.tokens)
        // the host path reads every op's result back: dozens of readbacks per forward pass
        expect(host.total.readbacks / 4).toBeGreaterThan(10 * config.numHiddenLayers)
        expect(pipeline.total.readbacks).toBe(4)
      })

      it("a lost device is a KernelError naming the loss, never a hang", async () => {
        const exit = await Effect.runPromiseExit(
          Effect.scoped(
            Effect.gen(function* () {
              const k = yield* remoteKernels(page, mode)
              const model = yield* Effect.provideService(Model.fromWeights(config, weights), Kernels, k)
              const cache = yield* KvCache.make(k, config, 8)
              yield* Forward.forward(model, cache, Int32Array.from(prompt.slice(0, 3)), 0, "last")
              yield* k.loseDevice
              return yield* Forward.forward(model, cache, Int32Array.of(4), 3, "last")
            })
          )
        )
        expect(Exit.isFailure(exit)).toBe(true)
        if (Exit.isFailure(exit)) {
          const error = Cause.squash(exit.cause) as { _tag?: string; message?: string }
          expect(error._tag).toBe("KernelError")
          expect(error.message).toMatch(/lost/)
        }
      })
    })
  }

  it("a backend the page cannot run is a BackendUnavailableError, in the page as in Node", async () => {
    const exit = await Effect.runPromiseExit(Effect.scoped(Layer.build(remoteLayer(page, "headlessgl"))))
    expect(Exit.isFailure(exit)).toBe(true)
    if (Exit.isFailure(exit)) expect(JSON.stringify(exit.cause)).toMatch(/BackendUnavailableError/)
  })
})
