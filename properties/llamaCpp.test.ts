/**
 * The differential test of the engine against llama.cpp (docs/formats.md).
 *
 * For each configuration, a seeded random model is written twice: as an HF directory (config.json +
 * safetensors, loaded back through Checkpoint.loadCheckpoint, so the loader is under test too) and as a
 * GGUF for llama.cpp (Gguf.writeGguf, from the generator's in-memory weights). Then:
 * - teacher-forced next-token probabilities at every position of a 14-token sequence must agree over
 *   the full vocabulary (max |Δp| ≤ TOL);
 * - greedy decoding of 12 new tokens from a 3-token prompt must give identical ids (see `greedyAgrees`
 *   for near-ties).
 *
 * llama.cpp is independent of sirius-ts (its own RoPE pairing, its own GGUF path), so agreement is
 * evidence, not self-consistency. The engine runs on the reference kernels; other backends are compared
 * with the reference elsewhere.
 *
 * Not covered here: sparsity and Sirius correction (the dense model is what llama.cpp can check), and
 * tokenizers (everything is ids).
 */
import { Effect } from "effect"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { ReferenceKernels } from "../reference/index.ts"
import { loadCheckpoint } from "../src/Checkpoint.ts"
import type { LlamaConfig } from "../src/Config.ts"
import * as Forward from "../src/Forward.ts"
import { ropeFreqFactors, writeGguf } from "../src/Gguf.ts"
import * as KvCache from "../src/KvCache.ts"
import * as Model from "../src/Model.ts"
import { randomWeights, shapes, writeHfCheckpoint } from "../testing/RandomModel.ts"
import { ropeInvFreq } from "../src/Rope.ts"
import type { DType } from "../src/Tensor.ts"
import { argmax, openOracle, softmax64, topMargin } from "./llamaCpp.ts"

/**
 * Tolerance on probabilities, max |Δp| over the full vocabulary at every position.
 *
 * §8.3 measured 1.33e-6 between llama.cpp (F32 KV cache, flash attention off: the recipe openOracle
 * fixes) and a float64 reference on this model shape; the reference kernels accumulate in float64 and
 * store float32, so they sit at the same ~1e-6 distance from llama.cpp's float32 kernels. 1e-4 leaves
 * ~50× headroom for seeds and shapes, and stays ≥ 100× below every real fault seen: Q/K not permuted
 * (0.74, §3), llama.cpp's BF16 matmul rounding activations to bf16 (~1e-2, measured while writing this
 * test), and RoPE scaling ignored (asserted below by a negative control).
 *
 * BF16 checkpoints use the same tolerance: the engine widens bf16 to f32 exactly (u16 << 16), and the
 * GGUF stores those very widened values as F32, so both sides do f32 arithmetic on identical weights.
 * (A BF16 GGUF would not: llama.cpp's CPU BF16 matmul rounds activations to bf16.)
 */
const TOL = 1e-4

/**
 * Greedy ids can legitimately differ only where the top-1/top-2 probability margin is within what the
 * two implementations may disagree by: if every |Δp| ≤ TOL, argmaxes can swap only when p1 − p2 ≤ 2·TOL.
 */
const TIE_MARGIN = 2 * TOL

const SEED = 20240611
const IDS = [1, 300, 301, 5, 310, 2, 259, 260, 100, 50, 299, 319, 13, 42] // teacher-forced, positions 0..13
const PROMPT = [1, 300, 301]
const NEW_TOKENS = 12

const base: LlamaConfig = shapes.tiny // hidden 64, 4 heads, 2 KV heads, head_dim 16, ffn 96, 2 layers, vocab 320
const llama3Scaling = {
  ropeType: "llama3",
  factor: 8,
  lowFreqFactor: 1,
  highFreqFactor: 4,
  // With theta 10000 and head_dim 16 the wavelengths are 6.3, 19.9, 62.8, 199, …: against
  // oldCtx 64 (thresholds 16 and 64) frequency 0 is kept, 1 and 2 are smoothed, 3..7 are divided by 8,
  // so all three branches of the formula (§1) are exercised at the positions tested.
  originalMaxPositionEmbeddings: 64
} as const

interface Case {
  readonly id: string
  readonly label: string
  readonly config: LlamaConfig
  readonly shards?: number
}

const cases: ReadonlyArray<Case> = [
  { id: "a", label: "MHA (4 heads, 4 kv)", config: { ...base, numKeyValueHeads: 4 } },
  { id: "b", label: "GQA (4 heads, 2 kv)", config: base },
  { id: "c", label: "tied embeddings", config: { ...base, tieWordEmbeddings: true } },
  { id: "d", label: "head_dim 32 ≠ 64/4", config: { ...base, headDim: 32 } },
  { id: "e", label: "rope_theta 500000", config: { ...base, ropeTheta: 500000 } },
  { id: "f", label: "llama3 rope scaling", config: { ...base, ropeScaling: llama3Scaling } },
  { id: "g", label: "2 shards + index", config: base, shards: 2 },
  // Qwen2Config HF directory: q/k/v biases, tied embeddings; its GGUF is architecture qwen2 (no Q/K permutation).
  { id: "h", label: "qwen2 (q/k/v biases, tied)", config: { ...base, architecture: "qwen2", attentionBias: true, tieWordEmbeddings: true } }
]
const dtypes: ReadonlyArray<DType> = ["F32", "BF16"]

const root = mkdtempSync(join(tmpdir(), "sirius-llamacpp-"))
const rows: Array<string> = []

afterAll(() => {
  console.log(
    [
      `llama.cpp differential (tolerance ${TOL}; ${IDS.length} teacher-forced positions, ${NEW_TOKENS} greedy tokens)`,
      "case | dtype | max |Δp| | argmax agree | greedy",
      ...rows
    ].join("\n")
  )
  rmSync(root, { recursive: true, force: true })
})


/** The engine on a checkpoint directory: teacher-forced probabilities and greedy decoding. */
const runEngine = (dir: string) =>
  Effect.gen(function* () {
    const checkpoint = yield* loadCheckpoint(dir)
    const model = yield* Model.fromCheckpoint(checkpoint)
    const V = checkpoint.config.vocabSize

    // Teacher forcing: one forward over all IDS, logits (T, V).
    const logits = yield* Forward.forward(model, yield* KvCache.make(model.kernels, checkpoint.config, 64), Int32Array.from(IDS), 0, "all")
    const probs = IDS.map((_, t) => softmax64(logits, t * V, V))

    // Greedy: prefill the prompt, then one token per step.
    const cache = yield* KvCache.make(model.kernels, checkpoint.config, 64)
    let p = softmax64(yield* Forward.forward(model, cache, Int32Array.from(PROMPT), 0, "last"), 0, V)
    const ids: Array<number> = []
    const margins: Array<number> = []
    for (let s = 0; s < NEW_TOKENS; s++) {
      const next = argmax(p)
      ids.push(next)
      margins.push(topMargin(p))
      if (s + 1 < NEW_TOKENS) p = softmax64(yield* Forward.forward(model, cache, Int32Array.of(next), PROMPT.length + s, "last"), 0, V)
    }
    return { config: checkpoint.config, probs, greedy: { ids, margins } }
  }).pipe(Effect.scoped, Effect.provide(ReferenceKernels.layer))

const maxAbsDiff = (ours: ReadonlyArray<Float64Array>, theirs: ReadonlyArray<Float32Array>): number => {
  let worst = 0
  for (let t = 0; t < ours.length; t++) for (let v = 0; v < ours[t]!.length; v++) worst = Math.max(worst, Math.abs(ours[t]![v]! - theirs[t]![v]!))
  return worst
}

/**
 * Greedy agreement with near-ties handled: ids must match step by step; a first mismatch is accepted
 * only where our top-1/top-2 margin is ≤ TIE_MARGIN (the continuations are then different sequences,
 * so comparison stops there). Returns a description for the table.
 */
const greedyAgrees = (ours: { ids: ReadonlyArray<number>; margins: ReadonlyArray<number> }, theirs: ReadonlyArray<number>): string => {
  expect(theirs).toHaveLength(ours.ids.length)
  for (let s = 0; s < ours.ids.length; s++) {
    if (ours.ids[s] === theirs[s]) continue
    expect(ours.margins[s], `greedy step ${s}: ours ${ours.ids[s]}, llama.cpp ${theirs[s]}, margin ${ours.margins[s]}`).toBeLessThanOrEqual(TIE_MARGIN)
    return `near-tie at step ${s} (margin ${ours.margins[s]!.toExponential(1)}), ${s}/${ours.ids.length} equal`
  }
  return `${ours.ids.length}/${ours.ids.length} equal (min margin ${Math.min(...ours.margins).toExponential(1)})`
}

describe("engine vs llama.cpp", () => {
  it("llama3 scaling changes the RoPE frequencies, and rope_freqs holds invFreq_orig / invFreq_scaled", () => {
    const c = cases.find((k) => k.id === "f")!.config
    const plain = ropeInvFreq(c.headDim, c.ropeTheta)
    const scaled = ropeInvFreq(c.headDim, c.ropeTheta, c.ropeScaling)
    const factors = ropeFreqFactors(c)!
    expect(factors).toHaveLength(c.headDim / 2)
    let changed = 0
    for (let i = 0; i < plain.length; i++) {
      if (plain[i] !== scaled[i]) changed++
      expect(Math.abs(factors[i]! - plain[i]! / scaled[i]!) / factors[i]!).toBeLessThan(1e-5)
    }
    expect(changed).toBeGreaterThanOrEqual(2)
    expect(factors[0]).toBe(1) // highest frequency kept
    expect(factors.at(-1)).toBe(8) // lowest frequency divided by the full factor
    expect(factors.some((f) => f > 1 && f < 8)).toBe(true) // smoothed band
  })

  for (const c of cases) {
    for (const dtype of dtypes) {
      it(`(${c.id}) ${c.label}, ${dtype}`, { timeout: 30_000 }, async () => {
        const dir = join(root, `${c.id}-${dtype}`)
        const weights = randomWeights(c.config, { seed: SEED, dtype })
        await Effect.runPromise(writeHfCheckpoint(dir, c.config, weights, c.shards === undefined ? {} : { shards: c.shards }))
        if (c.shards !== undefined) {
          // The loader must take the index path: no single-file checkpoint beside the shards.
          expect(existsSync(join(dir, "model.safetensors"))).toBe(false)
          expect(existsSync(join(dir, "model.safetensors.index.json"))).toBe(true)
          expect(existsSync(join(dir, `model-00002-of-0000${c.shards}.safetensors`))).toBe(true)
        }
        // F32 GGUF of the (possibly bf16-rounded) values: exactly what the engine widens to (see TOL).
        const gguf = join(dir, "model.gguf")
        writeGguf(gguf, c.config, weights, { fileType: "F32" })

        const ours = await Effect.runPromise(runEngine(dir))
        expect(ours.config).toEqual(c.config) // config.json round trip
        const oracle = await openOracle(gguf)
        try {
          expect(oracle.vocabSize).toBe(c.config.vocabSize)
          const theirs = await oracle.probabilities(IDS)
          const maxDp = maxAbsDiff(ours.probs, theirs)
          const argmaxAgree = ours.probs.filter((p, t) => argmax(p) === argmax(theirs[t]!)).length
          const greedy = greedyAgrees(ours.greedy, await oracle.greedy(PROMPT, NEW_TOKENS))
          rows.push(`(${c.id}) ${c.label} | ${dtype} | ${maxDp.toExponential(2)} | ${argmaxAgree}/${IDS.length} | ${greedy}`)
          expect(maxDp).toBeLessThanOrEqual(TOL)
        } finally {
          await oracle.dispose()
        }

        if (c.config.ropeScaling !== undefined && dtype === "F32") {
          // Negative control: the same weights without rope scaling must disagree clearly, so the
          // positions tested are sensitive to the scaling and the pass above is not vacuous.
          const unscaled = join(dir, "unscaled.gguf")
          writeGguf(unscaled, { ...c.config, ropeScaling: undefined }, weights, { fileType: "F32" })
          const control = await openOracle(unscaled)
          try {
            const dp = maxAbsDiff(ours.probs, await control.probabilities(IDS))
            rows.push(`(${c.id}) control: GGUF without rope_freqs | ${dtype} | ${dp.toExponential(2)} | (must exceed ${100 * TOL})`)
            expect(dp).toBeGreaterThan(100 * TOL)
          } finally {
            await control.dispose()
          }
        }
      })
    }
  }
})
