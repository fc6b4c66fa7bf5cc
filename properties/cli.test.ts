// The `sirius` CLI end to end through its main(): one JSON object on stdout, one-line errors with exit codes.
import { Effect } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { main } from "../cli/main.ts"
import { randomWeights, shapes, writeHfCheckpoint } from "../src/RandomModel.ts"

const run = async (...argv: Array<string>) => {
  let out = ""
  let err = ""
  const code = await main(argv, { out: (s) => void (out += s), err: (s) => void (err += s) })
  return { code, out, err }
}

const dir = mkdtempSync(join(tmpdir(), "sirius-cli-"))
beforeAll(() => Effect.runPromise(writeHfCheckpoint(dir, shapes.tiny, randomWeights(shapes.tiny, { seed: 5 }))))

describe("sirius generate", () => {
  it("--json prints exactly one object with the generated ids, text, stop reason and stats", async () => {
    for (const mode of ["full", "sparse", "sirius"]) {
      const r = await run("generate", "--model", dir, "--prompt-ids", "1,2,3", "--max-tokens", "6", "--mode", mode, "--period", "4", "--json")
      expect(r.code).toBe(0)
      const lines = r.out.trim().split("\n")
      expect(lines).toHaveLength(1)
      const json = JSON.parse(lines[0]!)
      expect(json.tokens).toHaveLength(6)
      expect(json.stopReason).toBe("length")
      expect(json.text).toBe("") // no tokenizer.json in this directory
      expect(json.stats.parameterDensity).toBeGreaterThan(0)
      if (mode === "sirius") expect(json.stats).toHaveProperty("aal")
    }
  })

  it("the bundled model answers a task prompt (default --model)", async () => {
    const r = await run("generate", "--prompt", "Q: Ann has 26 pens. She buys 13 more. She buys 2 more. How many pens now?\nA:", "--mode", "sirius", "--json")
    expect(r.code).toBe(0)
    const json = JSON.parse(r.out)
    expect(json.text).toContain("The answer is 41.")
    expect(json.stopReason).toBe("eos")
  })

  it("bad flags: one line, exit 2", async () => {
    for (const argv of [
      ["generate", "--bogus"],
      ["generate", "--model", dir, "--prompt-ids", "1,x"],
      ["generate", "--model", dir, "--prompt-ids", "1", "--max-tokens", "0"],
      ["generate", "--model", dir, "--prompt-ids", "1", "--mode", "turbo"],
      ["generate", "--model", dir],
      ["nonsense"]
    ]) {
      const r = await run(...argv)
      expect(r.code, argv.join(" ")).toBe(2)
      expect(r.out).toBe("")
      expect(r.err.trim().split("\n")[0]).toMatch(/sirius: /)
    }
  })

  it("a bad checkpoint or request: one line naming what is wrong, exit 1", async () => {
    const missing = await run("generate", "--model", join(dir, "nope"), "--prompt-ids", "1")
    expect(missing.code).toBe(1)
    expect(missing.err).toContain("nope")
    const text = await run("generate", "--model", dir, "--prompt", "hello")
    expect(text.code).toBe(2)
    expect(text.err).toContain("tokenizer.json")
    const range = await run("generate", "--model", dir, "--prompt-ids", "99999")
    expect(range.code).toBe(1)
    expect(range.err).toContain("GenerationError")
  })
})
