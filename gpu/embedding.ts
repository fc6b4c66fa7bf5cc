// embedding on gpu.js: out (T, D) = table (V, D) rows at tokens (T), the table resident as a kernel constant.
// Must agree with reference/embedding.ts exactly (a copy, no arithmetic).
import type { KernelFunction } from "gpu.js"
import type { Effect } from "effect"
import type { KernelError } from "../src/Kernels.ts"
import type { GpuRuntime } from "./GpuRuntime.ts"
import { rowViews } from "./matmul.ts"
import { indices, type GpuMatrix, type KernelThis } from "./types.ts"

/** Cell (x = d, y = t): table[tokens[t], d]. */
function embeddingKernel(this: KernelThis<{ table: Array<Float32Array> }>, tokens: Float32Array): number {
  return this.constants.table[tokens[this.thread.y]][this.thread.x]
}

export const embedding = (rt: GpuRuntime, table: GpuMatrix, tokens: Int32Array): Effect.Effect<Float32Array, KernelError> => {
  const kernel = rt.kernel(`embedding#${table.id}`, (create) =>
    create(embeddingKernel as unknown as KernelFunction, {
      output: [table.cols, 1],
      constants: { table: rowViews(table.data, table.rows, table.cols) },
      loopMaxIterations: 1
    })
  )
  return rt.run("embedding", kernel, [table.cols, tokens.length], [indices(tokens)])
}
