// What the simd test files share: the backend's type with its runtime, running ops on a backend in a scope of
// their own, and the row-gather law every weight type obeys.
import { Effect, type Scope } from "effect"
import type { SimdRuntime } from "../simd/SimdRuntime.ts"
import type { KernelError, KernelsShape } from "../src/Kernels.ts"
import type { RawTensor } from "../src/Tensor.ts"
import { bitsEqual } from "../testing/tolerance.ts"

export type Simd = KernelsShape & { readonly runtime: SimdRuntime }

export const run = <A, E>(e: Effect.Effect<A, E>): Promise<A> => Effect.runPromise(e)

/** Run ops on a backend in a scope of their own (its activations freed after). */
export const on = <A>(k: KernelsShape, f: (b: KernelsShape) => Effect.Effect<A, KernelError, Scope.Scope>): Promise<A> => run(Effect.scoped(f(k)))

/** x (T, cols) · Wᵀ, read back. */
export const mm = (k: KernelsShape, t: RawTensor, x: Float32Array, T: number) =>
  on(k, (b) => Effect.gen(function* () {
    return yield* b.read(yield* b.matmul(yield* b.matrix(t), yield* b.upload(x, T, x.length / T)))
  }))

/** A row gather's dense matmul equals matmulRows over the same (sorted) selection, bitwise: the same kernel on the same rows. */
export const rowGatherEqualsMatmulRows = (k: KernelsShape, t: RawTensor, x: Float32Array, T: number, indices: Int32Array, label: string) =>
  on(k, (b) => Effect.gen(function* () {
    const w = yield* b.matrix(t)
    const xa = yield* b.upload(x, T, x.length / T)
    const viaGather = yield* b.read(yield* b.matmul(yield* b.gather(w, indices, "rows"), xa))
    bitsEqual(label, viaGather, yield* b.read(yield* b.matmulRows(w, xa, yield* b.selection(indices))))
  }))
