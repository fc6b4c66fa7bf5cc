/**
 * The benchmark behind `sirius bench`: on one model directory, one backend and one thread count, in one
 * run it measures
 *
 *   - the machine's read bandwidth with the same thread count (bandwidth.ts), the decode roofline;
 *   - decode speed: one-token forward steps after a prefill and a warm-up, median step time;
 *   - the bytes of weights a decode step reads (from the stored dtypes), hence achieved GB/s and the
 *     fraction of the measured bandwidth;
 *   - the time of a k-token verification forward ("all" logits) relative to one decode step, k = 1, 4,
 *     8, 16 (what a Sirius correction costs);
 *   - optionally llama.cpp's decode speed on the same weights and threads (llamaCpp.ts).
 *
 * Figures are medians of several timed repetitions, because these machines are shared and noisy; the
 * report carries the load average before and after so a reader can tell a busy machine.
 *
 * Not here: the CLI (flags, printing), which only maps options onto `runBench` and prints the JSON.
 */
import { Effect, Layer } from "effect"
import { cpus, loadavg } from "node:os"
import { ReferenceKernels } from "../reference/index.ts"
import { SimdKernels } from "../simd/index.ts"
import { type Checkpoint, loadCheckpoint } from "../src/Checkpoint.ts"
import * as Forward from "../src/Forward.ts"
import { Kernels } from "../src/Kernels.ts"
import * as KvCache from "../src/KvCache.ts"
import * as Model from "../src/Model.ts"
import { argmax } from "../src/Sampler.ts"
import { bytesPerElement, numel, type RawTensor } from "../src/Tensor.ts"
import type { ModelWeights } from "../src/Weights.ts"
import { measureReadBandwidth, median } from "./bandwidth.ts"
import { describeFlags, readSimdFlags } from "./cpuFlags.ts"

export interface BenchOptions {
  readonly modelDir: string
  readonly backend: "reference" | "simd" | "gpu"
  readonly threads: number
  /** Timed decode steps (default 16; 4 for the reference backend). */
  readonly tokens?: number
  /** Verification window sizes (default [1, 4, 8, 16]). */
  readonly verifyK?: ReadonlyArray<number>
  readonly compareLlamaCpp?: boolean
  /**
   * The Kernels layer to run (required for "gpu", whose layer lives outside this library; optional
   * otherwise, e.g. to pass backend options).
   */
  readonly kernels?: Layer.Layer<Kernels, unknown>
  /** Timed repetitions of each verification window, after one untimed (default 3; 1 for the reference). */
  readonly verifyRepeats?: number
  /** Untimed decode steps before timing (default 4). */
  readonly warmup?: number
  /** Prompt length of the prefill before decoding (default 16). */
  readonly promptTokens?: number
  /** Bytes summed by the bandwidth probe (default 1 GiB). */
  readonly bandwidthBytes?: number
  /** Also time a prefill of this many tokens (and llama.cpp's, with compareLlamaCpp). */
  readonly prefillTokens?: number
}

export interface LlamaCppRow {
  readonly gguf: string
  readonly fileType: string
  readonly threads: number
  readonly decodeTokensPerSecond: number
  readonly msPerToken: number
  readonly weightBytesPerToken: number
  readonly achievedGBps: number
  readonly bandwidthFraction: number
  /** k → llama.cpp's k-token batch evaluation / its decode step (the same windows as the backend's). */
  readonly verifyCostRatio: Readonly<Record<string, number>>
  readonly verifyMs: Readonly<Record<string, number>>
  /** The prefill of `prefillTokens` tokens: ms and tokens/s. */
  readonly prefill?: { readonly tokens: number; readonly ms: number; readonly tokensPerSecond: number }
}

export interface BenchReport {
  readonly modelDir: string
  /** The Kernels backend that actually ran (its `name`), e.g. "simd(2 threads, bf16)". */
  readonly backend: string
  readonly threads: number
  readonly model: {
    readonly layers: number
    readonly hiddenSize: number
    readonly intermediateSize: number
    readonly vocabSize: number
    readonly weightDtypes: ReadonlyArray<string>
    readonly parameters: number
  }
  readonly machine: {
    readonly cpus: number
    readonly cpuModel: string
    /** The SIMD features the kernels' speed depends on (cpuFlags.ts); undefined where they cannot be read. */
    readonly cpuFlags: ReadonlyArray<string> | undefined
    readonly node: string
    readonly loadAverageBefore: ReadonlyArray<number>
    readonly loadAverageAfter: ReadonlyArray<number>
  }
  /** 10⁹ bytes/s summing a ≥ 1 GiB buffer on the same thread count. */
  readonly readBandwidthGBps: number
  readonly loadSeconds: number
  /** 1000 / median decode step (ms). */
  readonly decodeTokensPerSecond: number
  readonly msPerToken: number
  /** The fastest decode step (ms): on a shared, busy machine the closest to the unimpeded speed. */
  readonly bestMsPerToken: number
  /** Weight bytes one decode step reads: every layer matrix and norm, the final norm, lm_head, one embedding row. */
  readonly weightBytesPerToken: number
  /** weightBytesPerToken × decodeTokensPerSecond / 10⁹. */
  readonly achievedGBps: number
  /** achievedGBps / readBandwidthGBps. */
  readonly bandwidthFraction: number
  /** k → time of a k-token verification forward / time of one decode step. */
  readonly verifyCostRatio: Readonly<Record<string, number>>
  /** k → median ms of a k-token verification forward. */
  readonly verifyMs: Readonly<Record<string, number>>
  /** Every timed decode step (ms), for the curious. */
  readonly decodeStepsMs: ReadonlyArray<number>
  /** Multiply-adds of the matrices one token goes through (every layer matrix and lm_head). */
  readonly macsPerToken: number
  /** G MAC/s of a decode step (macsPerToken × tokens/s) and of the largest verification window, in total and per thread. */
  readonly gmacs: { readonly decode: number; readonly decodePerThread: number; readonly verify: number; readonly verifyPerThread: number }
  /** The prefill of `prefillTokens` tokens ("all"-free: last logits only): ms and tokens/s. */
  readonly prefill?: { readonly tokens: number; readonly ms: number; readonly tokensPerSecond: number }
  readonly llamaCpp?: LlamaCppRow
}

const bytesOf = (t: RawTensor): number => numel(t.shape) * bytesPerElement[t.dtype]

/** Bytes of weights read by one decode step (see BenchReport.weightBytesPerToken). */
export const weightBytesPerToken = (w: ModelWeights): number => {
  let total = 0
  for (const l of w.layers)
    for (const t of [l.inputLayernorm, l.qProj, l.kProj, l.vProj, l.oProj, l.postAttentionLayernorm, l.gateProj, l.upProj, l.downProj]) total += bytesOf(t)
  total += bytesOf(w.norm) + bytesOf(w.lmHead)
  total += w.embedTokens.shape[1]! * bytesPerElement[w.embedTokens.dtype] // one row
  return total
}

/** Multiply-adds one token goes through: every layer matrix and lm_head (the embedding is a lookup). */
export const macsPerToken = (w: ModelWeights): number => {
  let n = numel(w.lmHead.shape)
  for (const l of w.layers) for (const t of [l.qProj, l.kProj, l.vProj, l.oProj, l.gateProj, l.upProj, l.downProj]) n += numel(t.shape)
  return n
}

const parameters = (w: ModelWeights): number => {
  let n = numel(w.embedTokens.shape) + numel(w.norm.shape) + (w.lmHead === w.embedTokens ? 0 : numel(w.lmHead.shape))
  for (const l of w.layers)
    for (const t of [l.inputLayernorm, l.qProj, l.kProj, l.vProj, l.oProj, l.postAttentionLayernorm, l.gateProj, l.upProj, l.downProj]) n += numel(t.shape)
  return n
}

const kernelsLayer = (options: BenchOptions): Layer.Layer<Kernels, unknown> => {
  if (options.kernels) return options.kernels
  switch (options.backend) {
    case "reference":
      return ReferenceKernels.layer
    case "simd":
      return SimdKernels.layer({ threads: options.threads })
    case "gpu":
      throw new Error("bench: the gpu backend needs its Kernels layer passed as options.kernels")
  }
}

/** A deterministic prompt of n ids inside the vocabulary (ids 3.. avoid the usual special tokens). */
const promptIds = (n: number, vocab: number): Array<number> => Array.from({ length: n }, (_, i) => 3 + ((i * 7919) % Math.max(1, vocab - 3)))

/**
 * Run the benchmark. Resolves to the report; rejects on a load or kernel failure.
 *
 * @example
 * const report = await runBench({ modelDir: "models/tinyllama-bf16", backend: "simd", threads: 2 })
 * report.decodeTokensPerSecond // => e.g. 25.3
 */
export const runBench = async (options: BenchOptions): Promise<BenchReport> => {
  const threads = options.threads
  const verifyK = options.verifyK ?? [1, 4, 8, 16]
  const warmup = options.warmup ?? 4
  const tokens = options.tokens ?? (options.backend === "reference" ? 4 : 16)
  const promptLength = options.promptTokens ?? 16
  const verifyRepeats = options.verifyRepeats ?? (options.backend === "reference" ? 1 : 3)
  const loadAverageBefore = loadavg()

  // 1. The roofline, before the model takes memory.
  const bandwidth = await measureReadBandwidth({ threads, ...(options.bandwidthBytes ? { bytes: options.bandwidthBytes } : {}) })

  // 2. The model on the backend, decode, verification.
  const checkpoint: Checkpoint = await Effect.runPromise(loadCheckpoint(options.modelDir))
  const { config, weights } = checkpoint
  const prompt = promptIds(promptLength, config.vocabSize)
  const maxK = Math.max(1, ...verifyK)
  const capacity = promptLength + warmup + tokens + maxK + 1

  const measured = await Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const t0 = performance.now()
        const model = yield* Model.fromCheckpoint(checkpoint)
        const loadSeconds = (performance.now() - t0) / 1000
        const cache = yield* KvCache.make(model.kernels, config, capacity)
        let logits = yield* Forward.forward(model, cache, Int32Array.from(prompt), 0, "last")
        let pos = prompt.length
        const steps: Array<number> = []
        for (let i = 0; i < warmup + tokens; i++) {
          const next = argmax(logits)
          const s = performance.now()
          logits = yield* Forward.forward(model, cache, Int32Array.of(next), pos++, "last")
          if (i >= warmup) steps.push(performance.now() - s)
        }
        // Verification windows overwrite slots pos..pos+k−1 (as Sirius does): one untimed run, then
        // `verifyRepeats` timed ones, median.
        const verifyMs: Record<string, number> = {}
        const window = Int32Array.from({ length: maxK }, (_, i) => prompt[i % prompt.length]!)
        for (const k of verifyK) {
          const times: Array<number> = []
          for (let rep = 0; rep <= verifyRepeats; rep++) {
            KvCache.truncate(cache, pos)
            const s = performance.now()
            yield* Forward.forward(model, cache, window.subarray(0, k), pos, "all")
            if (rep > 0) times.push(performance.now() - s)
          }
          verifyMs[String(k)] = median(times)
        }
        KvCache.truncate(cache, pos)
        // the prefill of a long prompt into a fresh cache (last logits only, as generation does)
        let prefillMs: number | undefined
        if (options.prefillTokens !== undefined) {
          const long = Int32Array.from(promptIds(options.prefillTokens, config.vocabSize))
          const fresh = yield* KvCache.make(model.kernels, config, long.length + 1)
          const s = performance.now()
          yield* Forward.forward(model, fresh, long, 0, "last")
          prefillMs = performance.now() - s
        }
        return { name: model.kernels.name, loadSeconds, steps, verifyMs, prefillMs }
      })
    ).pipe(Effect.provide(kernelsLayer(options) as Layer.Layer<Kernels, never>))
  )

  const msPerToken = median(measured.steps)
  const decodeTokensPerSecond = 1000 / msPerToken
  const bytesPerToken = weightBytesPerToken(weights)
  const achievedGBps = (bytesPerToken * decodeTokensPerSecond) / 1e9
  const verifyCostRatio = Object.fromEntries(Object.entries(measured.verifyMs).map(([k, ms]) => [k, ms / msPerToken]))

  // 3. llama.cpp on the same weights (the weights of a 16-bit checkpoint are read at the same bytes/token).
  let llamaCpp: LlamaCppRow | undefined
  if (options.compareLlamaCpp) {
    // node-llama-cpp is an optional peer dependency: load it only for this row
    const { llamaCppDecode } = await import("./llamaCpp.ts").catch((e: unknown) => {
      throw new Error(`--compare-llama-cpp needs the optional package node-llama-cpp (npm install node-llama-cpp): ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`)
    })
    const row = await llamaCppDecode(checkpoint, {
      threads,
      tokens,
      warmup,
      prompt,
      batches: verifyK.filter((k) => k <= prompt.length),
      vocabSize: config.vocabSize,
      ...(options.prefillTokens === undefined ? {} : { prefillTokens: options.prefillTokens })
    })
    const bytes = weightBytesPerToken(weights) * (row.fileType === weights.embedTokens.dtype ? 1 : bytesPerElement[row.fileType] / bytesPerElement[weights.embedTokens.dtype])
    const gbps = (bytes * row.decodeTokensPerSecond) / 1e9
    llamaCpp = {
      gguf: row.gguf,
      fileType: row.fileType,
      threads,
      decodeTokensPerSecond: row.decodeTokensPerSecond,
      msPerToken: row.msPerToken,
      weightBytesPerToken: bytes,
      achievedGBps: gbps,
      bandwidthFraction: gbps / bandwidth.readBandwidthGBps,
      verifyCostRatio: Object.fromEntries(Object.entries(row.batchMs).map(([k, ms]) => [k, ms / row.msPerToken])),
      verifyMs: row.batchMs,
      ...(row.prefillMs === undefined ? {} : { prefill: { tokens: options.prefillTokens!, ms: row.prefillMs, tokensPerSecond: (1000 * options.prefillTokens!) / row.prefillMs } })
    }
  }

  const cpu = cpus()
  return {
    modelDir: options.modelDir,
    backend: measured.name,
    threads,
    model: {
      layers: config.numHiddenLayers,
      hiddenSize: config.hiddenSize,
      intermediateSize: config.intermediateSize,
      vocabSize: config.vocabSize,
      weightDtypes: [...new Set([weights.embedTokens.dtype, ...weights.layers.flatMap((l) => [l.qProj.dtype, l.gateProj.dtype])])],
      parameters: parameters(weights)
    },
    machine: {
      cpus: cpu.length,
      cpuModel: cpu[0]?.model ?? "unknown",
      cpuFlags: readSimdFlags(),
      node: process.version,
      loadAverageBefore,
      loadAverageAfter: loadavg()
    },
    readBandwidthGBps: bandwidth.readBandwidthGBps,
    loadSeconds: measured.loadSeconds,
    decodeTokensPerSecond,
    msPerToken,
    bestMsPerToken: Math.min(...measured.steps),
    weightBytesPerToken: bytesPerToken,
    achievedGBps,
    bandwidthFraction: achievedGBps / bandwidth.readBandwidthGBps,
    verifyCostRatio,
    verifyMs: measured.verifyMs,
    decodeStepsMs: measured.steps,
    macsPerToken: macsPerToken(weights),
    gmacs: (() => {
      const macs = macsPerToken(weights)
      const k = Math.max(...verifyK)
      const decode = (macs * decodeTokensPerSecond) / 1e9
      const verify = (macs * k) / (measured.verifyMs[String(k)]! * 1e6)
      return { decode, decodePerThread: decode / threads, verify, verifyPerThread: verify / threads }
    })(),
    ...(measured.prefillMs === undefined ? {} : { prefill: { tokens: options.prefillTokens!, ms: measured.prefillMs, tokensPerSecond: (1000 * options.prefillTokens!) / measured.prefillMs } }),
    ...(llamaCpp ? { llamaCpp } : {})
  }
}

/** A short human-readable summary of a report (the CLI prints this without --json). */
/** 1.06 M, 1.10 B, 950 K, 48: a parameter count at a readable scale. */
export const formatCount = (n: number): string =>
  n >= 1e9 ? `${(n / 1e9).toFixed(2)} B` : n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} K` : String(n)

export const formatReport = (r: BenchReport): string => {
  const f = (x: number, d = 1) => x.toFixed(d)
  const lines = [
    `${r.modelDir}: ${r.model.layers} layers, ${formatCount(r.model.parameters)} parameters, ${r.model.weightDtypes.join("+")}`,
    `machine: ${r.machine.cpus}× ${r.machine.cpuModel} (${describeFlags(r.machine.cpuFlags)}), node ${r.machine.node}, load ${r.machine.loadAverageBefore.map((x) => f(x, 2)).join(" ")}`,
    `read bandwidth (${r.threads} thread${r.threads === 1 ? "" : "s"}): ${f(r.readBandwidthGBps)} GB/s`,
    `${r.backend}: ${f(r.decodeTokensPerSecond, 2)} tok/s (${f(r.msPerToken)} ms/token), ${f(r.weightBytesPerToken / 1e9, 2)} GB/token, ${f(r.achievedGBps)} GB/s = ${f(100 * r.bandwidthFraction)}% of read bandwidth`,
    `verification / decode step: ${Object.entries(r.verifyCostRatio).map(([k, v]) => `k=${k} ${f(v, 2)}×`).join(", ")}`,
    `matrices: ${f(r.gmacs.decode)} G MAC/s decoding (${f(r.gmacs.decodePerThread)} per thread), ${f(r.gmacs.verify)} verifying (${f(r.gmacs.verifyPerThread)} per thread)`
  ]
  if (r.prefill) lines.push(`prefill of ${r.prefill.tokens} tokens: ${f(r.prefill.ms / 1000, 2)} s (${f(r.prefill.tokensPerSecond)} tok/s)`)
  if (r.llamaCpp)
    lines.push(
      `llama.cpp (${r.llamaCpp.fileType} GGUF, ${r.llamaCpp.threads} threads): ${f(r.llamaCpp.decodeTokensPerSecond, 2)} tok/s, ${f(r.llamaCpp.achievedGBps)} GB/s = ${f(100 * r.llamaCpp.bandwidthFraction)}% of read bandwidth`,
      `llama.cpp batch / decode step: ${Object.entries(r.llamaCpp.verifyCostRatio).map(([k, v]) => `k=${k} ${f(v, 2)}×`).join(", ")}`
    )
  if (r.llamaCpp?.prefill) lines.push(`llama.cpp prefill of ${r.llamaCpp.prefill.tokens} tokens: ${f(r.llamaCpp.prefill.ms / 1000, 2)} s (${f(r.llamaCpp.prefill.tokensPerSecond)} tok/s)`)
  return lines.join("\n")
}
