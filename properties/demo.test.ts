/**
 * The browser demo (browser/demo/) in Debian's chromium through playwright: the page served by
 * `npm run demo`'s server runs the real engine on WebGPU (SwiftShader) and WebGL2, and gets the bundled
 * model's answers right, for a problem given through the URL contract
 * (`?prompt=…&backend=…&mode=…&autorun=1`) and for one typed into the page. `[data-testid=output]` must hold
 * exactly the committed text (no draft or struck-through token), `document.body.dataset.status` must reach
 * "done", and a bad URL must end in "error" with the message shown. The settings' parsing is checked here
 * in Node too. Skipped without /usr/bin/chromium, like properties/browser.test.ts.
 */
import { existsSync } from "node:fs"
import { type Browser, chromium, type Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type DemoServer, startDemo } from "../browser/demo/serve.ts"
import { defaults, fromQuery, request, toQuery } from "../browser/demo/settings.ts"

const chromiumPath = "/usr/bin/chromium"
const hasChromium = existsSync(chromiumPath)

const ann = "Q: Ann has 26 pens. She buys 13 more. She buys 2 more. How many pens now?\nA:"
const tom = "Q: Tom has 54 marbles. He loses 10. He doubles them. He loses 5. How many marbles now?\nA:"

describe("demo settings and URL contract (Node)", () => {
  it("round-trips through the URL, and names every bad parameter", () => {
    const s = { ...defaults, prompt: tom, backend: "webgl2", mode: "sparse", density: 0.3, treeWidth: 2 } as const
    const back = fromQuery(new URLSearchParams(toQuery(s, true)))
    expect(back).toEqual({ settings: s, autorun: true, errors: [] })
    const bad = fromQuery(new URLSearchParams("backend=cuda&density=2&period=x&what=1&autorun=yes"))
    expect(bad.errors.join("\n")).toMatch(/backend: expected one of webgpu, webgl2, cpu/)
    expect(bad.errors.join("\n")).toMatch(/density: expected a number in \[0.01, 1\]/)
    expect(bad.errors.join("\n")).toMatch(/period: expected an integer/)
    expect(bad.errors.join("\n")).toMatch(/what: unknown parameter/)
    expect(bad.errors.join("\n")).toMatch(/autorun: expected 0 or 1/)
  })

  it("maps to the Client request of each mode, and refuses a drafting policy with tree drafting", () => {
    expect(request({ ...defaults, mode: "full" })).toMatchObject({ mode: "full", prompt: ann, maxNewTokens: 80 })
    expect(request({ ...defaults, mode: "sparse", sparsity: "fine" })).toMatchObject({ mode: "sparse", sparsity: { granularity: "fine", density: 0.5 } })
    expect(request({ ...defaults, treeWidth: 3 })).toMatchObject({ mode: "sirius", correctionPeriod: 16, treeWidth: 3 })
    expect(() => request({ ...defaults, acceptance: "speculative", treeWidth: 2 })).toThrow(/tree drafting cannot honour/)
  })
})

describe.skipIf(!hasChromium)("the demo page in chromium", () => {
  let server: DemoServer
  let browser: Browser
  const pageErrors: Array<string> = []

  beforeAll(async () => {
    server = await startDemo()
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: ["--enable-unsafe-webgpu", "--no-sandbox", "--headless=new", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic"]
    })
  })
  afterAll(async () => {
    await browser?.close()
    await server?.close()
    expect(pageErrors).toEqual([])
  })

  const newPage = async (): Promise<Page> => {
    const page = await browser.newPage()
    page.on("pageerror", (e) => pageErrors.push(e.message))
    return page
  }
  const finished = async (page: Page) => {
    await page.waitForFunction(() => document.body.dataset.status === "done" || document.body.dataset.status === "error", undefined, { timeout: 90_000 })
    const status = await page.evaluate(() => document.body.dataset.status)
    if (status !== "done") throw new Error(`the page ended in "${status}": ${await page.textContent("[data-testid=error]")}`)
    const output = page.locator("[data-testid=output]")
    // exactly the committed text: no element inside (drafts and struck-through tokens live in the trace)
    expect(await output.evaluate((e) => e.children.length)).toBe(0)
    return (await output.textContent()) ?? ""
  }

  for (const backend of ["webgpu", "webgl2"] as const) {
    it(`${backend}: a problem through the URL contract and one typed into the page get the right answers`, async () => {
      const page = await newPage()
      await page.goto(`${server.page}?prompt=${encodeURIComponent(ann)}&backend=${backend}&mode=sirius&autorun=1`)
      const viaUrl = await finished(page)
      expect(viaUrl).toMatch(/The answer is 41\.\s*$/)
      expect(await page.textContent("#status")).toBe(`done on gpu:${backend}`)
      // Sirius drew its verification windows, and the pipeline moved one buffer each way per forward
      expect(await page.locator("[data-testid=window]").count()).toBeGreaterThan(1)
      expect(await page.textContent("#traffic")).toMatch(/1 upload \(\d+ B\), 1 readback/)

      // typed: the same page (the model stays resident), another problem
      await page.fill("#prompt", tom)
      await page.selectOption("#mode", "sirius")
      await page.click("#run")
      await page.waitForFunction(() => document.body.dataset.status !== "done")
      const typed = await finished(page)
      expect(typed).toMatch(/The answer is 83\.\s*$/)
      expect(new URL(page.url()).searchParams.get("prompt")).toBe(tom)
      await page.close()
    })
  }

  it("cpu (gpu.js's JavaScript mode) gets the answer too, in full decoding", async () => {
    const page = await newPage()
    await page.goto(`${server.page}?prompt=${encodeURIComponent(ann)}&backend=cpu&mode=full&autorun=1`)
    expect(await finished(page)).toMatch(/The answer is 41\.\s*$/)
    await page.close()
  })

  it("a bad parameter ends in the error status with the message shown", async () => {
    const page = await newPage()
    await page.goto(`${server.page}?prompt=x&backend=cuda&autorun=1`)
    await page.waitForFunction(() => document.body.dataset.status === "error")
    expect(await page.textContent("[data-testid=error]")).toMatch(/backend: expected one of webgpu, webgl2, cpu, got "cuda"/)
    await page.close()
  })
})
