// The row-wise ops of the pipeline that read no weights: add, swiglu, swigluRows, slice, zeros, embedding.
// Activations are [cols, rows] device buffers. Must agree with reference/add.ts and swiglu.ts (add: one
// rounding of the exact sum; swiglu: f32 exp, within GLSL/WGSL's (3 + 2|g|) ulp), and exactly with
// reference/embedding.ts and a row slice (copies, no arithmetic).
import type { KernelFunction } from "gpu.js"
import type { Effect } from "effect"
import type { KernelError } from "../../src/Kernels.ts"
import type { GpuRuntime } from "../GpuRuntime.ts"
import type { Counts } from "../Traffic.ts"
import type { DeviceBuffer, Grid, KernelThis } from "../types.ts"

/** Cell (x = c, y = t): a[t][c] + b[t][c]. */
function addKernel(this: KernelThis<object>, a: Grid, b: Grid): number {
  return a[this.thread.y][this.thread.x] + b[this.thread.y][this.thread.x]
}

/** Cell (x = c, y = t): silu(gate[t][c]) · up[t][c], silu(g) = g / (1 + e^(−g)). */
function swigluKernel(this: KernelThis<object>, gate: Grid, up: Grid): number {
  const g = gate[this.thread.y][this.thread.x]
  return (g / (1 + Math.exp(-g))) * up[this.thread.y][this.thread.x]
}

/** Cell (x = i, y = t): silu(gate[t][sel[i]]) · up[t][i]: fine sparsity's kept neurons. */
function swigluRowsKernel(this: KernelThis<object>, gate: Grid, up: Grid, sel: Grid): number {
  const g = gate[this.thread.y][sel[0][this.thread.x]]
  return (g / (1 + Math.exp(-g))) * up[this.thread.y][this.thread.x]
}

/** Cell (x = c, y = r): x[start + r][c]. */
function sliceKernel(this: KernelThis<object>, x: Grid, start: number): number {
  return x[start + this.thread.y][this.thread.x]
}

function zerosKernel(this: KernelThis<object>): number {
  return 0
}

/** Cell (x = d, y = t): table[tokens[t]][d]; the input buffer's row holds the tokens first. */
function embeddingKernel(this: KernelThis<object>, table: Grid, input: Grid): number {
  return table[input[0][this.thread.y]][this.thread.x]
}

const simple = (rt: GpuRuntime, name: string, body: unknown) =>
  rt.kernel(`device.${name}`, (c) => c(body as KernelFunction, { output: [1, 1], loopMaxIterations: 1, pipeline: true }))

export const add = (rt: GpuRuntime, a: DeviceBuffer, b: DeviceBuffer, rows: number, cols: number, forward?: Counts): Effect.Effect<DeviceBuffer, KernelError> =>
  rt.dispatch("add", simple(rt, "add", addKernel), [cols, rows], [a.value, b.value], forward)

export const swiglu = (rt: GpuRuntime, gate: DeviceBuffer, up: DeviceBuffer, rows: number, cols: number, forward?: Counts): Effect.Effect<DeviceBuffer, KernelError> =>
  rt.dispatch("swiglu", simple(rt, "swiglu", swigluKernel), [cols, rows], [gate.value, up.value], forward)

export const swigluRows = (rt: GpuRuntime, gate: DeviceBuffer, up: DeviceBuffer, sel: DeviceBuffer, T: number, n: number, forward?: Counts): Effect.Effect<DeviceBuffer, KernelError> =>
  rt.dispatch("swigluRows", simple(rt, "swigluRows", swigluRowsKernel), [n, T], [gate.value, up.value, sel.value], forward)

export const slice = (rt: GpuRuntime, x: DeviceBuffer, cols: number, start: number, count: number, forward?: Counts): Effect.Effect<DeviceBuffer, KernelError> =>
  rt.dispatch("slice", simple(rt, "slice", sliceKernel), [cols, count], [x.value, start], forward)

export const zeros = (rt: GpuRuntime, op: string, rows: number, cols: number, forward?: Counts): Effect.Effect<DeviceBuffer, KernelError> =>
  rt.dispatch(op, simple(rt, "zeros", zerosKernel), [cols, rows], [], forward)

export const embedding = (rt: GpuRuntime, table: DeviceBuffer, cols: number, input: DeviceBuffer, T: number, forward?: Counts): Effect.Effect<DeviceBuffer, KernelError> =>
  rt.dispatch("embedding", simple(rt, "embedding", embeddingKernel), [cols, T], [table.value, input.value], forward)
