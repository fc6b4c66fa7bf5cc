/**
 * Calibration of the CATS thresholds (fine-threshold granularity; docs/sirius.md): per layer, the
 * (1 − density)-quantile of |SiLU(W_gate·x)| over the calibration tokens, so that on that data a fraction
 * `density` of the MLP neurons stays active.
 *
 * Like CATS it works on a histogram, so memory stays bounded whatever the amount of calibration text: bins
 * are log-spaced over [1e-9, 1e4) (each bin spans a ratio of 10^(13/bins), 0.15% for the default 20,000),
 * with one underflow bin for smaller values. The threshold is the upper edge of the bin where the
 * cumulative fraction reaches 1 − density, so the achieved kept fraction differs from `density` by at most
 * the mass of that one bin.
 */
import { Effect } from "effect"
import * as Forward from "./Forward.ts"
import type { KernelError } from "./Kernels.ts"
import * as KvCache from "./KvCache.ts"
import type { Model } from "./Model.ts"
import { silu } from "./Sparsity.ts"

const LOG_MIN = -9
const LOG_MAX = 4

export interface CalibrationResult {
  readonly density: number
  readonly thresholds: ReadonlyArray<number>
  /** Kept fraction per layer on the calibration data with these thresholds (|a| > t), from the histogram. */
  readonly keptFraction: ReadonlyArray<number>
  readonly tokens: number
}

const binOf = (v: number, bins: number): number => {
  if (v < 10 ** LOG_MIN) return 0
  const b = 1 + Math.floor(((Math.log10(v) - LOG_MIN) / (LOG_MAX - LOG_MIN)) * (bins - 1))
  return Math.min(bins - 1, b)
}
const upperEdge = (b: number, bins: number): number => 10 ** (LOG_MIN + (b / (bins - 1)) * (LOG_MAX - LOG_MIN))

/** Calibrate on token sequences (each prefilled densely from position 0; at most maxPositionEmbeddings long). */
export const calibrate = Effect.fnUntraced(function* (model: Model, sequences: ReadonlyArray<ReadonlyArray<number>>, density: number, bins = 20_000) {
  const L = model.config.numHiddenLayers
  const hist = Array.from({ length: L }, () => new Float64Array(bins))
  let tokens = 0
  for (const seq of sequences) {
    if (seq.length === 0) continue
    tokens += seq.length
    // the gates of every layer come back to the host: calibration is an offline tool, run once per model
    const gates: Array<Float32Array | undefined> = []
    yield* Effect.scoped(
      Effect.flatMap(KvCache.make(model.kernels, model.config, seq.length), (cache) =>
        Forward.forward(model, cache, Int32Array.from(seq), 0, "last", { _tag: "DenseWithGates", gates })
      )
    )
    gates.forEach((gate, layer) => {
      const h = hist[layer]!
      for (const g of gate!) h[binOf(Math.abs(silu(g)), bins)]!++
    })
  }
  const thresholds: Array<number> = []
  const keptFraction: Array<number> = []
  for (const h of hist) {
    const total = h.reduce((a, b) => a + b, 0)
    let cum = 0
    let b = 0
    while (b < bins - 1 && cum + h[b]! < (1 - density) * total) cum += h[b++]!
    cum += h[b]!
    thresholds.push(upperEdge(b, bins))
    keptFraction.push(1 - cum / total)
  }
  return { density, thresholds, keptFraction, tokens } satisfies CalibrationResult
}) as (model: Model, sequences: ReadonlyArray<ReadonlyArray<number>>, density: number, bins?: number) => Effect.Effect<CalibrationResult, KernelError>
