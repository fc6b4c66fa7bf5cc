/**
 * The library in a few lines: load the bundled model, run a Sirius request as an Effect Stream, print
 * the committed text as it arrives (corrections in brackets), then the request's stats.
 *
 * Run: npm run build && node dist/examples/quick-start.js
 */
import { Effect, Stream } from "effect"
import { defaultModelDir } from "../cli/root.ts"
import { SimdKernels } from "../simd/index.ts"
import { loadCheckpoint } from "../src/Checkpoint.ts"
import * as Model from "../src/Model.ts"
import * as Sirius from "../src/Sirius.ts"

const program = Effect.gen(function* () {
  const checkpoint = yield* loadCheckpoint(defaultModelDir())
  const model = yield* Model.fromCheckpoint(checkpoint) // coarse sparsity needs no transposed down_proj
  const tokenizer = checkpoint.tokenizer!
  yield* Sirius.generate(model, {
    prompt: tokenizer.encode("Q: Tom has 23 apples. He buys 15 more. He gives away 9. How many apples now?\nA:"),
    maxNewTokens: 96,
    eosTokenIds: checkpoint.eosTokenIds,
    tokenizer,
    sparsity: { granularity: "coarse", density: 0.5 },
    correctionPeriod: 16
  }).pipe(
    Stream.runForEach((event) =>
      Effect.sync(() => {
        if (event._tag === "Committed") process.stdout.write(event.source === "correction" ? `[${event.text}]` : event.text)
        if (event._tag === "Finished") console.log(`\nAAL ${event.stats.aal.toFixed(2)}/16, effective density ${event.stats.effectiveDensity.toFixed(3)}`)
      })
    )
  )
})

await Effect.runPromise(program.pipe(Effect.provide(SimdKernels.layer({ threads: 2 }))))
