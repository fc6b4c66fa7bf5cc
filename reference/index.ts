/**
 * The reference backend: the pure-TS kernels of this folder lifted into the Kernels interface.
 *
 * It is the ground truth every other backend is checked against, so it is written for clarity:
 * float64 accumulation, float32 storage, weights widened to f32 once at load time. Not fast.
 */
import { Effect, Layer } from "effect"
import { Kernels, type KernelsShape, type Matrix, type Vector } from "../src/Kernels.ts"
import { fromHost, type HostKernelsShape } from "./host.ts"
import { toFloat32 } from "../src/Tensor.ts"
import { add } from "./add.ts"
import { attention } from "./attention.ts"
import { embedding } from "./embedding.ts"
import { gather } from "./gather.ts"
import { matmul, matmulRows, matmulTransposedRows } from "./matmul.ts"
import { rmsnorm } from "./rmsnorm.ts"
import { rope } from "./rope.ts"
import { swiglu } from "./swiglu.ts"

export { add } from "./add.ts"
export { attention } from "./attention.ts"
export { embedding } from "./embedding.ts"
export { gather, gatherColumns, gatherRows, type F32Rows } from "./gather.ts"
export { matmul, matmulAbsTerms, matmulRows, matmulTransposedRows } from "./matmul.ts"
export { rmsnorm } from "./rmsnorm.ts"
export { rope } from "./rope.ts"
export { ropeInvFreq } from "../src/Rope.ts"
export { silu, swiglu, swigluRows } from "./swiglu.ts"
export { neuronStatistic, selectNeurons } from "./select.ts"
export { type AttentionShape, fromHost, type HostActivation, type HostKernelsShape, type HostSelection } from "./host.ts"
export { softmax } from "./softmax.ts"

interface F32Matrix extends Matrix {
  readonly data: Float32Array // (rows, cols)
}
interface F32Vector extends Vector {
  readonly data: Float32Array
}

/** The reference's dense ops on host arrays; `make` lifts them (and the reference sparsity and KV ops) with fromHost. */
export const referenceHost: HostKernelsShape = {
  name: "reference",
  matrix: (t) => Effect.sync((): F32Matrix => ({ rows: t.shape[0]!, cols: t.shape[1]!, data: toFloat32(t) })),
  vector: (t) => Effect.sync((): F32Vector => ({ length: t.shape[0]!, data: toFloat32(t) })),
  matmul: (w, x, T) => Effect.sync(() => matmul((w as F32Matrix).data, x, T, w.rows, w.cols)),
  matmulRows: (w, x, T, rows) => Effect.sync(() => matmulRows((w as F32Matrix).data, x, T, w.cols, rows)),
  matmulTransposedRows: (wT, h, T, rows) => Effect.sync(() => matmulTransposedRows((wT as F32Matrix).data, h, T, wT.cols, rows)),
  gather: (w, indices, axis) => Effect.sync((): F32Matrix => gather(w as F32Matrix, indices, axis)),
  embedding: (table, tokens) => Effect.sync(() => embedding((table as F32Matrix).data, tokens, table.cols)),
  rmsnorm: (x, weight, T, eps) => Effect.sync(() => rmsnorm(x, (weight as F32Vector).data, T, eps)),
  rope: (x, T, heads, headDim, positions, invFreq) => Effect.sync(() => rope(x, T, heads, headDim, positions, invFreq)),
  attention: (q, keys, values, shape) => Effect.sync(() => attention(q, keys, values, shape)),
  swiglu: (gate, up) => Effect.sync(() => swiglu(gate, up)),
  add: (a, b) => Effect.sync(() => add(a, b))
}

const make = (): KernelsShape => fromHost(referenceHost)

export const ReferenceKernels = {
  make,
  layer: Layer.succeed(Kernels, make())
} as const
