/**
 * Arbitraries for kernel-level properties: one case per Kernels op, small shapes (the checks also run on
 * software GPUs), and weights derived from a seed through a PRNG rather than generated element by element,
 * so shrinking stays fast and a counterexample prints as a handful of numbers.
 *
 * Shapes occasionally exceed 1000 along a reduction, to catch a backend that truncates long loops
 * (gpu.js's `loopMaxIterations` defaults to 1000). Also tiny Llama configs with divisibility built in (KV
 * heads divide heads, even head dims), prompts within the vocabulary, and seeds from which whole weight
 * sets are derived (RandomModel.randomWeights).
 */
import fc from "fast-check"
import type { LlamaConfig } from "../src/Config.ts"
import type { DType } from "../src/Tensor.ts"

/** Deterministic values in [−range, range) from a seed (mulberry32). */
export const seeded = (seed: number, n: number, range = 2): Float32Array => {
  let a = seed | 0
  const out = new Float32Array(n)
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5) * 2 * range
  }
  return out
}

const seed = fc.integer({ min: 0, max: 2 ** 31 - 1 })
const dtype: fc.Arbitrary<DType> = fc.constantFrom("F32", "BF16", "F16")
/** A reduction length: mostly small, sometimes past gpu.js's default loop bound of 1000. */
const reduction = (max: number) => fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 1, max }) }, { weight: 1, arbitrary: fc.integer({ min: 1001, max: 1100 }) })
const tokens = fc.integer({ min: 1, max: 5 })

export interface MatmulCase {
  readonly rows: number
  readonly cols: number
  readonly T: number
  readonly dtype: DType
  readonly seed: number
}
export const matmulCase: fc.Arbitrary<MatmulCase> = fc.record({ rows: fc.integer({ min: 1, max: 40 }), cols: reduction(64), T: tokens, dtype, seed })

/** A matmul case plus a selection of distinct rows (the sparse MLP's active neurons), in any order. */
export const matmulRowsCase: fc.Arbitrary<MatmulCase & { readonly select: ReadonlyArray<number> }> = matmulCase.chain((c) =>
  fc.record({
    c: fc.constant(c),
    select: fc.shuffledSubarray(Array.from({ length: c.rows }, (_, i) => i), { minLength: 1 })
  }).map(({ c, select }) => ({ ...c, select }))
)

export interface EmbeddingCase {
  readonly vocab: number
  readonly dim: number
  readonly ids: ReadonlyArray<number>
  readonly dtype: DType
  readonly seed: number
}
export const embeddingCase: fc.Arbitrary<EmbeddingCase> = fc
  .record({ vocab: fc.integer({ min: 1, max: 50 }), dim: fc.integer({ min: 1, max: 40 }), picks: fc.array(fc.nat(), { minLength: 1, maxLength: 6 }), dtype, seed })
  .map(({ picks, ...r }) => ({ ...r, ids: picks.map((p) => p % r.vocab) }))

export interface RmsnormCase {
  readonly T: number
  readonly D: number
  readonly eps: number
  readonly seed: number
}
export const rmsnormCase: fc.Arbitrary<RmsnormCase> = fc.record({ T: tokens, D: reduction(80), eps: fc.constantFrom(1e-5, 1e-6, 0.1), seed })

export interface RopeCase {
  readonly T: number
  readonly heads: number
  readonly half: number
  readonly theta: number
  readonly positions: ReadonlyArray<number>
  readonly seed: number
}
export const ropeCase: fc.Arbitrary<RopeCase> = fc
  .record({ heads: fc.integer({ min: 1, max: 4 }), half: fc.integer({ min: 1, max: 8 }), theta: fc.constantFrom(10000, 500000), positions: fc.array(fc.integer({ min: 0, max: 4096 }), { minLength: 1, maxLength: 5 }), seed })
  .map((r) => ({ ...r, T: r.positions.length }))

export interface AttentionCase {
  readonly T: number
  readonly H: number
  readonly Hkv: number
  readonly Dh: number
  /** Slots already in the cache before this call's T tokens. */
  readonly past: number
  readonly seed: number
}
export const attentionCase: fc.Arbitrary<AttentionCase> = fc
  .record({ Hkv: fc.integer({ min: 1, max: 2 }), group: fc.integer({ min: 1, max: 3 }), Dh: fc.integer({ min: 1, max: 16 }), T: tokens, past: fc.integer({ min: 0, max: 20 }), seed })
  .map(({ group, ...r }) => ({ ...r, H: r.Hkv * group }))

/**
 * Gates (T, F) for fine sparsity's selection whose |silu| scores are far apart (each neuron's gate is one
 * distinct positive value, the same for every token, from a grid with step 0.05; silu is increasing there),
 * the kept count, and a threshold midway between two neighbouring scores: no near-tie for an f32 backend to
 * resolve differently from the float64 reference.
 */
export const neuronsCase = fc
  .record({ T: fc.integer({ min: 1, max: 4 }), F: fc.integer({ min: 1, max: 120 }), seed })
  .chain(({ T, F }) =>
    fc.record({
      T: fc.constant(T),
      F: fc.constant(F),
      values: fc.shuffledSubarray(Array.from({ length: 200 }, (_, i) => 0.05 * (i + 1)), { minLength: F, maxLength: F }),
      keep: fc.integer({ min: 1, max: F }),
      cut: fc.integer({ min: 0, max: F })
    })
  )
  .map(({ T, F, values, keep, cut }) => {
    const sorted = [...values].sort((a, b) => a - b)
    const score = (g: number) => g / (1 + Math.exp(-g)) // silu, as the rule's mean over identical rows
    const lo = cut === 0 ? 0 : score(sorted[cut - 1]!)
    const hi = cut === F ? score(sorted[F - 1]!) + 1 : score(sorted[cut]!)
    return { T, F, keep, gates: Array.from({ length: T * F }, (_, i) => values[i % F]!), threshold: (lo + hi) / 2 }
  })

export interface ElementwiseCase {
  readonly n: number
  readonly seed: number
}
export const elementwiseCase: fc.Arbitrary<ElementwiseCase> = fc.record({ n: fc.integer({ min: 1, max: 300 }), seed })

// ---------------------------------------------------------------------------------------------------
// Whole tiny models

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
