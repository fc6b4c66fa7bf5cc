/**
 * Serve the demo: the page (html.ts) and the GPU benchmark's page (/bench, browser/bench/page.ts), their
 * bundles (through esbuild, built in memory at start), the bundled model (models/sirius-tiny-arith), the
 * paper table's chart and data (docs/results/) and the test problems (data/arith/test.jsonl), from
 * 127.0.0.1 with browser/server.ts's cross-origin isolation headers (COOP/COEP). Everything is local: the
 * page needs no network beyond this server.
 *
 * Not here: the command line (main.ts), what the page does (page.ts).
 */
import { existsSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { buildBundle } from "../build.ts"
import { serve, type StaticServer } from "../server.ts"
import { demoHtml } from "./html.ts"

const root = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url))

export const pageEntry = fileURLToPath(new URL("./page.ts", import.meta.url))
export const benchEntry = fileURLToPath(new URL("../bench/page.ts", import.meta.url))

/** The benchmark's page (browser/bench/page.ts): results as JSON in #results. */
export const benchHtml = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sirius-ts GPU benchmark</title><link rel="icon" href="data:,">
<style>body { font: 14px system-ui, sans-serif; margin: 20px; } pre { font: 12px ui-monospace, monospace; }</style></head>
<body data-status="idle"><h1>sirius-ts GPU benchmark</h1>
<p>Times the bundled model's forward passes on this browser's GPU (WebGPU and WebGL2, the pipeline and the per-op readback
baseline): a decode step, a 16-token verification, sparse decode steps, and Sirius against full decoding end to end.
<code>npm run bench:browser</code> prints the same as a table.</p>
<pre id="results"></pre><script type="module" src="/bench.js"></script></body></html>
`

export interface DemoServer extends StaticServer {
  /** The page's URL, e.g. http://127.0.0.1:8080/ */
  readonly page: string
}

/** The bundled model's paper-table results: scripts/paper-table.ts writes docs/results/NAME/ (older runs: docs/results/). */
const resultsDir = (): string => {
  const named = root("docs/results/sirius-tiny-arith")
  return existsSync(`${named}/accuracy-vs-density.svg`) ? named : root("docs/results")
}

/** Build the bundle and serve the demo on `port` (0: any free port). */
export const startDemo = async (options: { readonly port?: number; readonly host?: string } = {}): Promise<DemoServer> => {
  const [bundle, bench] = await Promise.all([buildBundle(pageEntry), buildBundle(benchEntry)])
  const server = await serve(
    { "/": demoHtml, "/index.html": demoHtml, "/demo.js": bundle, "/bench": benchHtml, "/bench.js": bench },
    { "/model/": root("models/sirius-tiny-arith"), "/results/": resultsDir(), "/data/": root("data/arith") },
    { port: options.port ?? 0, ...(options.host === undefined ? {} : { host: options.host }) }
  )
  return { ...server, page: `${server.url}/` }
}
