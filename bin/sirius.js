#!/usr/bin/env node
// The `sirius` CLI entry: runs the compiled cli/main.ts (dist/ is built by `npm ci` through `prepare`).
import { existsSync } from "node:fs"

const main = new URL("../dist/cli/main.js", import.meta.url)
if (!existsSync(main)) {
  process.stderr.write("sirius: dist/ is missing; run `npm ci` (or `npm run build`) first\n")
  process.exit(1)
}
const { main: run } = await import(main.href)
process.exitCode = await run(process.argv.slice(2))
