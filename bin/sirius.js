#!/usr/bin/env node
// The `sirius` CLI entry: runs the compiled cli/main.ts (dist/ ships in the package; in a clone `npm ci`
// builds it through `prepare`).
import { existsSync } from "node:fs"

const [major, minor] = process.versions.node.split(".").map(Number)
if (major < 22 || (major === 22 && minor < 19)) {
  process.stderr.write(`sirius: needs Node ≥ 22.19 (Node 24 LTS recommended); this is Node ${process.versions.node}\n`)
  process.exit(1)
}
const main = new URL("../dist/cli/main.js", import.meta.url)
if (!existsSync(main)) {
  process.stderr.write("sirius: dist/ is missing; run `npm ci` (or `npm run build`) first\n")
  process.exit(1)
}
const { main: run } = await import(main.href)
process.exitCode = await run(process.argv.slice(2))
