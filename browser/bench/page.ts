/**
 * The GPU benchmark's page script (bundled by browser/demo/serve.ts, served at /bench): on whatever GPU the
 * browser finds, it times the bundled model's forward passes on the gpu backends and reports what Sirius's
 * speed depends on:
 *   - decode: one full-model forward of one token (median of `steps`);
 *   - verify: one full-model forward of k tokens (a Sirius verification; median of 3), and its ratio to a
 *     decode step: Sirius pays when this ratio is near 1 (weight-bound), not near k (compute-bound);
 *   - sparse decode, coarse and fine (ρ = 0.5), and their ratios to a dense decode step;
 *   - end to end: full greedy decoding against coarse Sirius (k = 16) on one problem, tokens/s;
 *   - the transfers and kernel launches of a decode forward (the pipeline's records; the host path's
 *     counters over one forward), and the bytes a KV write re-emits on the device.
 * Each backend runs as the pipeline and, for comparison, as the host path (a readback per op).
 *
 * `?autorun=1[&backends=webgpu,webgl2][&steps=12][&host=1]` runs at once; the result is JSON in
 * `#results` and `document.body.dataset.status` becomes "done" (bench/browser.ts reads it).
 *
 * Not here: printing the table (bench/browser.ts), the engine (src/).
 */
import { Effect, Stream } from "effect"
import { GpuKernels, type GpuKernelsShape, type GpuMode } from "../../gpu/index.ts"
import * as Traffic from "../../gpu/Traffic.ts"
import type { Checkpoint } from "../../src/Checkpoint.ts"
import * as Client from "../../src/Client.ts"
import * as Forward from "../../src/Forward.ts"
import { Kernels, type KernelsShape } from "../../src/Kernels.ts"
import * as KvCache from "../../src/KvCache.ts"
import * as Model from "../../src/Model.ts"
import * as Sparsity from "../../src/Sparsity.ts"
import { loadCheckpointFromUrl } from "../load.ts"

export interface BenchOptions {
  readonly backends: ReadonlyArray<string>
  /** Also run each backend as the host path (the baseline). */
  readonly host: boolean
  /** Decode steps timed per measurement (median). */
  readonly steps: number
  /** Tokens per verification (Sirius's k). */
  readonly k: number
  readonly prompt: string
  readonly maxNewTokens: number
}

export interface TrafficRow {
  readonly uploads: number
  readonly uploadBytes: number
  readonly readbacks: number
  readonly readbackBytes: number
  readonly dispatches: number
}

export interface BenchRow {
  readonly backend: string
  readonly pipeline: boolean
  readonly adapter: string
  readonly promptTokens: number
  readonly compileMs: number
  readonly decodeMs: number
  readonly verifyMs: number
  readonly coarseMs: number
  readonly fineMs: number
  readonly fullTokensPerSecond: number
  readonly siriusTokensPerSecond: number
  readonly siriusAal: number
  readonly decodeTraffic: TrafficRow
  readonly verifyTraffic: TrafficRow
  /** Bytes a decode forward's KV writes move on the device (every layer's K and V buffer read and written). */
  readonly kvReemitBytes: number
  /** Bytes of weights a dense decode forward reads (f32 on the device). */
  readonly weightBytes: number
}

export const defaultOptions: BenchOptions = {
  backends: ["webgpu", "webgl2"],
  host: true,
  steps: 12,
  k: 16,
  prompt: "Q: Ann has 26 pens. She buys 13 more. She buys 2 more. How many pens now?\nA:",
  maxNewTokens: 48
}

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

const delta = (a: Traffic.Counts, b: Traffic.Counts): TrafficRow => ({
  uploads: Traffic.uploads(b) - Traffic.uploads(a),
  uploadBytes: b.inputBytes + b.residentBytes - a.inputBytes - a.residentBytes,
  readbacks: b.readbacks - a.readbacks,
  readbackBytes: b.readbackBytes - a.readbackBytes,
  dispatches: b.dispatches - a.dispatches
})

/** Time one forward pass and count what it moved. */
const timed = <A, E, R>(k: GpuKernelsShape, forward: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const before = { ...k.runtime.traffic.total }
    const t0 = performance.now()
    yield* forward
    const ms = performance.now() - t0
    return { ms, traffic: delta(before, k.runtime.traffic.total) }
  })

const adapterName = async (mode: string): Promise<string> => {
  try {
    if (mode === "webgpu") {
      const gpu = (navigator as unknown as { gpu?: { requestAdapter: () => Promise<{ info?: { vendor?: string; architecture?: string; description?: string } } | null> } }).gpu
      const a = await gpu?.requestAdapter()
      const info = a?.info
      return info === undefined ? "unknown" : [info.vendor, info.architecture, info.description].filter((s) => s !== undefined && s !== "").join(" ") || "unknown"
    }
    const gl = document.createElement("canvas").getContext("webgl2")
    const ext = gl?.getExtension("WEBGL_debug_renderer_info")
    return gl === null || gl === undefined ? "unknown" : String(ext ? gl.getParameter(ext.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER))
  } catch {
    return "unknown"
  }
}

const benchBackend = (c: Checkpoint, mode: string, pipeline: boolean, o: BenchOptions) =>
  Effect.scoped(
    Effect.gen(function* () {
      const k = yield* GpuKernels.make({ mode: mode as GpuMode, pipeline })
      const provide = <A, E>(e: Effect.Effect<A, E, Kernels>) => Effect.provideService(e, Kernels, k as KernelsShape)
      const model = yield* provide(Model.fromCheckpoint(c, { sparse: true }))
      const config = c.config
      const prompt = Int32Array.from(c.tokenizer!.encode(o.prompt))
      const P = prompt.length
      const capacity = P + o.steps + o.k + 2
      const scope = yield* Effect.scope
      const coarseMlp = Sparsity.requestMlp(model, { granularity: "coarse", density: 0.5 }, scope)
      const cache = yield* KvCache.make(k, config, capacity)
      // the prefill compiles the kernels, and records coarse sparsity's statistic
      const t0 = performance.now()
      yield* Forward.forward(model, cache, prompt, 0, "last", coarseMlp.prefill)
      const compileMs = performance.now() - t0
      const coarse = yield* coarseMlp.sparse
      const fine: Forward.Mlp = { _tag: "Fine", keep: Sparsity.keptCount(config.intermediateSize, 0.5) }

      const decodes = (mlp: Forward.Mlp) =>
        Effect.gen(function* () {
          const runs: Array<{ ms: number; traffic: TrafficRow }> = []
          for (let i = 0; i < o.steps + 2; i++) {
            KvCache.truncate(cache, P + i)
            runs.push(yield* timed(k, Forward.forward(model, cache, Int32Array.of(5), P + i, "last", mlp)))
          }
          return { ms: median(runs.slice(2).map((r) => r.ms)), traffic: runs.at(-1)!.traffic } // the first two warm up
        })
      const dense = yield* decodes(Forward.dense)
      const coarseRun = yield* decodes(coarse)
      const fineRun = yield* decodes(fine)
      const verifies: Array<{ ms: number; traffic: TrafficRow }> = []
      for (let i = 0; i < 4; i++) {
        KvCache.truncate(cache, P)
        verifies.push(yield* timed(k, Forward.forward(model, cache, Int32Array.from({ length: o.k }, () => 5), P, "all")))
      }

      // end to end: full greedy decoding, then coarse Sirius, on the same problem
      const run = (request: Client.Request) =>
        Effect.map(Stream.runCollect(Client.requestStream(c, model, request)), (events) => {
          const last = Array.from(events).at(-1)!
          if (last._tag !== "Finished") throw new Error("no Finished event")
          return last.stats as { tokensPerSecond: number; aal?: number }
        })
      const full = yield* run({ prompt: o.prompt, maxNewTokens: o.maxNewTokens })
      const sirius = yield* run({ prompt: o.prompt, maxNewTokens: o.maxNewTokens, mode: "sirius", sparsity: { granularity: "coarse", density: 0.5 }, correctionPeriod: o.k })

      const kvDim = config.numKeyValueHeads * config.headDim
      const weightBytes =
        4 *
        (config.numHiddenLayers * (2 * config.hiddenSize * config.numAttentionHeads * config.headDim + 2 * config.hiddenSize * kvDim + 3 * config.hiddenSize * config.intermediateSize) +
          config.vocabSize * config.hiddenSize)
      const row: BenchRow = {
        backend: k.name,
        pipeline,
        adapter: yield* Effect.promise(() => adapterName(mode)),
        promptTokens: P,
        compileMs,
        decodeMs: dense.ms,
        verifyMs: median(verifies.slice(1).map((r) => r.ms)),
        coarseMs: coarseRun.ms,
        fineMs: fineRun.ms,
        fullTokensPerSecond: full.tokensPerSecond,
        siriusTokensPerSecond: sirius.tokensPerSecond,
        siriusAal: sirius.aal ?? 0,
        decodeTraffic: dense.traffic,
        verifyTraffic: verifies.at(-1)!.traffic,
        // a pipeline KV write re-emits the layer's K and V buffers: capacity slots read and written
        kvReemitBytes: pipeline ? config.numHiddenLayers * 2 * capacity * kvDim * 4 * 2 : 0,
        weightBytes
      }
      return row
    })
  )

/** Run the benchmark on every backend asked for (each as the pipeline, and the host path when `host`). */
export const runBench = (options: Partial<BenchOptions> = {}): Promise<ReadonlyArray<BenchRow>> => {
  const o = { ...defaultOptions, ...options }
  return Effect.runPromise(
    Effect.gen(function* () {
      const c = yield* loadCheckpointFromUrl("/model/")
      const rows: Array<BenchRow> = []
      for (const mode of o.backends) {
        rows.push(yield* benchBackend(c, mode, true, o))
        if (o.host) rows.push(yield* benchBackend(c, mode, false, o))
      }
      return rows
    })
  )
}

const main = async () => {
  const params = new URLSearchParams(location.search)
  ;(globalThis as { siriusBench?: unknown }).siriusBench = { runBench }
  const results = document.getElementById("results")!
  if (params.get("autorun") !== "1") {
    results.textContent = "add ?autorun=1 to run (options: backends=webgpu,webgl2 steps=12 host=0|1)"
    return
  }
  document.body.dataset.status = "running"
  results.textContent = "running…"
  try {
    const rows = await runBench({
      ...(params.get("backends") === null ? {} : { backends: params.get("backends")!.split(",") }),
      ...(params.get("steps") === null ? {} : { steps: Number(params.get("steps")) }),
      ...(params.get("host") === null ? {} : { host: params.get("host") === "1" })
    })
    results.textContent = JSON.stringify(rows, null, 2)
    document.body.dataset.status = "done"
  } catch (e) {
    results.textContent = `error: ${e instanceof Error ? e.message : String(e)}`
    document.body.dataset.status = "error"
  }
}

void main()
