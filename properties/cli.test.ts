// The `sirius` CLI end to end through its main(): one JSON object on stdout, per-command help, one-line
// errors with exit codes (2: usage, 1: a failure while running), each asserted word for word.
import { Effect } from "effect"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { describeFlags, simdFlags } from "../bench/cpuFlags.ts"
import { formatCount } from "../bench/index.ts"
import { main } from "../cli/main.ts"
import { randomWeights, shapes, writeHfCheckpoint } from "../testing/RandomModel.ts"

const run = async (...argv: Array<string>) => {
  let out = ""
  let err = ""
  const code = await main(argv, { out: (s) => void (out += s), err: (s) => void (err += s) })
  return { code, out, err }
}

const dir = mkdtempSync(join(tmpdir(), "sirius-cli-"))
beforeAll(() => Effect.runPromise(writeHfCheckpoint(dir, shapes.tiny, randomWeights(shapes.tiny, { seed: 5 }))))

/** A usage error: exit 2, nothing on stdout, exactly this one line on stderr. */
const expectUsage = async (argv: Array<string>, message: string) => {
  const r = await run(...argv)
  expect(r.code, argv.join(" ")).toBe(2)
  expect(r.out).toBe("")
  expect(r.err).toBe(`sirius: error: ${message}\n`)
}

describe("sirius generate", () => {
  it("--json prints exactly one object with the generated ids, text, stop reason and stats", async () => {
    for (const [mode, ...extra] of [["full"], ["sparse", "--density", "0.5"], ["sirius", "--period", "4"]] as const) {
      const r = await run("generate", "--model", dir, "--prompt-ids", "1,2,3", "--max-tokens", "6", "--mode", mode, ...extra, "--json")
      expect(r.code, r.err).toBe(0)
      const lines = r.out.trim().split("\n")
      expect(lines).toHaveLength(1)
      const json = JSON.parse(lines[0]!)
      expect(json.tokens).toHaveLength(6)
      expect(json.stopReason).toBe("length")
      expect(json.text).toBe("") // no tokenizer.json in this directory
      expect(json.stats.parameterDensity).toBeGreaterThan(0)
      expect(json.stats.backend).toMatch(/^simd\(/) // the default backend is the fast one
      if (mode === "sirius") expect(json.stats).toHaveProperty("aal")
    }
  })

  it("the bundled model answers a task prompt (default --model)", async () => {
    const r = await run("generate", "--prompt", "Q: Ann has 26 pens. She buys 13 more. She buys 2 more. How many pens now?\nA:", "--mode", "sirius", "--json")
    expect(r.code, r.err).toBe(0)
    const json = JSON.parse(r.out)
    expect(json.text).toContain("The answer is 41.")
    expect(json.stopReason).toBe("eos")
  })

  it("--chat: the prompt is one user message through the model's template (the bundled model's is the Q/A fallback); only the answer is printed", async () => {
    const question = "Ann has 26 pens. She buys 13 more. She buys 2 more. How many pens now?"
    const chat = await run("generate", "--prompt", question, "--chat")
    const plain = await run("generate", "--prompt", `Q: ${question}\nA:`)
    expect(chat.code, chat.err).toBe(0)
    expect(chat.out).toContain("The answer is 41.")
    expect(`Q: ${question}\nA:${chat.out}`).toBe(plain.out)
    const json = JSON.parse((await run("generate", "--prompt", question, "--chat", "--max-tokens", "24", "--json")).out)
    expect(json.stats.promptTokens).toBe(JSON.parse((await run("generate", "--prompt", `Q: ${question}\nA:`, "--max-tokens", "24", "--json")).out).stats.promptTokens)
    await expectUsage(["generate", "--model", dir, "--prompt-ids", "1", "--chat"], "--chat applies to --prompt (a user message as text), not --prompt-ids")
  })

  it("bad flags: one line naming the flag, exit 2", async () => {
    await expectUsage(["generate", "--bogus"], `unknown flag '--bogus'`)
    await expectUsage(["generate", "--model", dir, "--prompt-ids", "1,x"], `--prompt-ids must be comma-separated token ids, e.g. 1,2,3 (got "1,x")`)
    await expectUsage(["generate", "--model", dir, "--prompt-ids", "1", "--max-tokens", "0"], `--max-tokens must be an integer ≥ 1 (got "0")`)
    await expectUsage(["generate", "--model", dir, "--prompt-ids", "1", "--max-tokens", "-1"], `--max-tokens must be an integer ≥ 1 (got "-1")`)
    await expectUsage(["generate", "--model", dir, "--prompt-ids", "1", "--mode", "turbo"], `--mode must be one of full, sparse, sirius (got "turbo")`)
    await expectUsage(["generate", "--model", dir], "give exactly one of --prompt or --prompt-ids")
  })

  it("a flag that does not apply to the chosen mode is an error, not silently ignored", async () => {
    const base = ["generate", "--model", dir, "--prompt-ids", "1"]
    await expectUsage([...base, "--period", "4"], "--period applies to --mode sirius, not full")
    await expectUsage([...base, "--density", "0.3"], "--density applies to --mode sparse or sirius, not full")
    await expectUsage([...base, "--mode", "sparse", "--tree-width", "2"], "--tree-width applies to --mode sirius, not sparse")
    await expectUsage([...base, "--top-k", "5"], "--top-k applies only when sampling (--temperature > 0); at temperature 0 decoding is greedy")
    await expectUsage([...base, "--mode", "sirius", "--acceptance", "greedy-exact", "--threshold", "0.2"], "--threshold applies to --acceptance threshold, not greedy-exact")
    await expectUsage([...base, "--backend", "reference", "--threads", "2"], "--threads applies to --backend simd, not reference")
    await expectUsage(
      [...base, "--mode", "sirius", "--acceptance", "speculative", "--tree-width", "4"],
      "--acceptance speculative samples its own drafts, which tree drafting cannot honour: use --tree-width 1, or --acceptance greedy-exact or threshold"
    )
  })

  it("--backend gpu runs a real GPU or fails naming every backend it tried, never a CPU mode", async () => {
    const r = await run("generate", "--model", dir, "--prompt-ids", "1", "--max-tokens", "2", "--backend", "gpu", "--json")
    if (r.code === 0) expect(JSON.parse(r.out).stats.backend).toMatch(/^gpu:(webgpu|headlessgl|webgl2|webgl)$/)
    else {
      expect(r.code).toBe(1)
      expect(r.out).toBe("")
      expect(r.err).toMatch(/^sirius: error: BackendUnavailableError: backend "gpu" is unavailable: no GPU backend runs here; tried webgpu \(.*\), headlessgl \(.*\), webgl2 \(.*\), webgl \(.*\)\n$/)
    }
  })

  it("a bad model path or request: one line naming what is wrong, exit 1, and the prompt is not echoed first", async () => {
    const missing = join(dir, "nope")
    const m = await run("generate", "--model", missing, "--prompt-ids", "1")
    expect(m.code).toBe(1)
    expect(m.err).toBe(
      `sirius: error: CheckpointError: ${missing}: no such file or directory; expected a model directory (HF layout: config.json and model.safetensors or model.safetensors.index.json) or a .gguf file\n`
    )
    const file = join(dir, "config.json")
    const f = await run("generate", "--model", file, "--prompt-ids", "1")
    expect(f.code).toBe(1)
    expect(f.err).toMatch(new RegExp(`^sirius: error: CheckpointError: ${file}: a file of \\d+ bytes, not a model; expected a model directory`))
    const text = await run("generate", "--model", dir, "--prompt", "hello")
    expect(text.code).toBe(2)
    expect(text.err).toBe(`sirius: error: --prompt needs the model's tokenizer, and ${dir} has no tokenizer.json: use --prompt-ids\n`)
    const range = await run("generate", "--model", dir, "--prompt-ids", "99999")
    expect(range.code).toBe(1)
    expect(range.err).toBe(`sirius: error: GenerationError: prompt: token id 99999 is outside the vocabulary [0, ${shapes.tiny.vocabSize})\n`)
    const long = await run("generate", "--prompt", "Q: Tom has 23 apples.\nA:", "--max-tokens", "300")
    expect(long.code).toBe(1)
    expect(long.out).toBe("")
    expect(long.err).toMatch(/^sirius: error: GenerationError: maxNewTokens: the prompt \(\d+ tokens\) \+ max new tokens \(300\) exceeds the model's context of 256 \(max_position_embeddings\)\n$/)
  })

  it("--help prints the command's flags and defaults; --version the package version", async () => {
    for (const command of ["generate", "eval", "calibrate", "bench", "serve"]) {
      const r = await run(command, "--help")
      expect(r.code).toBe(0)
      expect(r.out).toMatch(new RegExp(`^.*\\n\\nusage: sirius ${command}`))
      expect(r.out).toContain("--model DIR")
    }
    const g = await run("generate", "--help")
    expect(g.out).toMatch(/--backend simd\|reference\|gpu.* compute backend \[default: simd\]/)
    expect(g.out).toMatch(/--period k +\(sirius\) tokens per verification window \[default: 16\]/)
    const v = await run("--version")
    expect(v).toEqual({ code: 0, out: `${JSON.parse(readFileSync("package.json", "utf8")).version}\n`, err: "" })
    const overview = await run("--help")
    expect(overview.code).toBe(0)
    expect(overview.out).toContain("generate")
    const unknown = await run("nonsense")
    expect(unknown).toEqual({ code: 2, out: "", err: `sirius: unknown command "nonsense" (commands: generate, eval, calibrate, bench, quantize, serve; sirius --help)\n` })
  })
})

describe("sirius serve", () => {
  it("--help lists the server's flags beside the generation defaults (no --json)", async () => {
    const r = await run("serve", "--help")
    expect(r.out).toMatch(/--port PORT +port to listen on; 0 picks a free one \(printed\) \[default: 8080\]/)
    expect(r.out).toMatch(/--parallel N .*\[default: 4\]/)
    expect(r.out).toMatch(/--queue M .*\[default: 32\]/)
    expect(r.out).toMatch(/--mode full\|sparse\|sirius/)
    expect(r.out).not.toContain("--json")
  })

  it("bad flags: one line naming the flag, exit 2, before anything listens", async () => {
    await expectUsage(["serve", "--port", "70000"], `--port must be an integer in [0, 65535] (got "70000")`)
    await expectUsage(["serve", "--parallel", "0"], `--parallel must be an integer in [1, 4096] (got "0")`)
    await expectUsage(["serve", "--queue", "-1"], `--queue must be an integer in [0, 1000000] (got "-1")`)
    await expectUsage(["serve", "--json"], `unknown flag '--json'`)
    await expectUsage(["serve", "--api-key", " "], `--api-key must not be empty`)
    await expectUsage(
      ["serve", "--tree-width", "2", "--acceptance", "speculative"],
      `--acceptance speculative samples its own drafts, which tree drafting cannot honour: use --tree-width 1, or --acceptance greedy-exact or threshold`
    )
    // per-request defaults: a Sirius flag is accepted whatever --mode is (requests choose their mode)
    const help = await run("serve", "--period", "8", "--help")
    expect(help.code).toBe(0)
  })
})

describe("sirius bench", () => {
  it("prints parameter counts at a readable scale", () => {
    expect(formatCount(1_064_320)).toBe("1.06 M")
    expect(formatCount(1_100_048_384)).toBe("1.10 B")
    expect(formatCount(48_000)).toBe("48.0 K")
    expect(formatCount(48)).toBe("48")
  })

  it("names the CPU's SIMD features, VNNI's absence included", () => {
    const zen3 = "processor\t: 0\nflags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c bmi1 avx2 bmi2 vaes\n\nflags\t: ignored"
    expect(simdFlags(zen3)).toEqual(["sse4_1", "avx", "avx2", "fma", "f16c"])
    expect(describeFlags(simdFlags(zen3))).toBe("sse4_1 avx avx2 fma f16c; no VNNI")
    const spr = "flags : avx avx2 fma f16c avx512f avx512bw avx512_vnni avx512_bf16 amx_int8 avx_vnni"
    expect(describeFlags(simdFlags(spr))).toBe("avx avx2 fma f16c avx_vnni avx512f avx512bw avx512_vnni avx512_bf16 amx_int8")
    expect(describeFlags(simdFlags("Features\t: fp asimd evtstrm aes asimddp i8mm sve"))).toBe("asimd asimddp i8mm sve")
    expect(simdFlags("no such line")).toEqual([])
    expect(describeFlags(undefined)).toBe("flags unknown")
  })

  it("a sparsity-only flag without --sparsity is an error", async () => {
    await expectUsage(["bench", "--density", "0.4"], "--density applies with --sparsity")
  })
})
