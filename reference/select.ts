// select: fine sparsity's neuron selection and coarse sparsity's neuron statistic, from MLP activations.
// T = tokens in the call, F = MLP width. The rules are src/Sparsity.ts's (the specification); these run them
// on host arrays for the reference and every host backend.
import type { NeuronRule } from "../src/Kernels.ts"
import { aboveThreshold, fineScores, griffinStatistic, silu, topK } from "../src/Sparsity.ts"

/** The neurons a call keeps (ascending): top-k of Σ_t |silu(gate)| (ties to the lower index), or mean_t |silu(gate)| > threshold. */
export const selectNeurons = (gate: Float32Array, T: number, F: number, rule: NeuronRule): Int32Array => {
  const a = new Float32Array(gate.length)
  for (let i = 0; i < a.length; i++) a[i] = silu(gate[i]!)
  const scores = fineScores(a, T, F)
  if (rule._tag === "TopK") return topK(scores, rule.count)
  for (let j = 0; j < F; j++) scores[j] = scores[j]! / T
  return aboveThreshold(scores, rule.threshold)
}

/** GRIFFIN's statistic over hb (T, F): rows normalised to unit L2 norm, then the L2 norm over rows; out (F). */
export const neuronStatistic = (hb: Float32Array, T: number, F: number): Float32Array => Float32Array.from(griffinStatistic(hb, T, F))
