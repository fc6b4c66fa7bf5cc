/**
 * A Kernels backend in Node whose dense ops run in a browser page: every call crosses to the page's
 * GpuKernels host ops (browser/entry.ts) through `page.evaluate`; reference/host.ts's `fromHost` holds the
 * activations and the KV cache in Node. With it, the very property factories of
 * sirius-ts/testing, and the forward pass itself, run unchanged against WebGPU or WebGL2 in a real
 * browser, while the reference they compare with runs in Node.
 *
 * Round trips cost about a millisecond each: for tiny shapes in tests, not for serving a model (the
 * page generates on its own with `sirius.generate`).
 */
import { Effect, Layer } from "effect"
import type { Scope } from "effect"
import { BackendUnavailableError } from "../gpu/GpuRuntime.ts"
import { fromHost, type HostKernelsShape } from "../reference/host.ts"
import { KernelError, Kernels, type KernelsShape, type Matrix, type Vector } from "../src/Kernels.ts"
import { encodeTensor, isWireError, type SiriusPage, type Wire, type WireError } from "./protocol.ts"

/** The part of a playwright `Page` this needs. */
export interface PageLike {
  evaluate<R, A>(fn: (arg: A) => R | Promise<R>, arg: A): Promise<R>
}

interface RemoteHandle {
  readonly handle: number
}

/** In the page: `globalThis.sirius`. Functions given to `page.evaluate` travel as source text, so each inlines this. */
type Page = { readonly sirius: SiriusPage }

const f32 = (a: Float32Array): Wire => ({ f32: Array.from(a) })
const i32 = (a: Int32Array): Wire => ({ i32: Array.from(a) })
const json = (v: unknown): Wire => ({ json: v })

/**
 * Open a GpuKernels backend in the page (`mode` as in GpuKernels: "webgpu", "webgl2", "gpu", ...), closed
 * with the scope. Its `name` is the page backend's, e.g. "gpu:webgpu".
 */
export const remoteKernels = (page: PageLike, mode: string): Effect.Effect<KernelsShape, BackendUnavailableError | KernelError, Scope.Scope> =>
  Effect.gen(function* () {
    const opened = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () => page.evaluate((m: string) => (globalThis as unknown as Page).sirius.open(m), mode),
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
    const call = (op: string, args: ReadonlyArray<Wire>): Effect.Effect<Wire, KernelError> =>
      Effect.tryPromise({
        try: () => page.evaluate(([i, o, a]: readonly [number, string, ReadonlyArray<Wire>]) => (globalThis as unknown as Page).sirius.call(i, o, a), [id, op, args] as const),
        catch: (cause) => new KernelError({ op, backend: name, message: String(cause) })
      }).pipe(
        Effect.flatMap((w: Wire | WireError) =>
          isWireError(w) ? Effect.fail(new KernelError({ op, backend: w.error.backend ?? name, message: w.error.message })) : Effect.succeed(w)
        )
      )
    const values = (op: string, args: ReadonlyArray<Wire>) => Effect.map(call(op, args), (w) => Float32Array.from((w as { f32: ReadonlyArray<number> }).f32))
    const handle = (h: Matrix | Vector): Wire => ({ handle: (h as unknown as RemoteHandle).handle })

    // the page runs the backend's per-op host kernels; fromHost supplies the rest here in Node
    const host: HostKernelsShape = {
      name,
      matrix: (t) => Effect.map(call("matrix", [encodeTensor(t)]), (w) => w as unknown as Matrix),
      vector: (t) => Effect.map(call("vector", [encodeTensor(t)]), (w) => w as unknown as Vector),
      gather: (w, rows, axis) => Effect.map(call("gather", [handle(w), i32(rows), json(axis)]), (m) => m as unknown as Matrix),
      matmul: (w, x, T) => values("matmul", [handle(w), f32(x), json(T)]),
      matmulRows: (w, x, T, rows) => values("matmulRows", [handle(w), f32(x), json(T), i32(rows)]),
      matmulTransposedRows: (wT, h, T, rows) => values("matmulTransposedRows", [handle(wT), f32(h), json(T), i32(rows)]),
      embedding: (table, tokens) => values("embedding", [handle(table), i32(tokens)]),
      rmsnorm: (x, weight, T, eps) => values("rmsnorm", [f32(x), handle(weight), json(T), json(eps)]),
      rope: (x, T, heads, headDim, positions, invFreq) =>
        values("rope", [f32(x), json(T), json(heads), json(headDim), i32(positions), f32(invFreq)]),
      attention: (q, keys, values_, shape) =>
        values("attention", [f32(q), f32(keys.subarray(0, shape.kvLength * shape.numKeyValueHeads * shape.headDim)), f32(values_.subarray(0, shape.kvLength * shape.numKeyValueHeads * shape.headDim)), json({ ...shape, positions: Array.from(shape.positions) })]),
      swiglu: (gate, up) => values("swiglu", [f32(gate), f32(up)]),
      add: (a, b) => values("add", [f32(a), f32(b)])
    }
    return fromHost(host)
  })

/** The Kernels layer of a page backend (see `remoteKernels`). */
export const remoteLayer = (page: PageLike, mode: string): Layer.Layer<Kernels, BackendUnavailableError | KernelError> =>
  Layer.effect(Kernels, remoteKernels(page, mode))
