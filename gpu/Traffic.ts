/**
 * Traffic: what crosses between the host and the device in the gpu pipeline (gpu/pipeline.ts), counted per
 * runtime and per forward pass.
 *
 * Three kinds of host → device upload are told apart, because they recur at different rates:
 *   - `input`: a forward pass's tokens, positions and tree mask (once per forward), and test/tool uploads
 *     of activations (`Kernels.upload`);
 *   - `resident`: data uploaded once and kept: weights, RoPE tables, and request-lifetime index lists
 *     (coarse sparsity's gather indices, a tree's compaction slots, `Kernels.selection`);
 * and device → host readbacks (the logits; coarse sparsity's per-layer statistic in its prefill; a
 * fine-threshold selection's count). `dispatches` counts kernel launches; each one also writes its
 * parameters (sizes and scalar arguments, tens of bytes: a WebGPU uniform buffer, GL uniforms), which gpu.js
 * does per launch and which are not counted as uploads.
 *
 * A forward pass is the scope in which `Kernels.input` was called (Forward.ts: one Effect.scoped per pass):
 * everything done on that scope's activations is charged to it, so interleaved requests do not mix.
 *
 * Not here: the transfers themselves (GpuRuntime.ts).
 */

export interface Counts {
  /** Host → device uploads of forward data (`input`, `upload`) and their bytes. */
  inputUploads: number
  inputBytes: number
  /** Host → device uploads of resident data (weights, tables, index lists) and their bytes. */
  residentUploads: number
  residentBytes: number
  /** Device → host readbacks and their bytes. */
  readbacks: number
  readbackBytes: number
  /** Kernel launches. */
  dispatches: number
}

/** One forward pass's traffic (charged while its scope is open). */
export interface ForwardTraffic extends Counts {
  /** The pass's token count T. */
  readonly tokens: number
}

export const zero = (): Counts => ({ inputUploads: 0, inputBytes: 0, residentUploads: 0, residentBytes: 0, readbacks: 0, readbackBytes: 0, dispatches: 0 })

/** Uploads of every kind. */
export const uploads = (c: Counts): number => c.inputUploads + c.residentUploads

/** The counters of one runtime: totals since it started, and the forward passes (the newest `keep`). */
export interface Traffic {
  readonly total: Counts
  /** Forward passes so far (also those dropped from `forwards`). */
  forwardCount: number
  /** The most recent forward passes, oldest first. */
  readonly forwards: Array<ForwardTraffic>
}

/** Forward records kept (a long generation's oldest are dropped). */
const keep = 4096

export const make = (): Traffic => ({ total: zero(), forwardCount: 0, forwards: [] })

/** Open a forward pass's record (at `Kernels.input`). */
export const beginForward = (t: Traffic, tokens: number): ForwardTraffic => {
  const f: ForwardTraffic = { ...zero(), tokens }
  t.forwardCount++
  t.forwards.push(f)
  if (t.forwards.length > keep) t.forwards.splice(0, t.forwards.length - keep)
  return f
}

/** Add `delta` to the totals and to `forward` when the work belongs to one. */
export const charge = (t: Traffic, forward: Counts | undefined, delta: Partial<Counts>): void => {
  for (const c of forward === undefined ? [t.total] : [t.total, forward])
    for (const [key, value] of Object.entries(delta) as Array<[keyof Counts, number]>) c[key] += value
}

/** A copy of the counters (for reports: later work does not change it). */
export const snapshot = (t: Traffic): { readonly total: Counts; readonly forwardCount: number; readonly forwards: ReadonlyArray<ForwardTraffic> } => ({
  total: { ...t.total },
  forwardCount: t.forwardCount,
  forwards: t.forwards.map((f) => ({ ...f }))
})
