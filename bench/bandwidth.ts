/**
 * The machine's read bandwidth, measured the way the simd kernels read weights: a ≥ 1 GiB buffer in a
 * shared wasm memory, summed as f32x4 in 256 KiB chunks claimed by the main thread and `threads − 1`
 * workers (the very SimdRuntime and job protocol the matmuls use). This is the roofline a decode step
 * is compared against (`bandwidthFraction`).
 */
import { OP_PROBE } from "../simd/layout.ts"
import { SimdRuntime } from "../simd/SimdRuntime.ts"

export interface BandwidthOptions {
  readonly threads: number
  /** Bytes summed per pass (default 1 GiB: far beyond any cache). */
  readonly bytes?: number
  /** Passes; the reported figure is the median (default 5, after one warm-up pass). */
  readonly passes?: number
}

export interface BandwidthResult {
  readonly readBandwidthGBps: number
  /** Every pass's GB/s (10⁹ bytes per second), warm-up excluded. */
  readonly passesGBps: ReadonlyArray<number>
  readonly bytes: number
}

const CHUNK = 256 * 1024

/** Sum a big buffer on `threads` threads; GB/s = 10⁹ bytes/s. */
export const measureReadBandwidth = async (options: BandwidthOptions): Promise<BandwidthResult> => {
  const bytes = Math.ceil((options.bytes ?? 2 ** 30) / CHUNK) * CHUNK
  const passes = options.passes ?? 5
  const rt = new SimdRuntime({ threads: options.threads, spinMs: 50, maxBytes: Math.min(2 ** 32, bytes + 2 ** 24) })
  try {
    const base = rt.alloc(bytes)
    // Write every page first: untouched memory reads from the kernel's shared zero page (cache-fast, bogus).
    rt.u8.fill(0x3c, base, base + bytes)
    const [sink] = rt.scratch([(bytes / CHUNK) * 4])
    const chunks = bytes / CHUNK
    const pass = (): number => {
      const t0 = performance.now()
      rt.run(OP_PROBE, chunks, [base, CHUNK, sink!])
      return bytes / ((performance.now() - t0) * 1e6)
    }
    // Warm-up: tiers the probe up to optimised code and gets the workers spinning.
    await waitForWorkers(rt, pass)
    const passesGBps = Array.from({ length: passes }, pass)
    return { readBandwidthGBps: median(passesGBps), passesGBps, bytes }
  } finally {
    await rt.close()
  }
}

/** Run `pass` until every worker has taken part once (they start asynchronously), at most ~5 s. */
const waitForWorkers = async (rt: SimdRuntime, pass: () => number): Promise<void> => {
  const deadline = Date.now() + 5000
  pass()
  while (rt.chunkCounts().some((n) => n === 0) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10))
    pass()
  }
}

export const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}
