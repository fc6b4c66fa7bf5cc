/**
 * llamaCpp: a thin oracle wrapper over node-llama-cpp 3.21.1 (docs/formats.md).
 *
 * llama.cpp is an implementation of Llama written independently of sirius-ts, so agreement with it is
 * evidence rather than self-consistency. The wrapper fixes the context options that make llama.cpp agree
 * with an f32/f64 reference to ~1e-6 (§8.3: F32 KV cache and flash attention off), one CPU thread
 * (§8.5: more threads oversubscribe a 2-core CI machine), and two sequences (§8.6).
 *
 * It deliberately exposes only ids and probabilities: no tokenizer, chat, or sampling beyond greedy.
 * Test code only; never imported by src/.
 */
import { getLlama, LlamaLogLevel } from "node-llama-cpp"
import type { ControlledEvaluateInputItem, Llama, Token } from "node-llama-cpp"
import { resolve } from "node:path"

export interface Oracle {
  /** Vocabulary size of the loaded model. */
  readonly vocabSize: number
  /**
   * Teacher-forced next-token distributions: result[i][v] = P(next = v | ids[0..i]), over the full
   * vocabulary, for every position i. These are llama.cpp's softmax(logits) (§8.4). Starts from an
   * empty KV cache on every call.
   */
  readonly probabilities: (ids: ReadonlyArray<number>) => Promise<Array<Float32Array>>
  /**
   * Greedy (temperature 0) continuation of `promptIds`: exactly `maxTokens` new ids. EOS does not stop
   * generation (`yieldEogToken`): random models emit `</s>` like any other id, and a differential test
   * wants the same number of steps on both sides. Starts from an empty KV cache on every call.
   */
  readonly greedy: (promptIds: ReadonlyArray<number>, maxTokens: number) => Promise<Array<number>>
  readonly dispose: () => Promise<void>
}

let llamaInstance: Promise<Llama> | undefined

/**
 * The process-wide llama.cpp binding: CPU only, one thread, errors-only logging. getLlama loads a native
 * library, so one instance is shared by every oracle in a test file (vitest isolates files in workers).
 */
export const sharedLlama = (): Promise<Llama> => {
  llamaInstance ??= getLlama({ gpu: false, maxThreads: 1, logLevel: LlamaLogLevel.error })
  return llamaInstance
}

/**
 * Load a GGUF file and open one evaluation sequence on it with the oracle recipe of §8.2.
 *
 * @example
 * const oracle = await openOracle("/tmp/m.gguf")
 * const p = await oracle.probabilities([1, 300, 301]) // 3 Float32Arrays of length vocab
 * await oracle.dispose()
 */
export const openOracle = async (ggufPath: string): Promise<Oracle> => {
  const llama = await sharedLlama()
  const model = await llama.loadModel({ modelPath: resolve(ggufPath), gpuLayers: 0 })
  const context = await model.createContext({
    contextSize: 256,
    sequences: 2,
    threads: 1,
    batchSize: 256,
    flashAttention: false,
    experimentalKvCacheKeyType: "F32",
    experimentalKvCacheValueType: "F32"
  })
  const sequence = context.getSequence()
  // token_embd is (vocab, hidden) in HF order, so its outermost ggml dim is the vocabulary size.
  const embd = model.fileInfo.tensorInfo?.find((t) => t.name === "token_embd.weight")
  const vocabSize = Number(embd?.dimensions[1] ?? 0)
  if (vocabSize <= 0) throw new Error(`${ggufPath}: no token_embd.weight tensor to size the vocabulary`)

  const checkIds = (ids: ReadonlyArray<number>): void => {
    // llama_decode rejects out-of-range ids with an opaque message (§6.5); say which one.
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new RangeError(`token id ${id} outside vocab [0, ${vocabSize})`)
    }
    if (ids.length === 0 || ids.length > 256) throw new RangeError(`${ids.length} ids: need 1..256 (context size 256)`)
  }

  const probabilities = async (ids: ReadonlyArray<number>): Promise<Array<Float32Array>> => {
    checkIds(ids)
    await sequence.clearHistory()
    const items = ids.map((id): ControlledEvaluateInputItem => [id as Token, { generateNext: { probabilities: true } }])
    const results = await sequence.controlledEvaluate(items)
    return results.map((r, i) => {
      const map = r?.next.probabilities
      if (map === undefined) throw new Error(`llama.cpp returned no probabilities at position ${i}`)
      const p = new Float32Array(vocabSize)
      for (const [token, prob] of map) p[token] = prob
      return p
    })
  }

  const greedy = async (promptIds: ReadonlyArray<number>, maxTokens: number): Promise<Array<number>> => {
    checkIds(promptIds)
    await sequence.clearHistory()
    const out: Array<number> = []
    if (maxTokens <= 0) return out
    // temperature 0 selects llama.cpp's greedy sampler (argmax); no repeat penalty or bias is set.
    for await (const token of sequence.evaluate(promptIds.map((id) => id as Token), { temperature: 0, yieldEogToken: true })) {
      out.push(token)
      if (out.length >= maxTokens) break
    }
    return out
  }

  const dispose = async (): Promise<void> => {
    await context.dispose()
    await model.dispose()
  }

  return { vocabSize, probabilities, greedy, dispose }
}

/** Softmax of one logits row in float64 (the probabilities the differential tests compare). */
export const softmax64 = (logits: Float32Array, offset: number, V: number): Float64Array => {
  let max = -Infinity
  for (let v = 0; v < V; v++) max = Math.max(max, logits[offset + v]!)
  const p = new Float64Array(V)
  let sum = 0
  for (let v = 0; v < V; v++) sum += p[v] = Math.exp(logits[offset + v]! - max)
  for (let v = 0; v < V; v++) p[v]! /= sum
  return p
}

export const argmax = (p: ArrayLike<number>): number => {
  let best = 0
  for (let v = 1; v < p.length; v++) if (p[v]! > p[best]!) best = v
  return best
}

/** p1 − p2: the gap between the two most likely tokens. */
export const topMargin = (p: ArrayLike<number>): number => {
  let a = -Infinity
  let b = -Infinity
  for (let v = 0; v < p.length; v++) {
    const x = p[v]!
    if (x > a) [a, b] = [x, a]
    else if (x > b) b = x
  }
  return a - b
}
