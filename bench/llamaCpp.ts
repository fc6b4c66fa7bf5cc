/**
 * llama.cpp's decode speed on the same weights, through node-llama-cpp, for the `--compare-llama-cpp`
 * row of the benchmark: CPU only, the same thread count, F16 KV cache, flash attention off (the setup
 * of docs/measurements.md), decode only — the time between consecutive generated tokens after a warm-up,
 * median of the steps.
 */
import { existsSync } from "node:fs"
import { join } from "node:path"
import { getLlama, LlamaLogLevel } from "node-llama-cpp"
import type { Token } from "node-llama-cpp"
import { writeGguf } from "../src/Gguf.ts"
import type { Checkpoint } from "../src/Checkpoint.ts"
import type { DType } from "../src/Tensor.ts"
import { median } from "./bandwidth.ts"

export interface LlamaCppDecode {
  readonly gguf: string
  /** True when the bench wrote the GGUF in this run. */
  readonly wrote: boolean
  readonly fileType: DType
  readonly decodeTokensPerSecond: number
  readonly msPerToken: number
  readonly stepsMs: ReadonlyArray<number>
  /** k → median ms of evaluating a k-token batch after the context (llama.cpp's verification cost). */
  readonly batchMs: Readonly<Record<string, number>>
}

/**
 * The GGUF of the checkpoint: `DIR/model.gguf` (what scripts/make-bench-model.ts --gguf writes), written
 * with src/Gguf.ts if absent, in the checkpoint's 16-bit dtype (F32 checkpoints are written as F16 so
 * llama.cpp reads the same bytes per weight as a 16-bit sirius-ts model would; the row says which).
 */
export const ensureGguf = (checkpoint: Checkpoint): { path: string; wrote: boolean; fileType: DType } => {
  const path = join(checkpoint.dir, "model.gguf")
  const dtype = checkpoint.weights.embedTokens.dtype
  const fileType: DType = dtype === "F32" ? "F16" : dtype
  if (existsSync(path)) return { path, wrote: false, fileType }
  writeGguf(path, checkpoint.config, checkpoint.weights, { fileType, name: "sirius-ts bench" })
  return { path, wrote: true, fileType }
}

export const llamaCppDecode = async (
  checkpoint: Checkpoint,
  options: {
    readonly threads: number
    readonly tokens: number
    readonly warmup: number
    readonly prompt: ReadonlyArray<number>
    /** Batch sizes to time (default none). */
    readonly batches?: ReadonlyArray<number>
  }
): Promise<LlamaCppDecode> => {
  const { path, wrote, fileType } = ensureGguf(checkpoint)
  const llama = await getLlama({ gpu: false, maxThreads: options.threads, logLevel: LlamaLogLevel.error })
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 })
  try {
    const context = await model.createContext({
      contextSize: Math.max(256, options.prompt.length + options.warmup + options.tokens + 8 + Math.max(0, ...(options.batches ?? []))),
      sequences: 1,
      threads: options.threads,
      batchSize: 256,
      flashAttention: false,
      experimentalKvCacheKeyType: "F16",
      experimentalKvCacheValueType: "F16"
    })
    const sequence = context.getSequence()
    const stepsMs: Array<number> = []
    let last = 0
    let produced = 0
    const want = options.warmup + options.tokens + 1
    // The first token arrives after the prompt is evaluated; every later gap is one decode step.
    for await (const _ of sequence.evaluate(options.prompt.map((id) => id as Token), { temperature: 0, yieldEogToken: true })) {
      const now = performance.now()
      if (produced > options.warmup) stepsMs.push(now - last)
      last = now
      if (++produced >= want) break
    }
    // k-token batches appended after the decoded tokens, then erased: one untimed, three timed each
    const batchMs: Record<string, number> = {}
    for (const k of options.batches ?? []) {
      const times: Array<number> = []
      for (let rep = 0; rep < 4; rep++) {
        const start = sequence.nextTokenIndex
        const t0 = performance.now()
        await sequence.evaluateWithoutGeneratingNewTokens(options.prompt.slice(0, k).map((id) => id as Token))
        if (rep > 0) times.push(performance.now() - t0)
        await sequence.eraseContextTokenRanges([{ start, end: sequence.nextTokenIndex }])
      }
      batchMs[String(k)] = median(times)
    }
    await context.dispose()
    const ms = median(stepsMs)
    return { gguf: path, wrote, fileType, decodeTokensPerSecond: 1000 / ms, msPerToken: ms, stepsMs, batchMs }
  } finally {
    await model.dispose()
  }
}
