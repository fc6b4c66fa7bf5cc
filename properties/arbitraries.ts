/**
 * Arbitraries in one place: tiny Llama configs with divisibility built in (KV heads divide heads, even
 * head dims), prompts within the vocabulary, and seeds from which large weight tensors are derived
 * (RandomModel.randomWeights) so shrinking stays fast and counterexamples print small.
 */
import fc from "fast-check"
import type { LlamaConfig } from "../src/Config.ts"
import type { DType } from "../src/Tensor.ts"

export const tinyConfig: fc.Arbitrary<LlamaConfig> = fc
  .record({
    numKeyValueHeads: fc.integer({ min: 1, max: 2 }),
    group: fc.integer({ min: 1, max: 3 }),
    headDim: fc.constantFrom(2, 4, 6, 8, 16),
    hiddenSize: fc.integer({ min: 4, max: 48 }),
    intermediateSize: fc.integer({ min: 3, max: 80 }),
    numHiddenLayers: fc.integer({ min: 1, max: 3 }),
    vocabSize: fc.integer({ min: 5, max: 90 }),
    ropeTheta: fc.constantFrom(10000, 500000),
    llama3: fc.boolean(),
    tieWordEmbeddings: fc.boolean()
  })
  .map(
    (r): LlamaConfig => ({
      architecture: "llama",
      vocabSize: r.vocabSize,
      hiddenSize: r.hiddenSize,
      intermediateSize: r.intermediateSize,
      numHiddenLayers: r.numHiddenLayers,
      numAttentionHeads: r.numKeyValueHeads * r.group,
      numKeyValueHeads: r.numKeyValueHeads,
      headDim: r.headDim,
      maxPositionEmbeddings: 64,
      rmsNormEps: 1e-5,
      ropeTheta: r.ropeTheta,
      ropeScaling: r.llama3
        ? { ropeType: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 16 }
        : undefined,
      tieWordEmbeddings: r.tieWordEmbeddings,
      attentionBias: false,
      bosTokenId: undefined,
      eosTokenIds: []
    })
  )

/** A config, a weight seed and a prompt of 1..maxLen ids inside its vocabulary. */
export const tinyModelAndPrompt = (maxLen: number) =>
  tinyConfig.chain((config) =>
    fc.record({
      config: fc.constant(config),
      seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      prompt: fc.array(fc.integer({ min: 0, max: config.vocabSize - 1 }), { minLength: 1, maxLength: maxLen })
    })
  )

/**
 * A matrix (rows ≤ 90, odd column counts up to 300, any dtype), T = 1..17 tokens (past the simd kernels'
 * 4-token passes) and a selection of distinct rows in any order (the kernels must not assume sorted ones).
 */
export const selectedRowsCase = fc
  .record({
    rows: fc.integer({ min: 1, max: 90 }),
    cols: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 41, max: 300 })),
    T: fc.integer({ min: 1, max: 17 }),
    dtype: fc.constantFrom<DType>("F32", "BF16", "F16"),
    seed: fc.integer()
  })
  .chain((c) => fc.record({ c: fc.constant(c), sel: fc.uniqueArray(fc.integer({ min: 0, max: c.rows - 1 }), { minLength: 1, maxLength: c.rows }) }))
