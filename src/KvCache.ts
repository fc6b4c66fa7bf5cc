/**
 * KvCache: per-layer key/value slots for one sequence, with exactly the operations Sirius needs:
 * write a range of slots (append, or overwrite when verification rewrites a window), truncate
 * (rollback) and compact (move a tree branch's slots into place).
 *
 * Slot i holds the K/V of the token at absolute position i. Storage is allocated once, at a capacity
 * fixed when the request starts (bounded by the model's max_position_embeddings), so a request never
 * allocates without bound.
 */
import type { LlamaConfig } from "./Config.ts"

export interface KvCache {
  readonly capacity: number
  /** Hkv·Dh floats per slot. */
  readonly kvDim: number
  /** keys[l], values[l]: (capacity, Hkv·Dh) for layer l. */
  readonly keys: ReadonlyArray<Float32Array>
  readonly values: ReadonlyArray<Float32Array>
  /** Number of valid slots: positions 0..length-1. */
  length: number
}

export const make = (config: LlamaConfig, capacity: number): KvCache => {
  const kvDim = config.numKeyValueHeads * config.headDim
  const layers = Array.from({ length: config.numHiddenLayers }, () => 0)
  return {
    capacity,
    kvDim,
    keys: layers.map(() => new Float32Array(capacity * kvDim)),
    values: layers.map(() => new Float32Array(capacity * kvDim)),
    length: 0
  }
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

/** Write k, v (T, Hkv·Dh) of one layer into slots start..start+T-1 (overwrites or appends). */
export const write = (cache: KvCache, layer: number, start: number, k: Float32Array, v: Float32Array): void => {
  cache.keys[layer]!.set(k, start * cache.kvDim)
  cache.values[layer]!.set(v, start * cache.kvDim)
}

/** Roll back to the first n slots. */
export const truncate = (cache: KvCache, n: number): void => {
  cache.length = Math.min(cache.length, n)
}

/**
 * Gather slots `from[i]` into slots start+i, in every layer, and make start+from.length the new length.
 * Used to move the winning tree branch into contiguous positions. Sources are read before any write.
 */
export const compact = (cache: KvCache, from: ReadonlyArray<number>, start: number): void => {
  const d = cache.kvDim
  for (const store of [...cache.keys, ...cache.values]) {
    const rows = from.map((s) => store.slice(s * d, (s + 1) * d))
    rows.forEach((row, i) => store.set(row, (start + i) * d))
  }
  cache.length = start + from.length
}

/** Copy of the valid K/V (layer-major) for comparisons in tests. */
export const snapshot = (cache: KvCache): { keys: Float32Array[]; values: Float32Array[] } => ({
  keys: cache.keys.map((k) => k.slice(0, cache.length * cache.kvDim)),
  values: cache.values.map((v) => v.slice(0, cache.length * cache.kvDim))
})
