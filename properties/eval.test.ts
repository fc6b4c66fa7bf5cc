// Eval's answer rules: a task supplies its rule (a regex whose first group, at the last match, is the
// answer); a model directory declares it in eval.json; `sirius eval --answer-regex` overrides it.
import { Effect } from "effect"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { main } from "../cli/main.ts"
import * as Bundled from "../src/Bundled.ts"
import * as Eval from "../src/Eval.ts"

const run = async (...argv: Array<string>) => {
  let out = ""
  let err = ""
  const code = await main(argv, { out: (s) => void (out += s), err: (s) => void (err += s) })
  return { code, out, err }
}

describe("answer rules", () => {
  it("the last match's first group is the answer", async () => {
    const rule = await Effect.runPromise(Eval.answerRule("The answer is (-?\\d+)", "test"))
    expect(Eval.extractAnswer(rule, "3+4=7. The answer is 7. No wait, The answer is -12.")).toBe("-12")
    expect(Eval.extractAnswer(rule, "no answer here")).toBeUndefined()
    const boxed = await Effect.runPromise(Eval.answerRule("\\\\boxed\\{([^}]*)\\}", "test"))
    expect(Eval.extractAnswer(boxed, "so \\boxed{42}")).toBe("42")
  })

  it("a regex that does not compile or has no group is an EvalDataError naming where it came from", async () => {
    const bad = await Effect.runPromise(Effect.flip(Eval.answerRule("(unclosed", "--answer-regex")))
    expect(bad.message).toMatch(/^--answer-regex: answer_regex "\(unclosed" is not a valid regular expression/)
    const groupless = await Effect.runPromise(Effect.flip(Eval.answerRule("answer \\d+", "x/eval.json")))
    expect(groupless.message).toBe('x/eval.json: answer_regex "answer \\\\d+" has no capture group for the answer')
  })

  it("the bundled model declares its rule in eval.json; a malformed eval.json names the file", async () => {
    const rule = await Effect.runPromise(Eval.declaredRule(Bundled.modelDir))
    expect(rule?.pattern.source).toBe("The answer is (-?[0-9]+)")
    const dir = mkdtempSync(join(tmpdir(), "sirius-eval-"))
    expect(await Effect.runPromise(Eval.declaredRule(dir))).toBeUndefined()
    writeFileSync(join(dir, "eval.json"), JSON.stringify({ answer_pattern: "x" }))
    const e = await Effect.runPromise(Effect.flip(Eval.declaredRule(dir)))
    expect(e.message).toBe(`${join(dir, "eval.json")}: expected {"answer_regex": string}`)
  })
})

describe("sirius eval", () => {
  it("scores with the model's declared rule by default, and --answer-regex overrides it", async () => {
    const data = join(mkdtempSync(join(tmpdir(), "sirius-eval-")), "mini.jsonl")
    writeFileSync(
      data,
      [
        { prompt: "Q: Ann has 26 pens. She buys 13 more. She buys 2 more. How many pens now?\nA:", answer: "41" },
        { prompt: "Q: Tom has 23 apples. He buys 15 more. He gives away 9. How many apples now?\nA:", answer: "29" }
      ].map((p) => JSON.stringify(p)).join("\n")
    )
    const declared = await run("eval", "--data", data, "--json")
    expect(declared.code, declared.err).toBe(0)
    expect(JSON.parse(declared.out)).toMatchObject({ correct: 2, problems: 2, answerRule: "The answer is (-?[0-9]+)" })
    // the first number of the completion is an operand, not the answer: a different rule scores differently
    const first = await run("eval", "--data", data, "--answer-regex", "^ (\\d+)", "--json")
    expect(first.code, first.err).toBe(0)
    expect(JSON.parse(first.out)).toMatchObject({ correct: 0, answerRule: "^ (\\d+)" })
  })
})
