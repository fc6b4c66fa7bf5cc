// The KV cache on the device: per layer a keys and a values buffer, [Hkv·Dh, capacity] (slot s is row s).
// gpu.js has no partial or in-place writes: a kernel writes its whole output, and a fresh one per call
// (immutable pipeline outputs). So a write re-emits the layer's buffer from the old one plus the new rows,
// on the device, and the old buffer is released: each write moves capacity·Hkv·Dh floats (read and
// written) instead of T·Hkv·Dh. That cost is measured and stated in the README; nothing crosses to the host.
// Must agree exactly with reference/host.ts's KV moves (copies, no arithmetic).
import type { KernelFunction } from "gpu.js"
import type { Effect } from "effect"
import type { KernelError } from "../../src/Kernels.ts"
import type { GpuRuntime } from "../GpuRuntime.ts"
import type { Counts } from "../Traffic.ts"
import type { DeviceBuffer, Grid, KernelThis } from "../types.ts"

/** Cell (x = c, y = slot): rows[slot − start][c] for slots start..start+T−1, else old[slot][c]. */
function writeKernel(this: KernelThis<object>, old: Grid, rows: Grid, start: number, T: number): number {
  const slot = this.thread.y
  if (slot >= start && slot < start + T) return rows[slot - start][this.thread.x]
  return old[slot][this.thread.x]
}

/** Cell (x = c, y = slot): old[from[slot − start]][c] for slots start..start+m−1, else old[slot][c]. */
function compactKernel(this: KernelThis<object>, old: Grid, from: Grid, start: number, m: number): number {
  const slot = this.thread.y
  if (slot >= start && slot < start + m) return old[from[0][slot - start]][this.thread.x]
  return old[slot][this.thread.x]
}

/** A layer buffer with rows start..start+T−1 replaced by `rows` (T, kvDim). */
export const write = (rt: GpuRuntime, old: DeviceBuffer, kvDim: number, capacity: number, rows: DeviceBuffer, start: number, T: number, forward?: Counts): Effect.Effect<DeviceBuffer, KernelError> =>
  rt.dispatch("kvWrite", rt.kernel("device.kv.write", (c) => c(writeKernel as unknown as KernelFunction, { output: [1, 1], loopMaxIterations: 1, pipeline: true })), [kvDim, capacity], [old.value, rows.value, start, T], forward)

/** A layer buffer with slots start+i taken from slots from[i] of the old one (sources read before any write). */
export const compact = (rt: GpuRuntime, old: DeviceBuffer, kvDim: number, capacity: number, from: DeviceBuffer, start: number, m: number): Effect.Effect<DeviceBuffer, KernelError> =>
  rt.dispatch("kvCompact", rt.kernel("device.kv.compact", (c) => c(compactKernel as unknown as KernelFunction, { output: [1, 1], loopMaxIterations: 1, pipeline: true })), [kvDim, capacity], [old.value, from.value, start, m])
