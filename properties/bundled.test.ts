// The bundled model (models/sirius-tiny-arith): it loads, its config validates, its tokenizer round-trips
// the task, a small eval reaches the model card's accuracy floor, and greedy-exact Sirius gives exactly the
// full model's answers. Plus the training script's smoke test (skipped, with the reason, without torch).
import { Effect } from "effect"
import { spawnSync } from "node:child_process"
import { describe, expect, it } from "vitest"
import { defaultDataFile } from "../cli/eval.ts"
import { defaultModelDir } from "../cli/root.ts"
import { SimdKernels } from "../simd/index.ts"
import { loadCheckpoint } from "../src/Checkpoint.ts"
import * as Eval from "../src/Eval.ts"
import * as Generation from "../src/Generation.ts"
import * as Model from "../src/Model.ts"
import * as Policy from "../src/Policy.ts"
import * as Sirius from "../src/Sirius.ts"

const N = 20
// The model card reports ≥ 90% on the whole test split; 20 problems at 90% would miss the floor below with
// probability < 1% (binomial), so a failure here means the engine, not sampling noise.
const accuracyFloor = 0.7

describe("the bundled model", () => {
  it("loads, validates and round-trips the task's text through its tokenizer", async () => {
    const checkpoint = await Effect.runPromise(loadCheckpoint(defaultModelDir()))
    expect(checkpoint.config.intermediateSize).toBeGreaterThanOrEqual(3 * checkpoint.config.hiddenSize)
    expect(checkpoint.tokenizer).toBeDefined()
    const problems = await Effect.runPromise(Eval.readProblems(defaultDataFile()))
    expect(problems.length).toBeGreaterThanOrEqual(100)
    for (const p of problems.slice(0, 50)) expect(checkpoint.tokenizer!.decode(checkpoint.tokenizer!.encode(p.prompt))).toBe(p.prompt)
  })

  it(`a ${N}-problem eval reaches the accuracy floor, and greedy-exact Sirius gives the full model's answers`, async () => {
    const program = Effect.gen(function* () {
      const checkpoint = yield* loadCheckpoint(defaultModelDir())
      const model = yield* Model.fromCheckpoint(checkpoint, { sparse: true })
      const tokenizer = checkpoint.tokenizer!
      const problems = (yield* Eval.readProblems(defaultDataFile())).slice(0, N)
      const rule = (yield* Eval.declaredRule(defaultModelDir()))!
      const base = (prompt: string) => ({ prompt: tokenizer.encode(prompt), maxNewTokens: 96, eosTokenIds: checkpoint.eosTokenIds, tokenizer })
      const full: Array<string> = []
      const report = yield* Eval.evaluate(problems, rule, (prompt) =>
        Eval.outcomeOf(Generation.generate(model, base(prompt))).pipe(Effect.tap((o) => Effect.sync(() => void full.push(o.text))))
      )
      expect(report.accuracy).toBeGreaterThanOrEqual(accuracyFloor)
      const sirius: Array<string> = []
      yield* Eval.evaluate(problems, rule, (prompt) =>
        Eval.outcomeOf(
          Sirius.generate(model, { ...base(prompt), sparsity: { granularity: "coarse", density: 0.5 }, correctionPeriod: 16, policy: Policy.greedyExact })
        ).pipe(Effect.tap((o) => Effect.sync(() => void sirius.push(o.text))))
      )
      expect(sirius).toEqual(full)
    })
    await Effect.runPromise(program.pipe(Effect.provide(SimdKernels.layer({ threads: 1 }))))
  })
})

describe("training/train.py", () => {
  const torch = spawnSync("/usr/bin/python3", ["-c", "import torch"], { encoding: "utf8" })
  const reason = torch.error !== undefined ? "no /usr/bin/python3" : torch.status !== 0 ? "Debian's python3-torch is not installed" : undefined
  if (reason !== undefined) console.log(`training smoke test skipped: ${reason}`)
  it.skipIf(reason !== undefined)("runs a few steps, evaluates and exports (--smoke)", () => {
    // fp32: bf16 autocast is emulated, ~25× slower, on CPUs without AVX-512 BF16 (the smoke test checks the code path, not the recipe)
    const run = spawnSync("/usr/bin/python3", ["training/train.py", "--smoke", "--bf16", "0"], { encoding: "utf8", timeout: 240_000, env: { ...process.env, OPENBLAS_NUM_THREADS: "1" } })
    expect(run.status, run.stderr.slice(-2000)).toBe(0)
  }, 250_000)
  it.skipIf(reason !== undefined)("trains the second task (tiny GSM, --task gsm --smoke): its tokenizer, 1-shot batches, evaluation and export", () => {
    const run = spawnSync("/usr/bin/python3", ["training/train.py", "--task", "gsm", "--smoke", "--bf16", "0"], { encoding: "utf8", timeout: 240_000, env: { ...process.env, OPENBLAS_NUM_THREADS: "1" } })
    expect(run.status, run.stderr.slice(-2000)).toBe(0)
    expect(run.stdout).toContain("task gsm")
  }, 250_000)
})
