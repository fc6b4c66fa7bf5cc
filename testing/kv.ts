/**
 * KV cache snapshots for tests: the valid slots of every layer, read back from the backend
 * (Kernels.kvRead), for comparing the KV a Sirius verification leaves with a fresh prefill's.
 */
import { Effect } from "effect"
import type { KernelError, KernelsShape } from "../src/Kernels.ts"
import type { KvCache } from "../src/KvCache.ts"

export interface KvSnapshot {
  /** keys[l], values[l]: (length, kvDim) of layer l. */
  readonly keys: ReadonlyArray<Float32Array>
  readonly values: ReadonlyArray<Float32Array>
  readonly length: number
}

/** The valid slots (0..cache.length-1) of every layer. */
export const snapshot = (kernels: KernelsShape, cache: KvCache): Effect.Effect<KvSnapshot, KernelError> =>
  Effect.gen(function* () {
    const keys: Array<Float32Array> = []
    const values: Array<Float32Array> = []
    for (let l = 0; l < cache.store.layers; l++) {
      const layer = yield* kernels.kvRead(cache.store, l, cache.length)
      keys.push(layer.keys)
      values.push(layer.values)
    }
    return { keys, values, length: cache.length }
  })
