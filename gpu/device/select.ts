// Fine sparsity's neuron selection and coarse sparsity's (GRIFFIN's) neuron statistic, on the device.
// T = tokens, F = MLP width. The rules are src/Sparsity.ts's; reference/select.ts runs them on the host.
//
// selectNeurons (gate (T, F) → ascending neuron indices, a [capacity, 1] buffer), five kernels:
//   scores [F, 1]: s_j = Σ_t |silu(gate[t, j])| (divided by T for a threshold: the mean);
//   keep [F, 1]: 1 when j is kept: top-k, rank_j = #{i : s_i > s_j or (s_i = s_j and i < j)} < k (ties to
//     the lower index, as Sparsity.topK); or threshold, s_j > threshold;
//   blocks [⌈F/64⌉, 1]: kept neurons per block of 64;
//   prefix [F, 1]: c_j = #{i < j : kept}: the blocks before j's, then j's block up to j;
//   compact [capacity, 1]: the p-th kept neuron = the largest j with c_j ≤ p (binary search: c is
//     non-decreasing, and steps by one exactly at the kept neurons).
// A threshold's count is data-dependent: `count` ([1, 1]) holds it on the device; the host reads it only
// when it needs a shape (Kernels.count). Top-k's count is min(k, F), known on the host.
// Cost: the rank is O(F²) comparisons per call (F threads × F reads of a cached F-float vector), the rest
// O(F·64 + F·log F); for F = 14336 the rank is 2·10⁸ comparisons per layer — a radix select would be
// cheaper, gpu.js gives no shared memory or atomics to write one.
//
// neuronStatistic (hb (T, F) → (1, F)): rows' L2 norms [1, T], then sqrt(Σ_t (hb[t, j] / norm_t)²) [F, 1]
// skipping all-zero rows, as Sparsity.griffinStatistic (f32 here, f64 there: the tolerance's bound).
import type { KernelFunction } from "gpu.js"
import { Effect } from "effect"
import type { KernelError, NeuronRule } from "../../src/Kernels.ts"
import type { GpuRuntime } from "../GpuRuntime.ts"
import type { Counts } from "../Traffic.ts"
import { bucket } from "./attention.ts"
import type { DeviceBuffer, Grid, KernelThis } from "../types.ts"

const BLOCK = 64

/** Cell (x = j): Σ_t |silu(gate[t][j])|, or its mean over the T rows when `mean` is 1. */
function scoresKernel(this: KernelThis<object>, gate: Grid, T: number, mean: number): number {
  let s = 0
  for (let t = 0; t < T; t++) {
    const g = gate[t][this.thread.x]
    s += Math.abs(g / (1 + Math.exp(-g)))
  }
  if (mean > 0.5) return s / T
  return s
}

/** Cell (x = j): 1 when fewer than k neurons rank above j (larger score, or equal and lower index). */
function topKKernel(this: KernelThis<{ F: number }>, scores: Grid, k: number): number {
  const j = this.thread.x
  const sj = scores[0][j]
  let above = 0
  for (let i = 0; i < this.constants.F; i++) {
    const si = scores[0][i]
    if (si > sj) above += 1
    else if (si === sj && i < j) above += 1
  }
  if (above < k) return 1
  return 0
}

/** Cell (x = j): 1 when s_j > threshold. */
function thresholdKernel(this: KernelThis<object>, scores: Grid, threshold: number): number {
  if (scores[0][this.thread.x] > threshold) return 1
  return 0
}

/** Cell (x = b): kept neurons in block b (neurons 64b..64b+63 below F). */
function blocksKernel(this: KernelThis<{ F: number; block: number }>, keep: Grid): number {
  let n = 0
  for (let i = 0; i < this.constants.block; i++) {
    const j = this.thread.x * this.constants.block + i
    if (j < this.constants.F) n += keep[0][j]
  }
  return n
}

/** Cell (x = j): kept neurons before j. */
function prefixKernel(this: KernelThis<{ block: number; blocks: number }>, keep: Grid, blocks: Grid): number {
  const j = this.thread.x
  const b = Math.floor(j / this.constants.block)
  let c = 0
  for (let i = 0; i < this.constants.blocks; i++) if (i < b) c += blocks[0][i]
  for (let m = 0; m < this.constants.block; m++) {
    const at = b * this.constants.block + m
    if (at < j) c += keep[0][at]
  }
  return c
}

/** Cell (x = p): the largest j with prefix[j] ≤ p: the p-th kept neuron (for p below the count). */
function compactKernel(this: KernelThis<{ F: number; steps: number }>, prefix: Grid): number {
  const p = this.thread.x
  let lo = 0
  let hi = this.constants.F - 1
  for (let step = 0; step < this.constants.steps; step++) {
    if (lo < hi) {
      const mid = Math.floor((lo + hi + 1) / 2)
      if (prefix[0][mid] <= p) lo = mid
      else hi = mid - 1
    }
  }
  return lo
}

/** Cell (0, 0): the number of kept neurons, prefix[F − 1] + keep[F − 1]. */
function countKernel(this: KernelThis<{ F: number }>, prefix: Grid, keep: Grid): number {
  return prefix[0][this.constants.F - 1] + keep[0][this.constants.F - 1]
}

/** Cell (0, t): ‖hb[t, :]‖₂. */
function rowNormKernel(this: KernelThis<{ F: number }>, hb: Grid): number {
  let ss = 0
  for (let j = 0; j < this.constants.F; j++) {
    const v = hb[this.thread.y][j]
    ss += v * v
  }
  return Math.sqrt(ss)
}

/** Cell (x = j): sqrt(Σ_t (hb[t][j] / norm_t)²) over the rows with a non-zero norm. */
function statisticKernel(this: KernelThis<object>, hb: Grid, norms: Grid, T: number): number {
  let s = 0
  for (let t = 0; t < T; t++) {
    const norm = norms[t][0]
    if (norm > 0) {
      const v = hb[t][this.thread.x] / norm
      s += v * v
    }
  }
  return Math.sqrt(s)
}

/** A selection on the device: `indices` [capacity, 1]; `count` [1, 1] when the count is data-dependent. */
export interface DeviceSelection {
  readonly indices: DeviceBuffer
  readonly capacity: number
  /** Known on the host (top-k), or on the device only (threshold). */
  readonly count: number | DeviceBuffer
}

const pipelineKernel = (rt: GpuRuntime, key: string, body: unknown, constants: Record<string, number>, loopMaxIterations: number) =>
  rt.kernel(key, (c) => c(body as KernelFunction, { output: [1, 1], constants, loopMaxIterations, pipeline: true }))

export const selectNeurons = (rt: GpuRuntime, gate: DeviceBuffer, T: number, F: number, rule: NeuronRule, forward?: Counts): Effect.Effect<DeviceSelection, KernelError> =>
  Effect.gen(function* () {
    const blocks = Math.ceil(F / BLOCK)
    const free = (...bs: ReadonlyArray<DeviceBuffer>) => Effect.sync(() => bs.forEach(rt.release))
    const topK = rule._tag === "TopK"
    const scores = yield* rt.dispatch("selectNeurons", pipelineKernel(rt, `device.select.scores:${bucket(T)}`, scoresKernel, {}, bucket(T)), [F, 1], [gate.value, T, topK ? 0 : 1], forward)
    const keep = yield* Effect.ensuring(
      topK
        ? rt.dispatch("selectNeurons", pipelineKernel(rt, `device.select.topK:${F}`, topKKernel, { F }, F), [F, 1], [scores.value, Math.min(rule.count, F)], forward)
        : rt.dispatch("selectNeurons", pipelineKernel(rt, "device.select.threshold", thresholdKernel, {}, 1), [F, 1], [scores.value, rule.threshold], forward),
      free(scores)
    )
    const sums = yield* Effect.tapError(
      rt.dispatch("selectNeurons", pipelineKernel(rt, `device.select.blocks:${F}`, blocksKernel, { F, block: BLOCK }, BLOCK), [blocks, 1], [keep.value], forward),
      () => free(keep)
    )
    const prefix = yield* Effect.ensuring(
      rt.dispatch("selectNeurons", pipelineKernel(rt, `device.select.prefix:${F}`, prefixKernel, { block: BLOCK, blocks }, Math.max(blocks, BLOCK)), [F, 1], [keep.value, sums.value], forward),
      free(sums)
    )
    const capacity = topK ? Math.min(rule.count, F) : F
    const compact = pipelineKernel(rt, `device.select.compact:${F}`, compactKernel, { F, steps: Math.ceil(Math.log2(F)) + 1 }, Math.ceil(Math.log2(F)) + 1)
    return yield* Effect.ensuring(
      Effect.gen(function* () {
        const indices = yield* rt.dispatch("selectNeurons", compact, [capacity, 1], [prefix.value], forward)
        if (topK) return { indices, capacity, count: capacity }
        const count = yield* Effect.tapError(
          rt.dispatch("selectNeurons", pipelineKernel(rt, `device.select.count:${F}`, countKernel, { F }, 1), [1, 1], [prefix.value, keep.value], forward),
          () => free(indices)
        )
        return { indices, capacity, count }
      }),
      free(keep, prefix)
    )
  })

export const neuronStatistic = (rt: GpuRuntime, hb: DeviceBuffer, T: number, F: number, forward?: Counts): Effect.Effect<DeviceBuffer, KernelError> =>
  Effect.acquireUseRelease(
    rt.dispatch("neuronStatistic", pipelineKernel(rt, `device.statistic.norms:${F}`, rowNormKernel, { F }, F), [1, T], [hb.value], forward),
    (norms) => rt.dispatch("neuronStatistic", pipelineKernel(rt, `device.statistic:${bucket(T)}`, statisticKernel, {}, bucket(T)), [F, 1], [hb.value, norms.value, T], forward),
    (norms) => Effect.sync(() => rt.release(norms))
  )
