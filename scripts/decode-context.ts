/**
 * decode-context: decode speed at several context lengths, and the host ↔ backend bytes per decoded token.
 *
 *   npm run build
 *   node dist/scripts/decode-context.js --model DIR [--contexts 16,1024] [--tokens 8] [--threads 2]
 *
 * For each context c: a fresh KV cache, a dense prefill of c tokens (timed: prompt tokens/s), then `tokens`
 * decode steps (median ms). On the simd backend it also prints the bytes copied between host memory and the
 * wasm memory per decode step (runtime.traffic): the token's position in, the logits out. One process,
 * contexts interleaved twice, so the machine's drift hits every context alike.
 */
import { Effect } from "effect"
import { parseArgs } from "node:util"
import { SimdKernels } from "../simd/index.ts"
import { loadCheckpoint } from "../src/Checkpoint.ts"
import * as Forward from "../src/Forward.ts"
import * as KvCache from "../src/KvCache.ts"
import * as Model from "../src/Model.ts"
import { argmax } from "../src/Sampler.ts"

const { values } = parseArgs({ options: { model: { type: "string" }, contexts: { type: "string" }, tokens: { type: "string" }, threads: { type: "string" } } })
if (values.model === undefined) throw new Error("--model DIR is required")
const contexts = (values.contexts ?? "16,1024").split(",").map(Number)
const steps = Number(values.tokens ?? 8)
const threads = Number(values.threads ?? 2)
const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

const program = Effect.gen(function* () {
  const checkpoint = yield* loadCheckpoint(values.model!)
  const model = yield* Model.fromCheckpoint(checkpoint)
  const k = model.kernels as typeof model.kernels & { runtime?: { traffic: { toWasm: number; fromWasm: number } } }
  const V = checkpoint.config.vocabSize
  const rows: Record<number, { prefillMs: Array<number>; stepMs: Array<number>; bytesIn: Array<number>; bytesOut: Array<number> }> = {}
  for (const round of [0, 1])
    for (const c of contexts) {
      const row = (rows[c] ??= { prefillMs: [], stepMs: [], bytesIn: [], bytesOut: [] })
      yield* Effect.scoped(
        Effect.gen(function* () {
          const cache = yield* KvCache.make(k, checkpoint.config, c + steps + 1)
          const prompt = Int32Array.from({ length: c }, (_, i) => (i * 7919 + 13) % V)
          const t0 = performance.now()
          let logits = yield* Forward.forward(model, cache, prompt, 0, "last")
          row.prefillMs.push(performance.now() - t0)
          for (let i = 0; i < steps; i++) {
            const before = k.runtime === undefined ? undefined : { ...k.runtime.traffic }
            const s = performance.now()
            logits = yield* Forward.forward(model, cache, Int32Array.of(argmax(logits)), c + i, "last")
            row.stepMs.push(performance.now() - s)
            if (before !== undefined) {
              row.bytesIn.push(k.runtime!.traffic.toWasm - before.toWasm)
              row.bytesOut.push(k.runtime!.traffic.fromWasm - before.fromWasm)
            }
          }
        })
      )
      process.stderr.write(`round ${round} context ${c} done\n`)
    }
  const base = median(rows[contexts[0]!]!.stepMs)
  console.log(`${model.kernels.name}, ${checkpoint.config.numHiddenLayers} layers, vocab ${V}, ${steps} decode steps × 2 rounds per context`)
  for (const c of contexts) {
    const r = rows[c]!
    const ms = median(r.stepMs)
    console.log(
      `context ${String(c).padStart(5)}: prefill ${(c / (median(r.prefillMs) / 1000)).toFixed(1)} tok/s, decode ${ms.toFixed(1)} ms/token (${(1000 / ms).toFixed(2)} tok/s) = ${((100 * base) / ms).toFixed(1)}% of context ${contexts[0]}'s speed` +
        (r.bytesIn.length > 0 ? `, per decoded token ${median(r.bytesIn)} B in, ${median(r.bytesOut)} B out` : "")
    )
  }
})

await Effect.runPromise(program.pipe(Effect.provide(SimdKernels.layer({ threads }))))
