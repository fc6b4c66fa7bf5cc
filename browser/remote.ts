/**
 * A Kernels backend in Node whose every op runs in a browser page: each call crosses to the page's
 * GpuKernels (browser/entry.ts) through `page.evaluate`, and the handles it returns (weights, activations,
 * selections, inputs, KV stores) stay in the page, on its device: Node holds only their ids and shapes.
 * Scoped ops run in a page-side scope that mirrors the Node scope they were called in, closed when it closes.
 * With it, the very property factories of sirius-ts/testing, and the forward pass itself, run unchanged
 * against the page's WebGPU or WebGL2 pipeline, while the reference they compare with runs in Node.
 *
 * Round trips cost about a millisecond each: for tiny shapes in tests, not for serving a model (the
 * page generates on its own with `sirius.generate`, and the demo runs entirely in the page).
 */
import { Effect, Layer, Scope } from "effect"
import { BackendUnavailableError } from "../gpu/GpuRuntime.ts"
import { KernelError, Kernels, type KernelsShape } from "../src/Kernels.ts"
import type { RawTensor } from "../src/Tensor.ts"
import { encodeTensor, isWireError, scopedOps, type SiriusPage, type Wire, type WireError } from "./protocol.ts"

/** The part of a playwright `Page` this needs. */
export interface PageLike {
  evaluate<R, A>(fn: (arg: A) => R | Promise<R>, arg: A): Promise<R>
}

/** A page-side handle, as Node sees it: its id and its public shape fields. */
interface RemoteHandle {
  readonly handle: number
}

/** A page backend's Kernels, plus the test hook that forces its device loss (WebGPU: destroy; GL: lose the context). */
export type RemoteKernelsShape = KernelsShape & { readonly loseDevice: Effect.Effect<void, KernelError> }

/** In the page: `globalThis.sirius`. Functions given to `page.evaluate` travel as source text, so each inlines this. */
type Page = { readonly sirius: SiriusPage }

const isTensor = (v: unknown): v is RawTensor => typeof v === "object" && v !== null && "dtype" in v && "data" in v && "shape" in v

/** One argument on the wire: handles by id, typed arrays by value, the rest as JSON. */
const encode = (v: unknown): Wire => {
  if (v === undefined) return { undef: true }
  if (v instanceof Float32Array) return { f32: Array.from(v) }
  if (v instanceof Int32Array) return { i32: Array.from(v) }
  if (v instanceof Uint8Array) return { u8: Array.from(v) }
  if (isTensor(v)) return encodeTensor(v)
  if (typeof v === "object" && v !== null && "handle" in v) return { handle: (v as RemoteHandle).handle }
  return { json: v }
}

/**
 * Open a GpuKernels backend in the page (`mode` as in GpuKernels: "webgpu", "webgl2", "gpu", ...; `pipeline`
 * as in GpuOptions), closed with the scope. Its `name` is the page backend's, e.g. "gpu:webgpu".
 */
export const remoteKernels = (page: PageLike, mode: string, pipeline?: boolean): Effect.Effect<RemoteKernelsShape, BackendUnavailableError | KernelError, Scope.Scope> =>
  Effect.gen(function* () {
    const opened = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () => page.evaluate(([m, p]: readonly [string, boolean | null]) => (globalThis as unknown as Page).sirius.open(m, p ?? undefined), [mode, pipeline ?? null] as const),
        catch: (cause) => new KernelError({ op: "open", backend: `browser:${mode}`, message: String(cause) })
      }),
      (o) => ("id" in o ? Effect.promise(() => page.evaluate((i: number) => (globalThis as unknown as Page).sirius.close(i), o.id)).pipe(Effect.ignore) : Effect.void)
    )
    if (isWireError(opened)) {
      const e = opened.error
      if (e._tag === "BackendUnavailableError") return yield* new BackendUnavailableError({ requested: e.requested ?? mode, reason: e.reason ?? e.message })
      return yield* new KernelError({ op: "open", backend: `browser:${mode}`, message: e.message })
    }
    const { id, name } = opened

    /** The page scope mirroring a Node scope: opened on first use, closed with it. */
    const scopes = new WeakMap<Scope.Scope, Promise<number>>()
    const pageScope = (op: string): Effect.Effect<number, KernelError, Scope.Scope> =>
      Effect.flatMap(Effect.scope, (scope) => {
        let known = scopes.get(scope)
        if (known === undefined) {
          const opening = page.evaluate((i: number) => (globalThis as unknown as Page).sirius.openScope(i), id).then((s) => {
            if (isWireError(s)) throw new Error(s.error.message)
            return s
          })
          known = opening
          scopes.set(scope, known)
          const close = Effect.promise(() => opening.then((s) => page.evaluate(([i, sc]: readonly [number, number]) => (globalThis as unknown as Page).sirius.closeScope(i, sc), [id, s] as const))).pipe(
            Effect.ignore
          )
          return Effect.flatMap(Scope.addFinalizer(scope, close), () => fromPromise(op, opening))
        }
        return fromPromise(op, known)
      })
    const fromPromise = <A>(op: string, p: Promise<A>): Effect.Effect<A, KernelError> =>
      Effect.tryPromise({ try: () => p, catch: (cause) => new KernelError({ op, backend: name, message: String(cause) }) })

    const call = (op: string, args: ReadonlyArray<unknown>, scope: number | undefined): Effect.Effect<Wire, KernelError> =>
      fromPromise(
        op,
        page.evaluate(
          ([i, o, a, s]: readonly [number, string, ReadonlyArray<Wire>, number | null]) => (globalThis as unknown as Page).sirius.call(i, o, a, s ?? undefined),
          [id, op, args.map(encode), scope ?? null] as const
        )
      ).pipe(
        Effect.flatMap((w: Wire | WireError) =>
          isWireError(w) ? Effect.fail(new KernelError({ op: w.error.op ?? op, backend: w.error.backend ?? name, message: w.error.message })) : Effect.succeed(w)
        )
      )
    /** A result off the wire: a handle proxy, values, or JSON. */
    const result = (w: Wire): unknown => {
      if ("handle" in w) return { handle: w.handle, ...w.shape }
      if ("f32" in w) return Float32Array.from(w.f32)
      if ("undef" in w) return undefined
      if ("json" in w) return w.json
      return w
    }
    const op = (name_: string) => (...args: ReadonlyArray<unknown>) =>
      scopedOps.has(name_)
        ? Effect.flatMap(pageScope(name_), (s) => Effect.map(call(name_, args, s), result))
        : Effect.map(call(name_, args, undefined), result)

    const k = {
      name,
      loseDevice: Effect.suspend(() => fromPromise("loseDevice", page.evaluate((i: number) => (globalThis as unknown as Page).sirius.loseDevice(i), id))),
      matrix: op("matrix"),
      vector: op("vector"),
      gather: op("gather"),
      input: op("input"),
      upload: op("upload"),
      read: op("read"),
      selection: op("selection"),
      count: op("count"),
      embedding: op("embedding"),
      slice: op("slice"),
      rmsnorm: op("rmsnorm"),
      matmul: op("matmul"),
      matmulRows: op("matmulRows"),
      matmulTransposedRows: op("matmulTransposedRows"),
      rope: op("rope"),
      attention: op("attention"),
      swiglu: op("swiglu"),
      swigluRows: op("swigluRows"),
      accumulate: op("accumulate"),
      selectNeurons: op("selectNeurons"),
      neuronStatistic: op("neuronStatistic"),
      kvStore: op("kvStore"),
      kvWrite: op("kvWrite"),
      kvCompact: op("kvCompact"),
      kvRead: (kv: unknown, layer: number, length: number) =>
        Effect.map(call("kvRead", [kv, layer, length], undefined), (w) => {
          const r = (w as { json: { keys: ReadonlyArray<number>; values: ReadonlyArray<number> } }).json
          return { keys: Float32Array.from(r.keys), values: Float32Array.from(r.values) }
        })
    }
    return k as unknown as RemoteKernelsShape
  })

/** The Kernels layer of a page backend (see `remoteKernels`). */
export const remoteLayer = (page: PageLike, mode: string, pipeline?: boolean): Layer.Layer<Kernels, BackendUnavailableError | KernelError> =>
  Layer.effect(Kernels, remoteKernels(page, mode, pipeline))
