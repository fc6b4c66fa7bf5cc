/**
 * A user-written correction policy: verify early when the sparse model is unsure.
 *
 * Sirius verifies every `correctionPeriod` tokens. This policy also verifies as soon as the sparse model's
 * next-token entropy exceeds a bound, so an uncertain draft (where sparse models derail on arithmetic) is
 * checked before more drafts are built on it. It keeps Sirius's threshold acceptance.
 *
 * Run: npm run build && node dist/examples/entropy-policy.js [--limit 40] [--max-entropy 0.5]
 * It evaluates the bundled model on the first problems of its test split, with and without the policy,
 * and prints accuracy, AAL, effective density and the number of full-model passes.
 */
import { Effect } from "effect"
import { parseArgs } from "node:util"
import { defaultDataFile } from "../cli/eval.ts"
import { defaultModelDir } from "../cli/root.ts"
import { ReferenceKernels } from "../reference/index.ts"
import { loadCheckpoint } from "../src/Checkpoint.ts"
import * as Eval from "../src/Eval.ts"
import * as Model from "../src/Model.ts"
import * as Policy from "../src/Policy.ts"
import * as Sirius from "../src/Sirius.ts"

/** `base`, plus an early verification whenever the sparse model's entropy (nats) exceeds `maxEntropy`. */
export const verifyWhenUnsure = (base: Policy.CorrectionPolicy, maxEntropy: number): Policy.CorrectionPolicy => ({
  ...base,
  name: `${base.name}+verify-when-entropy>${maxEntropy}`,
  verifyEarly: (ctx) => base.verifyEarly(ctx) || Policy.entropy(ctx.sparseLogits) > maxEntropy
})

const main = async () => {
  const { values } = parseArgs({ options: { limit: { type: "string" }, "max-entropy": { type: "string" } } })
  const limit = Number(values.limit ?? 40)
  const maxEntropy = Number(values["max-entropy"] ?? 0.5)
  const program = Effect.gen(function* () {
    const checkpoint = yield* loadCheckpoint(defaultModelDir())
    const model = yield* Model.fromCheckpoint(checkpoint, { sparse: true })
    const problems = (yield* Eval.readProblems(defaultDataFile())).slice(0, limit)
    const rule = (yield* Eval.declaredRule(defaultModelDir()))!
    for (const policy of [Policy.threshold(0.1), verifyWhenUnsure(Policy.threshold(0.1), maxEntropy)]) {
      let fullPasses = 0
      const report = yield* Eval.evaluate(problems, rule, (prompt) =>
        Eval.outcomeOf(
          Sirius.generate(model, {
            prompt: checkpoint.tokenizer!.encode(prompt),
            maxNewTokens: 96,
            eosTokenIds: checkpoint.eosTokenIds,
            tokenizer: checkpoint.tokenizer,
            sparsity: { granularity: "coarse", density: 0.5 },
            correctionPeriod: 16,
            policy
          })
        ).pipe(Effect.tap((o) => Effect.sync(() => void (fullPasses += o.stats.fullForwards))))
      )
      console.log(
        `${policy.name.padEnd(40)} accuracy ${report.accuracy.toFixed(3)}  AAL ${report.aal?.toFixed(2)}/16  effective density ${report.effectiveDensity.toFixed(3)}  full passes ${fullPasses}`
      )
    }
  })
  await Effect.runPromise(program.pipe(Effect.provide(ReferenceKernels.layer)))
}

if (import.meta.url === `file://${process.argv[1]}`) await main()
