/**
 * The sparse and Sirius benchmark: on one model load (with the transposed down_proj), the time of a dense
 * decode step, of a sparse decode step per granularity, and of a k-token verification, and what they imply.
 *
 * - Sparse decode: bytes of weights one sparse step reads, the ideal speed-up (dense bytes / sparse bytes)
 *   and the measured one (dense ms / sparse ms), and their ratio (`fractionOfIdeal`).
 *   The per-request setup (coarse: gathering the kept neurons' weights) is reported apart (`setupMs`).
 * - Sirius: at a given AAL (e.g. from `sirius eval`), one period costs (k − 1) sparse steps + one k-token
 *   verification and advances AAL tokens: tokens/s = AAL / period time, relative to full decoding.
 * Coarse granularity is timed with a neuron set chosen by a real dense prefill (the Griffin statistic).
 */
import { Effect, type Layer } from "effect"
import { loadCheckpoint } from "../src/Checkpoint.ts"
import * as Forward from "../src/Forward.ts"
import type { Kernels } from "../src/Kernels.ts"
import * as KvCache from "../src/KvCache.ts"
import * as Model from "../src/Model.ts"
import { argmax } from "../src/Sampler.ts"
import * as Sparsity from "../src/Sparsity.ts"
import { bytesPerElement } from "../src/Tensor.ts"
import { weightBytesPerToken } from "./index.ts"
import { median } from "./bandwidth.ts"

export interface SparseBenchOptions {
  readonly modelDir: string
  readonly kernels: Layer.Layer<Kernels, unknown>
  readonly granularities: ReadonlyArray<"fine" | "coarse">
  readonly density: number
  readonly correctionPeriod: number
  /** AAL to project Sirius speed at (measured by `sirius eval`); default: k − 1 + 1 (every draft accepted). */
  readonly aal?: number
  /** Timed steps per measurement (default 12), after 3 untimed. */
  readonly tokens?: number
}

export interface SparseRow {
  readonly granularity: "fine" | "coarse"
  readonly density: number
  readonly parameterDensity: number
  readonly msPerToken: number
  readonly decodeTokensPerSecond: number
  /** Once per request, after the prefill: coarse gathers the kept neurons' weights (0 for fine). */
  readonly setupMs: number
  readonly weightBytesPerToken: number
  readonly idealSpeedup: number
  readonly speedup: number
  /** speedup / idealSpeedup (the issue-5 target: ≥ 0.9). */
  readonly fractionOfIdeal: number
  /** Sirius at `aal`: tokens/s and the ratio to full-model decoding. */
  readonly sirius: { readonly aal: number; readonly tokensPerSecond: number; readonly speedupOverFull: number }
}

export interface SparseBenchReport {
  readonly backend: string
  readonly denseMsPerToken: number
  readonly denseWeightBytesPerToken: number
  readonly correctionPeriod: number
  /** ms of one k-token verification forward, and its cost relative to one dense decode step. */
  readonly verifyMs: number
  readonly verifyCostRatio: number
  readonly rows: ReadonlyArray<SparseRow>
}

export const runSparseBench = async (options: SparseBenchOptions): Promise<SparseBenchReport> => {
  const tokens = options.tokens ?? 12
  const warmup = 3
  const k = options.correctionPeriod
  const checkpoint = await Effect.runPromise(loadCheckpoint(options.modelDir))
  const { config, weights } = checkpoint
  const prompt = Int32Array.from({ length: 16 }, (_, i) => (i * 7919 + 3) % config.vocabSize)
  const capacity = prompt.length + warmup + tokens + k + 1
  const denseBytes = weightBytesPerToken(weights)
  const element = bytesPerElement[weights.layers[0]!.gateProj.dtype]
  const P_mlp = 3 * config.hiddenSize * config.intermediateSize

  const measured = await Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const model = yield* Model.fromCheckpoint(checkpoint, { sparse: true })
        /** Median ms of decode steps with the request's sparse MLP, after its dense prefill. */
        const decode = (request: Sparsity.RequestMlp) =>
          Effect.gen(function* () {
            const cache = yield* KvCache.make(model.kernels, config, capacity)
            let logits = yield* Forward.forward(model, cache, prompt, 0, "last", request.prefill)
            const s0 = performance.now()
            const mlp = yield* request.sparse
            const setupMs = performance.now() - s0
            let pos = prompt.length
            const times: Array<number> = []
            for (let i = 0; i < warmup + tokens; i++) {
              const s = performance.now()
              logits = yield* Forward.forward(model, cache, Int32Array.of(argmax(logits)), pos++, "last", mlp)
              if (i >= warmup) times.push(performance.now() - s)
            }
            return { ms: median(times), setupMs, cache, pos }
          })
        const dense = yield* decode(Sparsity.denseRequest)
        // one k-token verification over the decoded positions (as Sirius does), median of 3 after 1; it is
        // dense whatever the drafts' granularity, so it is timed once
        const verify: Array<number> = []
        for (let rep = 0; rep < 4; rep++) {
          const s = performance.now()
          yield* Forward.forward(model, dense.cache, prompt.subarray(0, k), dense.pos - k, "all")
          if (rep > 0) verify.push(performance.now() - s)
        }
        const sparse: Array<{ granularity: "fine" | "coarse"; ms: number; setupMs: number }> = []
        for (const granularity of options.granularities) {
          // one request at a time: its coarse gathers are freed before the next
          const row = yield* Effect.scoped(
            Effect.flatMap(Effect.scope, (scope) => decode(Sparsity.requestMlp(model, { granularity, density: options.density }, scope)))
          )
          sparse.push({ granularity, ms: row.ms, setupMs: row.setupMs })
        }
        return { backend: model.kernels.name, dense: { ms: dense.ms, verifyMs: median(verify) }, sparse }
      })
    ).pipe(Effect.provide(options.kernels as Layer.Layer<Kernels, never>))
  )

  const kept = Sparsity.keptCount(config.intermediateSize, options.density) / config.intermediateSize
  const denseMs = measured.dense.ms
  const aal = options.aal ?? k
  const fullTokensPerSecond = 1000 / denseMs
  return {
    backend: measured.backend,
    denseMsPerToken: denseMs,
    denseWeightBytesPerToken: denseBytes,
    correctionPeriod: k,
    verifyMs: measured.dense.verifyMs,
    verifyCostRatio: measured.dense.verifyMs / denseMs,
    rows: measured.sparse.map(({ granularity, ms, setupMs }) => {
      const f = granularity === "coarse" ? kept : 1 / 3 + (2 / 3) * kept
      const bytes = denseBytes - (1 - f) * config.numHiddenLayers * P_mlp * element
      const idealSpeedup = denseBytes / bytes
      const speedup = denseMs / ms
      const siriusTokensPerSecond = (aal * 1000) / ((k - 1) * ms + measured.dense.verifyMs)
      return {
        granularity,
        density: options.density,
        parameterDensity: Sparsity.parameterDensity(config, granularity, kept),
        msPerToken: ms,
        decodeTokensPerSecond: 1000 / ms,
        setupMs,
        weightBytesPerToken: bytes,
        idealSpeedup,
        speedup,
        fractionOfIdeal: speedup / idealSpeedup,
        sirius: { aal, tokensPerSecond: siriusTokensPerSecond, speedupOverFull: siriusTokensPerSecond / fullTokensPerSecond }
      }
    })
  }
}
