/**
 * The worker side of the simd/ thread pool, as JavaScript source run with `new Worker(src, { eval: true })`
 * (so it works unchanged from TS sources under vitest, from dist/, and without a separate file to ship).
 *
 * A worker instantiates the same compiled module on the same shared memory, then loops: wait for the
 * main thread to bump WAKE, run `work()` (claim chunks until none is left), repeat. It spins on WAKE
 * for `spinMs` after each job (a generation keeps it hot: waking a sleeping thread costs milliseconds
 * on the VMs of docs/measurements.md) and only then sleeps in Atomics.wait. It never blocks the main
 * thread: a job whose chunks were all claimed by others simply finds nothing to do.
 *
 * workerData: { module: WebAssembly.Module, memory: WebAssembly.Memory, index: number, spinMs: number }
 */
import { QUIT, SLEEPERS, STATS, WAKE } from "./layout.ts"

export const workerSource = `
const { workerData } = require("node:worker_threads")
const { module, memory, index, spinMs } = workerData
const { work } = new WebAssembly.Instance(module, { env: { memory } }).exports
const ctl = new Int32Array(memory.buffer, 0, 1024)
const WAKE = ${WAKE / 4}, SLEEPERS = ${SLEEPERS / 4}, QUIT = ${QUIT / 4}, STATS = ${STATS / 4} + index
let seen = Atomics.load(ctl, WAKE)
for (;;) {
  let now = Atomics.load(ctl, WAKE)
  if (now === seen) {
    let spins = 0
    let start = performance.now()
    while ((now = Atomics.load(ctl, WAKE)) === seen) {
      if ((++spins & 1023) === 0 && performance.now() - start > spinMs) {
        Atomics.add(ctl, SLEEPERS, 1)
        Atomics.wait(ctl, WAKE, seen)
        Atomics.sub(ctl, SLEEPERS, 1)
        start = performance.now()
      }
    }
  }
  seen = now
  if (Atomics.load(ctl, QUIT) !== 0) break
  const ran = work()
  if (ran > 0) Atomics.add(ctl, STATS, ran)
}
`
