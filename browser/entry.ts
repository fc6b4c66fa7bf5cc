/**
 * The browser bundle's entry (built by browser/build.ts with esbuild): installs `globalThis.sirius`, the
 * page-side API of protocol.ts, over the library itself: GpuKernels on WebGPU/WebGL2 (or any gpu.js
 * backend the page has), a fetch-based model loader, and Generation.generate.
 *
 * A Node test drives it through playwright (properties/browser.test.ts): kernel properties run their
 * ops here through `open`/`call`, and `generate` decodes a whole model from the page's origin.
 */
import { Cause, Effect, Exit, Scope, Stream } from "effect"
import { BackendUnavailableError, gpuBackends, GpuKernels, type GpuKernelsShape, type GpuMode } from "../gpu/index.ts"
import * as Forward from "../src/Forward.ts"
import * as Generation from "../src/Generation.ts"
import { Kernels, type Matrix, type Vector } from "../src/Kernels.ts"
import * as KvCache from "../src/KvCache.ts"
import * as Model from "../src/Model.ts"
import { loadFromUrl } from "./load.ts"
import { decodeTensor, type GenerateRequest, type GenerateResult, type SiriusPage, type Wire, type WireError } from "./protocol.ts"

const backendsReason = async (): Promise<Record<string, string | null>> => {
  const out: Record<string, string | null> = {}
  for (const mode of gpuBackends) {
    const exit = await Effect.runPromiseExit(Effect.scoped(GpuKernels.make({ mode })))
    out[mode] = Exit.isSuccess(exit) ? null : errorOf(exit.cause).error.message
  }
  return out
}

/** Any failure as a WireError (typed errors keep their tag and fields). */
const errorOf = (cause: Cause.Cause<unknown>): WireError => {
  const e = Cause.squash(cause)
  if (e instanceof BackendUnavailableError) return { error: { _tag: e._tag, message: e.message, requested: e.requested, reason: e.reason } }
  const tagged = e as { _tag?: string; message?: string; op?: string; backend?: string }
  return { error: { _tag: tagged._tag ?? "Error", message: tagged.message ?? String(e), ...(tagged.op ? { op: tagged.op } : {}), ...(tagged.backend ? { backend: tagged.backend } : {}) } }
}

const run = async <A>(effect: Effect.Effect<A, unknown>): Promise<A | WireError> => {
  const exit = await Effect.runPromiseExit(effect)
  return Exit.isSuccess(exit) ? exit.value : errorOf(exit.cause)
}

interface Open {
  readonly scope: Scope.Closeable
  readonly kernels: GpuKernelsShape
  readonly handles: Map<number, Matrix | Vector>
}
const open = new Map<number, Open>()
let nextOpen = 1
let nextHandle = 1

const f32 = (w: Wire): Float32Array => Float32Array.from((w as { f32: ReadonlyArray<number> }).f32)
const i32 = (w: Wire): Int32Array => Int32Array.from((w as { i32: ReadonlyArray<number> }).i32)
const out = (a: Float32Array): Wire => ({ f32: Array.from(a) })

const call = (o: Open, op: string, args: ReadonlyArray<Wire>): Effect.Effect<Wire, unknown> => {
  const k = o.kernels.host
  const handle = <H>(w: Wire): H => o.handles.get((w as { handle: number }).handle) as H
  const keep = (h: Matrix | Vector): Wire => {
    const id = nextHandle++
    o.handles.set(id, h)
    return "rows" in h ? { handle: id, rows: h.rows, cols: h.cols } : { handle: id, length: h.length }
  }
  const json = <J>(w: Wire): J => (w as { json: J }).json
  switch (op) {
    case "matrix":
      return Effect.map(k.matrix(decodeTensor(args[0] as Extract<Wire, { tensor: unknown }>)), keep)
    case "vector":
      return Effect.map(k.vector(decodeTensor(args[0] as Extract<Wire, { tensor: unknown }>)), keep)
    case "gather": // lives as long as the open backend (its scope)
      return Effect.map(Scope.provide(o.scope)(k.gather(handle(args[0]!), i32(args[1]!), json<"rows" | "columns">(args[2]!))), keep)
    case "matmul":
      return Effect.map(k.matmul(handle(args[0]!), f32(args[1]!), json<number>(args[2]!)), out)
    case "matmulRows":
      return Effect.map(k.matmulRows(handle(args[0]!), f32(args[1]!), json<number>(args[2]!), i32(args[3]!)), out)
    case "matmulTransposedRows":
      return Effect.map(k.matmulTransposedRows(handle(args[0]!), f32(args[1]!), json<number>(args[2]!), i32(args[3]!)), out)
    case "embedding":
      return Effect.map(k.embedding(handle(args[0]!), i32(args[1]!)), out)
    case "rmsnorm":
      return Effect.map(k.rmsnorm(f32(args[0]!), handle(args[1]!), json<number>(args[2]!), json<number>(args[3]!)), out)
    case "rope":
      return Effect.map(
        k.rope(f32(args[0]!), json<number>(args[1]!), json<number>(args[2]!), json<number>(args[3]!), i32(args[4]!), f32(args[5]!)),
        out
      )
    case "attention": {
      const s = json<{ T: number; numHeads: number; numKeyValueHeads: number; headDim: number; kvLength: number; positions: ReadonlyArray<number> }>(args[3]!)
      return Effect.map(k.attention(f32(args[0]!), f32(args[1]!), f32(args[2]!), { ...s, positions: Int32Array.from(s.positions) }), out)
    }
    case "swiglu":
      return Effect.map(k.swiglu(f32(args[0]!), f32(args[1]!)), out)
    case "add":
      return Effect.map(k.add(f32(args[0]!), f32(args[1]!)), out)
    default:
      return Effect.die(new Error(`unknown op ${op}`))
  }
}

const generate = (request: GenerateRequest): Effect.Effect<GenerateResult, unknown> =>
  Effect.scoped(
    Effect.gen(function* () {
      const kernels = yield* GpuKernels.make({ mode: request.mode as GpuMode })
      const t0 = performance.now()
      const { config, weights } = yield* loadFromUrl(request.base)
      const model = yield* Effect.provideService(Model.fromWeights(config, weights), Kernels, kernels)
      const loadMs = performance.now() - t0
      const prefill = yield* Forward.forward(model, yield* KvCache.make(kernels, config, request.prompt.length), Int32Array.from(request.prompt), 0, "last")
      const t1 = performance.now()
      const events = yield* Stream.runCollect(Generation.generate(model, { prompt: request.prompt, maxNewTokens: request.maxNewTokens }))
      const finished = Array.from(events).find((e) => e._tag === "Finished")
      if (finished === undefined || finished._tag !== "Finished") return yield* Effect.die(new Error("generation ended without a Finished event"))
      const result: GenerateResult = {
        backend: kernels.name,
        tokens: finished.tokens,
        prefillLogits: Array.from(prefill),
        tokensPerSecond: finished.stats.tokensPerSecond,
        loadMs,
        generateMs: performance.now() - t1
      }
      return result
    })
  )

const sirius: SiriusPage = {
  backends: backendsReason,
  open: async (mode) => {
    const scope = Effect.runSync(Scope.make())
    const made = await run(Scope.provide(GpuKernels.make({ mode: mode as GpuMode }), scope))
    if ("error" in made) {
      await Effect.runPromise(Scope.close(scope, Exit.void))
      return made
    }
    const id = nextOpen++
    open.set(id, { scope, kernels: made, handles: new Map() })
    return { id, name: made.name }
  },
  call: (id, op, args) => {
    const o = open.get(id)
    if (o === undefined) return Promise.resolve({ error: { _tag: "Error", message: `no open backend ${id}` } })
    return run(call(o, op, args))
  },
  close: async (id) => {
    const o = open.get(id)
    open.delete(id)
    if (o !== undefined) await Effect.runPromise(Scope.close(o.scope, Exit.void))
  },
  generate: (request) => run(generate(request))
}

;(globalThis as { sirius?: SiriusPage }).sirius = sirius
