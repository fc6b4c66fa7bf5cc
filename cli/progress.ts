/**
 * The load progress bar the CLI draws on stderr when stderr is a terminal: reading the checkpoint, then
 * making it resident on the backend, in bytes and tensors. Redrawn at most every 100 ms; nothing when
 * stderr is not a TTY (logs and pipes stay clean).
 */
import type { LoadProgress } from "../src/LoadProgress.ts"

const gb = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : `${(n / 1e6).toFixed(1)} MB`)

export interface ProgressBar {
  (p: LoadProgress): void
  /** Clear the bar's line. */
  readonly done: () => void
}

export const loadProgressBar = (io: { readonly err: (s: string) => void; readonly errIsTTY?: boolean }): ProgressBar | undefined => {
  if (io.errIsTTY !== true) return undefined
  let last = 0
  let drawn = false
  const bar = ((p: LoadProgress) => {
    const now = performance.now()
    if (now - last < 100 && p.tensors < p.totalTensors) return
    last = now
    const width = 24
    const filled = p.totalBytes > 0 ? Math.round((p.bytes / p.totalBytes) * width) : width
    const what = p.phase === "read" ? "reading" : `loading onto ${p.source}`
    io.err(`\r\x1b[K${what} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${gb(p.bytes)} / ${gb(p.totalBytes)}, ${p.tensors}/${p.totalTensors} tensors`)
    drawn = true
  }) as ProgressBar
  Object.assign(bar, { done: () => void (drawn && io.err("\r\x1b[K")) })
  return bar
}
