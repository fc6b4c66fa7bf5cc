/**
 * `sirius eval`: accuracy of a generation mode on a JSONL problem set (default: the bundled test split),
 * with a progress bar on stderr and the aggregated Sirius stats.
 */
import { Effect } from "effect"
import { join } from "node:path"
import * as Eval from "../src/Eval.ts"
import { type Flags, int, parse, UsageError } from "./args.ts"
import { backendLayer } from "./backends.ts"
import { generationFlags, type Io, loadModel, requestStream, settings } from "./generate.ts"
import { packageRoot } from "./root.ts"

export const summary = "Accuracy of a generation mode on a JSONL set of problems, with Sirius's stats."
export const usage = `sirius eval [--data FILE.jsonl] [--limit N] [--model DIR] [--answer-regex REGEX] [generation flags]`

export const flags = {
  ...generationFlags,
  data: { type: "string", value: "FILE.jsonl", help: 'problems, one {"prompt", "answer"} object per line', default: "the bundled test split data/arith/test.jsonl" },
  limit: { type: "string", value: "N", help: "evaluate the first N problems", default: "all" },
  "answer-regex": { type: "string", value: "REGEX", help: "how to read the answer: the first group of the regex's last match", default: "the model directory's eval.json" }
} as const satisfies Flags

export const defaultDataFile = () => join(packageRoot(), "data", "arith", "test.jsonl")

export const run = (argv: ReadonlyArray<string>, io: Io) => {
  const v = parse(argv, flags)
  const s = settings(v)
  const limit = int("limit", v.limit, 1)
  const file = v.data ?? defaultDataFile()
  return Effect.gen(function* () {
    const problems = (yield* Eval.readProblems(file)).slice(0, limit ?? Infinity)
    const rule =
      v["answer-regex"] !== undefined
        ? yield* Eval.answerRule(v["answer-regex"], "--answer-regex")
        : yield* Eval.declaredRule(s.dir)
    if (rule === undefined)
      return yield* Effect.fail(new UsageError(`${s.dir} declares no answer rule (eval.json with "answer_regex"): pass --answer-regex REGEX`))
    const { checkpoint, model } = yield* loadModel(s, io)
    if (checkpoint.tokenizer === undefined) return yield* Effect.fail(new UsageError(`eval needs the model's tokenizer, and ${s.dir} has no tokenizer.json`))
    const bar = (done: number, total: number, correct: number) => {
      const width = 30
      const filled = Math.round((done / total) * width)
      io.err(`\r[${"#".repeat(filled)}${".".repeat(width - filled)}] ${done}/${total} accuracy ${(correct / done).toFixed(3)}${done === total ? "\n" : ""}`)
    }
    const report = yield* Eval.evaluate(problems, rule, (prompt) => Effect.flatMap(requestStream(s, checkpoint, model, { prompt }), Eval.outcomeOf), bar)
    const result = { data: file, answerRule: rule.pattern.source, mode: s.mode, granularity: s.granularity, density: s.density, policy: s.policy.name, backend: model.kernels.name, ...report }
    if (s.json) io.out(JSON.stringify(result) + "\n")
    else {
      const aal =
        report.aal === undefined
          ? ""
          : `, AAL ${report.aal.toFixed(2)}/${report.correctionPeriod}, effective density ${report.effectiveDensity.toFixed(3)}, ${report.rollbacks} rollbacks (mean ${report.meanRollbackLength.toFixed(2)}), corrected ${(100 * report.correctedFraction).toFixed(1)}%`
      io.out(`accuracy ${report.accuracy.toFixed(3)} (${report.correct}/${report.problems}), mode ${s.mode}, parameter density ${report.parameterDensity.toFixed(3)}${aal}, ${report.tokensPerSecond.toFixed(1)} tok/s\n`)
    }
  }).pipe(Effect.provide(backendLayer(s.backend, s.threads)))
}
