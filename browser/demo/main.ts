/**
 * `npm run demo [-- --port P] [--host H]`: serve the demo page (serve.ts) and print its URL on stdout;
 * runs until interrupted. Open the URL in a browser with WebGPU (or WebGL2): Chrome, Edge, or Chromium
 * with --enable-unsafe-webgpu on Linux.
 */
import { parseArgs } from "node:util"
import { startDemo } from "./serve.ts"

const usage = "usage: npm run demo [-- --port P] [--host H]   (default: a free port on 127.0.0.1)"
let port = 0
let host: string | undefined
try {
  const { values } = parseArgs({ options: { port: { type: "string" }, host: { type: "string" }, help: { type: "boolean" } }, strict: true })
  if (values.help === true) {
    process.stdout.write(`${usage}\n`)
    process.exit(0)
  }
  if (values.port !== undefined) {
    port = Number(values.port)
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port: expected an integer in [0, 65535], got ${JSON.stringify(values.port)}`)
  }
  host = values.host
} catch (e) {
  process.stderr.write(`${(e as Error).message}\n${usage}\n`)
  process.exit(2)
}

const server = await startDemo({ port, ...(host === undefined ? {} : { host }) })
process.stdout.write(`${server.page}\n`)
process.stderr.write("sirius-ts demo: serving the bundled model; Ctrl-C to stop\n")
const stop = () => void server.close().then(() => process.exit(0))
process.on("SIGINT", stop)
process.on("SIGTERM", stop)
