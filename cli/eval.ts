/**
 * `sirius eval`: accuracy of a generation mode on a JSONL problem set (default: the bundled test split),
 * with a progress bar on stderr and the aggregated Sirius stats.
 */
import { Effect } from "effect"
import { join } from "node:path"
import * as Eval from "../src/Eval.ts"
import { int, parse, UsageError } from "./args.ts"
import { backendLayer } from "./backends.ts"
import { generationFlags, loadModel, requestStream, settings } from "./generate.ts"
import { packageRoot } from "./root.ts"

export const usage = `sirius eval [--data FILE.jsonl] [--limit N] [--model DIR] [all generate flags] [--json]`

export const defaultDataFile = () => join(packageRoot(), "data", "arith", "test.jsonl")

export const run = (argv: ReadonlyArray<string>, io: { out: (s: string) => void; err: (s: string) => void; isTTY?: boolean }) => {
  const v = parse(argv, { ...generationFlags, data: { type: "string" }, limit: { type: "string" } })
  const s = settings(v)
  const limit = int("limit", v.limit, 1)
  const file = v.data ?? defaultDataFile()
  return Effect.gen(function* () {
    const problems = (yield* Eval.readProblems(file)).slice(0, limit ?? Infinity)
    const { checkpoint, model } = yield* loadModel(s)
    const tokenizer = checkpoint.tokenizer
    if (tokenizer === undefined) return yield* Effect.fail(new UsageError(`${s.dir} has no tokenizer.json`))
    const bar = (done: number, total: number, correct: number) => {
      const width = 30
      const filled = Math.round((done / total) * width)
      io.err(`\r[${"#".repeat(filled)}${".".repeat(width - filled)}] ${done}/${total} accuracy ${(correct / done).toFixed(3)}${done === total ? "\n" : ""}`)
    }
    const report = yield* Eval.evaluate(
      problems,
      (prompt) => Effect.flatMap(requestStream(s, checkpoint, model, tokenizer.encode(prompt)), Eval.outcomeOf),
      bar
    )
    const result = { data: file, mode: s.mode, granularity: s.granularity, density: s.density, policy: s.policy.name, backend: model.kernels.name, ...report }
    if (s.json) io.out(JSON.stringify(result) + "\n")
    else {
      const aal = report.aal === undefined ? "" : `, AAL ${report.aal.toFixed(2)}/${report.correctionPeriod}, effective density ${report.effectiveDensity.toFixed(3)}, ${report.rollbacks} rollbacks (mean ${report.meanRollbackLength.toFixed(2)}), corrected ${(100 * report.correctedFraction).toFixed(1)}%`
      io.out(`accuracy ${report.accuracy.toFixed(3)} (${report.correct}/${report.problems}), mode ${s.mode}, parameter density ${report.parameterDensity.toFixed(3)}${aal}, ${report.tokensPerSecond.toFixed(1)} tok/s\n`)
    }
  }).pipe(Effect.provide(backendLayer(s.backend, s.threads)))
}
