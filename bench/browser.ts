/**
 * `npm run bench:browser`: the GPU benchmark (browser/bench/page.ts) in chromium, printed as a table with
 * the ratios Sirius depends on. It serves the demo (browser/demo/serve.ts), opens `/bench?autorun=1` in
 * chromium through playwright-core, and reads the page's JSON.
 *
 *   npm run bench:browser [-- --backends webgpu,webgl2] [--steps 12] [--no-host] [--json]
 *                         [--chromium /usr/bin/chromium] [--headed] [--flag --use-angle=vulkan ...]
 *
 * On a machine without a GPU chromium runs WebGPU on SwiftShader (a CPU emulation): the ratios then show
 * what a compute-bound device does, not a GPU; the README says what to expect on a real one. On a machine
 * with a GPU, pass the flags your chromium needs to use it (e.g. `--headed`, or `--flag --enable-features=Vulkan`),
 * or serve the demo (`npm run demo`) and open /bench?autorun=1 in your own browser.
 */
import { loadavg } from "node:os"
import { parseArgs } from "node:util"
import { chromium } from "playwright-core"
import type { BenchRow } from "../browser/bench/page.ts"
import { startDemo } from "../browser/demo/serve.ts"

const { values } = parseArgs({
  options: {
    backends: { type: "string", default: "webgpu,webgl2" },
    steps: { type: "string", default: "12" },
    "no-host": { type: "boolean" },
    json: { type: "boolean" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
    headed: { type: "boolean" },
    flag: { type: "string", multiple: true }
  },
  strict: true
})

const server = await startDemo()
const browser = await chromium.launch({
  executablePath: values.chromium,
  headless: values.headed !== true,
  args: [
    "--enable-unsafe-webgpu",
    "--no-sandbox",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    ...(values.headed === true ? [] : ["--headless=new"]),
    ...(values.flag ?? [])
  ]
})
const load = loadavg()[0]!
try {
  const page = await browser.newPage()
  const query = new URLSearchParams({ autorun: "1", backends: values.backends, steps: values.steps, host: values["no-host"] === true ? "0" : "1" })
  await page.goto(`${server.url}/bench?${query}`)
  await page.waitForFunction(() => document.body.dataset.status === "done" || document.body.dataset.status === "error", undefined, { timeout: 30 * 60_000 })
  const text = (await page.textContent("#results")) ?? ""
  if ((await page.evaluate(() => document.body.dataset.status)) !== "done") throw new Error(text)
  const rows = JSON.parse(text) as ReadonlyArray<BenchRow>
  if (values.json === true) process.stdout.write(`${JSON.stringify({ loadAverage: [load, loadavg()[0]], rows }, null, 2)}\n`)
  else print(rows)
} finally {
  await browser.close()
  await server.close()
}

function print(rows: ReadonlyArray<BenchRow>): void {
  const out = (s: string) => process.stdout.write(`${s}\n`)
  const f = (n: number, d = 1) => n.toFixed(d)
  const kb = (n: number) => (n < 10_000 ? `${n} B` : `${(n / 1024).toFixed(0)} KiB`)
  out(`sirius-ts GPU benchmark: bundled model (sirius-tiny-arith), prompt ${rows[0]?.promptTokens ?? 0} tokens; load average ${f(load, 2)} → ${f(loadavg()[0]!, 2)}`)
  for (const r of rows) {
    out("")
    out(`${r.backend} on ${r.adapter}${r.pipeline ? "" : "  (baseline: every op read back)"}`)
    out(`  compile + prefill      ${f(r.compileMs, 0)} ms`)
    out(`  decode step            ${f(r.decodeMs)} ms   (${f(1000 / r.decodeMs)} tokens/s)`)
    out(`  16-token verification  ${f(r.verifyMs)} ms   = ${f(r.verifyMs / r.decodeMs, 2)} × a decode step  (Sirius pays near 1, not near 16)`)
    out(`  coarse decode (ρ 0.5)  ${f(r.coarseMs)} ms   = ${f(r.coarseMs / r.decodeMs, 2)} × dense`)
    out(`  fine decode (ρ 0.5)    ${f(r.fineMs)} ms   = ${f(r.fineMs / r.decodeMs, 2)} × dense`)
    out(`  end to end             full ${f(r.fullTokensPerSecond)} tokens/s, coarse Sirius k=16 ${f(r.siriusTokensPerSecond)} tokens/s (AAL ${f(r.siriusAal, 2)}): ${f(r.siriusTokensPerSecond / r.fullTokensPerSecond, 2)} × full`)
    const d = r.decodeTraffic
    out(`  a decode forward       ${d.uploads} uploads (${kb(d.uploadBytes)}), ${d.readbacks} readbacks (${kb(d.readbackBytes)}), ${d.dispatches} kernel launches; weights read ${kb(r.weightBytes)}${r.pipeline ? `, KV re-emitted ${kb(r.kvReemitBytes)}` : ""}`)
    const v = r.verifyTraffic
    out(`  a verification forward ${v.uploads} uploads (${kb(v.uploadBytes)}), ${v.readbacks} readbacks (${kb(v.readbackBytes)}), ${v.dispatches} kernel launches`)
  }
  const pairs = rows.filter((r) => r.pipeline).map((p) => [p, rows.find((h) => !h.pipeline && h.backend.startsWith(p.backend))] as const)
  if (pairs.some(([, h]) => h !== undefined)) {
    out("")
    for (const [p, h] of pairs) if (h !== undefined) out(`pipeline vs per-op readback on ${p.backend}: decode ${f(h.decodeMs / p.decodeMs, 2)}× faster, verification ${f(h.verifyMs / p.verifyMs, 2)}× faster`)
  }
}
