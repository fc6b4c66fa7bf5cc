/**
 * `node browser/demo/screenshot.ts [OUT.png] [--backend webgpu|webgl2|cpu]`: the README's picture of the demo.
 * Serves the demo, runs coarse Sirius at ρ = 0.4 (low enough that the full model rejects some drafts, so the
 * picture shows struck-through drafts and corrections) in Debian's chromium, and saves a screenshot of the
 * finished page (default docs/demo.png).
 */
import { parseArgs } from "node:util"
import { chromium } from "playwright-core"
import { startDemo } from "./serve.ts"
import { examplePrompt } from "./settings.ts"

const { values, positionals } = parseArgs({ options: { backend: { type: "string", default: "webgpu" } }, allowPositionals: true })
const out = positionals[0] ?? "docs/demo.png"
const server = await startDemo()
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--enable-unsafe-webgpu", "--no-sandbox", "--headless=new", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic"]
})
try {
  const page = await browser.newPage({ viewport: { width: 1360, height: 980 } })
  const query = new URLSearchParams({ prompt: examplePrompt, backend: values.backend, mode: "sirius", density: "0.4", autorun: "1" })
  await page.goto(`${server.page}?${query}`)
  await page.waitForFunction(() => document.body.dataset.status === "done" || document.body.dataset.status === "error", undefined, { timeout: 300_000 })
  await page.waitForTimeout(300) // the chart image
  await page.screenshot({ path: out, fullPage: true })
  process.stdout.write(`${out}: ${await page.evaluate(() => document.body.dataset.status)}, output ${JSON.stringify(await page.textContent("[data-testid=output]"))}\n`)
} finally {
  await browser.close()
  await server.close()
}
