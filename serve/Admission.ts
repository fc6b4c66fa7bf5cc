/**
 * Admission: request slots, the FIFO queue behind them, and the backend's memory.
 *
 * `parallel` requests run at once (each its own stream over the one shared model); up to `queue` more wait
 * in arrival order. A request is admitted when a slot or a queue place is free at its arrival, and refused
 * at once otherwise (Overloaded: the server answers 503 with Retry-After), so a burst never makes anything
 * hang. A place is held by the request's scope: whatever ends the request (its last token, an error, a
 * client that disconnects while it runs or while it waits) gives it back.
 *
 * Memory: a request declares what it will allocate in the backend's own memory (`Request.backendBytes`:
 * coarse sparsity's gathered weights, later its KV cache) and the backend reports `{ usedBytes,
 * limitBytes }` (`Kernels.memory`). The queue's head starts only when it fits beside the weights and what
 * the running requests reserved; until then it waits for one to finish (strictly first in, first out, so a
 * large request is not starved by small ones). A request that could not fit even alone is refused at once
 * (NeverFits), instead of failing mid-generation. The baseline (weights and anything else resident) is the
 * backend's `usedBytes` whenever no request runs; while requests run, the larger of that baseline plus
 * their reservations and the live `usedBytes` counts as used. Backends without `memory` are not limited.
 *
 * This module knows nothing of HTTP or of the engine: only counts, bytes and the two functions above.
 */
import { Deferred, Effect, Schema, type Scope } from "effect"

/** Every slot and queue place is taken. */
export class Overloaded extends Schema.TaggedError<Overloaded>()("Overloaded", { message: Schema.String }) {}

/** The request's backend allocation exceeds what the backend can hold beside the model. */
export class NeverFits extends Schema.TaggedError<NeverFits>()("NeverFits", {
  bytes: Schema.Number,
  availableBytes: Schema.Number,
  limitBytes: Schema.Number,
  message: Schema.String
}) {}

export interface Options {
  readonly parallel: number
  readonly queue: number
  /** The backend's memory (Kernels.memory); undefined, or returning undefined: no limit. */
  readonly memory?: (() => { readonly usedBytes: number; readonly limitBytes: number } | undefined) | undefined
}

export interface Snapshot {
  readonly parallel: number
  readonly queue: number
  readonly busy: number
  readonly queued: number
  readonly reservedBytes: number
}

export interface Admission {
  /**
   * Take a place for a request that will allocate `bytes` on the backend, then wait (interruptibly) until it
   * may run. The place is given back when the current scope closes.
   */
  readonly enter: (bytes: number) => Effect.Effect<void, Overloaded | NeverFits, Scope.Scope>
  readonly snapshot: () => Snapshot
}

interface Ticket {
  readonly bytes: number
  state: "queued" | "running" | "done"
  readonly started: Deferred.Deferred<void, NeverFits>
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`

export const make = (options: Options): Admission => {
  const queue: Array<Ticket> = []
  let busy = 0
  let reserved = 0
  let baseline = 0

  /** Bytes in use on the backend as admission sees them (see the module comment). */
  const used = (m: { readonly usedBytes: number }) => {
    if (busy === 0) baseline = m.usedBytes
    return Math.max(m.usedBytes, baseline + reserved)
  }
  const neverFits = (bytes: number): NeverFits | undefined => {
    const m = options.memory?.()
    if (m === undefined || bytes === 0) return undefined
    if (busy === 0) baseline = m.usedBytes
    const available = m.limitBytes - baseline
    return bytes <= available
      ? undefined
      : new NeverFits({
          bytes,
          availableBytes: available,
          limitBytes: m.limitBytes,
          message: `this request needs ${mib(bytes)} of the backend's memory, and only ${mib(available)} of its ${mib(m.limitBytes)} are free beside the model: ask for less (a lower sirius.density, fewer max_tokens, fine sparsity or mode full)`
        })
  }
  const fits = (bytes: number): boolean => {
    const m = options.memory?.()
    return m === undefined || bytes === 0 || used(m) + bytes <= m.limitBytes
  }

  /** Start queued requests, in order, while a slot is free and the head fits. */
  const pump = () => {
    while (queue.length > 0 && busy < options.parallel) {
      const head = queue[0]!
      if (!fits(head.bytes)) {
        if (busy > 0) return // it waits for a running request to finish
        // nothing runs and it still does not fit: waiting cannot help
        queue.shift()
        head.state = "done"
        Deferred.doneUnsafe(head.started, Effect.fail(neverFits(head.bytes) ?? new NeverFits({ bytes: head.bytes, availableBytes: 0, limitBytes: 0, message: "the request does not fit in the backend's memory" })))
        continue
      }
      queue.shift()
      head.state = "running"
      busy++
      reserved += head.bytes
      Deferred.doneUnsafe(head.started, Effect.void)
    }
  }

  const release = (t: Ticket) => {
    if (t.state === "queued") queue.splice(queue.indexOf(t), 1)
    else if (t.state === "running") {
      busy--
      reserved -= t.bytes
    }
    t.state = "done"
    pump()
  }

  const admit = (bytes: number): Effect.Effect<Ticket, Overloaded | NeverFits> =>
    Effect.suspend((): Effect.Effect<Ticket, Overloaded | NeverFits> => {
      const refused = neverFits(bytes)
      if (refused !== undefined) return Effect.fail(refused)
      if (busy + queue.length >= options.parallel + options.queue)
        return Effect.fail(
          new Overloaded({ message: `the server is at capacity: ${options.parallel} request${options.parallel === 1 ? "" : "s"} running and ${options.queue} waiting; retry later` })
        )
      const ticket: Ticket = { bytes, state: "queued", started: Deferred.makeUnsafe<void, NeverFits>() }
      queue.push(ticket)
      pump()
      return Effect.succeed(ticket)
    })

  return {
    enter: (bytes) =>
      Effect.acquireRelease(admit(bytes), (t) => Effect.sync(() => release(t))).pipe(Effect.flatMap((t) => Deferred.await(t.started))),
    snapshot: () => ({ parallel: options.parallel, queue: options.queue, busy, queued: queue.length, reservedBytes: reserved })
  }
}
