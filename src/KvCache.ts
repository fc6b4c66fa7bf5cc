/**
 * KvCache: one request's key/value slots, with exactly the operations Sirius needs: write a range of slots
 * (append, or overwrite when verification rewrites a window), truncate (rollback) and compact (move a tree
 * branch's slots into place).
 *
 * The slots live on the backend (a Kernels `KvStore`, freed with the scope that made it); this module keeps
 * the one number the host needs, the valid length, and checks every write against it. Slot i holds the K/V
 * of the token at absolute position i. The capacity is fixed when the request starts (bounded by the model's
 * max_position_embeddings), so a request never allocates without bound.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import type { KernelError, KernelsShape, KvStore } from "./Kernels.ts"
import type { LlamaConfig } from "./Config.ts"

export interface KvCache {
  readonly store: KvStore
  readonly capacity: number
  /** Hkv·Dh floats per slot. */
  readonly kvDim: number
  /** Number of valid slots: positions 0..length-1. */
  length: number
}

/** A cache of `capacity` slots on the backend, freed when the scope closes. */
export const make = (kernels: KernelsShape, config: LlamaConfig, capacity: number): Effect.Effect<KvCache, KernelError, Scope.Scope> => {
  return Effect.map(kernels.kvStore(config.numHiddenLayers, config.numKeyValueHeads, config.headDim, capacity), (store): KvCache => ({
    store,
    capacity,
    kvDim: store.kvDim,
    length: 0
  }))
}

/**
 * Declare that slots start..start+T-1 are about to be written by a forward pass. Slots below `start`
 * stay; slots already past start+T keep their (now stale) contents until truncated. No holes allowed.
 */
export const reserve = (cache: KvCache, start: number, T: number): void => {
  if (start > cache.length) throw new Error(`KvCache: write at slot ${start} would leave a hole (length ${cache.length})`)
  if (start + T > cache.capacity) throw new Error(`KvCache: ${start + T} slots exceed the capacity ${cache.capacity}`)
  cache.length = Math.max(cache.length, start + T)
}

/** Roll back to the first n slots. */
export const truncate = (cache: KvCache, n: number): void => {
  cache.length = Math.min(cache.length, n)
}

/**
 * Gather slots `from[i]` into slots start+i, in every layer, and make start+from.length the new length.
 * Used to move the winning tree branch into contiguous positions. Sources are read before any write.
 */
export const compact = (kernels: KernelsShape, cache: KvCache, from: ReadonlyArray<number>, start: number): Effect.Effect<void, KernelError> =>
  Effect.map(kernels.kvCompact(cache.store, Int32Array.from(from), start), () => {
    cache.length = start + from.length
  })
