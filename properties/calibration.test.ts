// CATS threshold calibration: the thresholds give the target sparsity on the calibration data.
import { Effect } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { ReferenceKernels, silu } from "../reference/index.ts"
import { calibrate } from "../src/Calibration.ts"
import * as Forward from "../src/Forward.ts"
import * as KvCache from "../src/KvCache.ts"
import * as Model from "../src/Model.ts"
import { randomWeights, shapes } from "../testing/RandomModel.ts"

describe("Calibration.calibrate", () => {
  it("on the calibration data, |silu(gate)| > t keeps the target fraction per layer", () =>
    fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 1000 }), fc.constantFrom(0.3, 0.5, 0.8), async (seed, density) => {
        const config = { ...shapes.tiny, intermediateSize: 256 }
        await Effect.runPromise(
          Effect.gen(function* () {
            const model = yield* Model.fromWeights(config, randomWeights(config, { seed }))
            const sequences = Array.from({ length: 4 }, (_, i) => Array.from({ length: 24 }, (_, t) => (seed * 7 + i * 31 + t * 13) % config.vocabSize))
            const result = yield* calibrate(model, sequences, density)
            // measure directly: count |silu(gate)| > t over the same tokens
            const kept = Array.from({ length: config.numHiddenLayers }, () => 0)
            let total = 0
            for (const seq of sequences) {
              const gates: Array<Float32Array | undefined> = []
              yield* Effect.scoped(
                Effect.flatMap(KvCache.make(model.kernels, config, seq.length), (cache) =>
                  Forward.forward(model, cache, Int32Array.from(seq), 0, "last", { _tag: "DenseWithGates", gates })
                )
              )
              gates.forEach((gate, l) => {
                if (l === 0) total += gate!.length
                for (const g of gate!) if (Math.abs(silu(g)) > result.thresholds[l]!) kept[l]!++
              })
            }
            // 96 tokens × 256 neurons = 24,576 activations per layer: continuous values have no ties, so the
            // only error is the mass of the quantile's histogram bin (ratio 1.0015 wide): well under 1%.
            kept.forEach((k, l) => expect(Math.abs(k / total - density), `layer ${l}`).toBeLessThan(0.01))
            result.keptFraction.forEach((f, l) => expect(f).toBeCloseTo(kept[l]! / total, 9))
          }).pipe(Effect.provide(ReferenceKernels.layer))
        )
      }),
      { numRuns: 6 }
    ))
})
