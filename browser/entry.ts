/**
 * The browser bundle's entry for tests (built by browser/build.ts with esbuild): installs `globalThis.sirius`,
 * the page-side API of protocol.ts, over the library itself: GpuKernels on WebGPU/WebGL2 (or any gpu.js
 * backend the page has; the pipeline by default), a fetch-based model loader, and Generation.generate.
 *
 * A Node test drives it through playwright (properties/browser.test.ts): kernel properties run every
 * Kernels op here through `open`/`openScope`/`call` (handles stay in the page; browser/remote.ts is the Node
 * side), and `generate` runs a whole request on a model from the page's origin, reporting each forward
 * pass's transfers.
 *
 * Not here: the demo page (browser/demo/), which bundles the engine with its own UI.
 */
import { Cause, Effect, Exit, Scope, Stream } from "effect"
import { BackendUnavailableError, gpuBackends, GpuKernels, type GpuKernelsShape, type GpuMode } from "../gpu/index.ts"
import * as Traffic from "../gpu/Traffic.ts"
import * as Forward from "../src/Forward.ts"
import * as Generation from "../src/Generation.ts"
import { Kernels, type KernelsShape } from "../src/Kernels.ts"
import * as KvCache from "../src/KvCache.ts"
import * as Model from "../src/Model.ts"
import * as Policy from "../src/Policy.ts"
import { loadFromUrl } from "./load.ts"
import { decodeTensor, type GenerateRequest, type GenerateResult, type GenerationWire, scopedOps, type SiriusPage, type Wire, type WireError } from "./protocol.ts"

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
  /** Handles by id: weights live as long as the backend, scoped handles until their scope closes. */
  readonly handles: Map<number, object>
  readonly scopes: Map<number, { readonly scope: Scope.Closeable; readonly handles: Array<number> }>
}
const open = new Map<number, Open>()
let nextId = 1

/** The numeric fields of a handle, as the Node proxy sees them (rows, cols, T, capacity, ...). */
const shapeOf = (h: object): Record<string, number> =>
  Object.fromEntries(Object.entries(h).filter((e): e is [string, number] => typeof e[1] === "number"))

const decode = (o: Open, w: Wire): unknown => {
  if ("f32" in w) return Float32Array.from(w.f32)
  if ("i32" in w) return Int32Array.from(w.i32)
  if ("u8" in w) return Uint8Array.from(w.u8)
  if ("tensor" in w) return decodeTensor(w)
  if ("handle" in w) {
    const h = o.handles.get(w.handle)
    if (h === undefined) throw new Error(`no handle ${w.handle} (its scope closed?)`)
    return h
  }
  if ("undef" in w) return undefined
  return w.json
}

const call = (o: Open, op: string, args: ReadonlyArray<Wire>, scopeId: number | undefined): Effect.Effect<Wire, unknown> =>
  Effect.suspend(() => {
    const k = o.kernels as unknown as Record<string, (...a: ReadonlyArray<unknown>) => Effect.Effect<unknown, unknown, Scope.Scope>>
    if (!(op in o.kernels) || typeof k[op] !== "function") return Effect.die(new Error(`unknown op ${op}`))
    const scoped = scopedOps.has(op) ? o.scopes.get(scopeId ?? -1) : undefined
    if (scopedOps.has(op) && scoped === undefined) return Effect.die(new Error(`${op} needs an open scope (got ${scopeId})`))
    const effect = k[op]!(...args.map((a) => decode(o, a)))
    const provided = (scoped === undefined ? effect : Scope.provide(scoped.scope)(effect)) as Effect.Effect<unknown, unknown>
    return Effect.map(provided, (result): Wire => {
      if (result instanceof Float32Array) return { f32: Array.from(result) }
      if (result === undefined) return { undef: true }
      if (typeof result === "number") return { json: result }
      if (op === "kvRead") {
        const r = result as { keys: Float32Array; values: Float32Array }
        return { json: { keys: Array.from(r.keys), values: Array.from(r.values) } }
      }
      // a handle: weights (matrix, vector) live with the backend, the rest with their scope
      const id = nextId++
      o.handles.set(id, result as object)
      scoped?.handles.push(id)
      return { handle: id, shape: shapeOf(result as object) }
    })
  })

/** Generation.generate's options from the wire (greedy sampling; the page's tests and benchmark). */
const generationOptions = (g: GenerationWire | undefined, prompt: ReadonlyArray<number>, maxNewTokens: number): Generation.GenerateOptions => {
  if (g === undefined || g.mode === "full") return { prompt, maxNewTokens }
  const sparsity = { granularity: g.granularity ?? "coarse", density: g.density ?? 0.5 } as const
  if (g.mode === "sparse") return { mode: "sparse", prompt, maxNewTokens, sparsity }
  return {
    mode: "sirius",
    prompt,
    maxNewTokens,
    sparsity,
    correctionPeriod: g.correctionPeriod ?? 16,
    treeWidth: g.treeWidth ?? 1,
    policy: g.acceptance === "greedy-exact" ? Policy.greedyExact : Policy.threshold()
  } as Generation.SiriusOptions
}

const generate = (request: GenerateRequest): Effect.Effect<GenerateResult, unknown> =>
  Effect.scoped(
    Effect.gen(function* () {
      const kernels = yield* GpuKernels.make({ mode: request.mode as GpuMode, ...(request.pipeline === undefined ? {} : { pipeline: request.pipeline }) })
      const t0 = performance.now()
      const { config, weights } = yield* loadFromUrl(request.base)
      const model = yield* Effect.provideService(Model.fromWeights(config, weights, { sparse: request.generation?.granularity === "fine" }), Kernels, kernels as KernelsShape)
      const loadMs = performance.now() - t0
      const prefill = yield* Effect.scoped(
        Effect.flatMap(KvCache.make(kernels, config, request.prompt.length), (cache) => Forward.forward(model, cache, Int32Array.from(request.prompt), 0, "last"))
      )
      const before = Traffic.snapshot(kernels.runtime.traffic)
      const t1 = performance.now()
      const events = yield* Stream.runCollect(Generation.generate(model, generationOptions(request.generation, request.prompt, request.maxNewTokens)))
      const finished = Array.from(events).find((e) => e._tag === "Finished")
      if (finished === undefined || finished._tag !== "Finished") return yield* Effect.die(new Error("generation ended without a Finished event"))
      const verifications = Array.from(events).filter((e) => e._tag === "Verified").length
      const after = Traffic.snapshot(kernels.runtime.traffic)
      const result: GenerateResult = {
        backend: kernels.name,
        tokens: finished.tokens,
        prefillLogits: Array.from(prefill),
        tokensPerSecond: finished.stats.tokensPerSecond,
        loadMs,
        generateMs: performance.now() - t1,
        forwards: after.forwards.slice(before.forwards.length),
        total: Object.fromEntries(Object.entries(after.total).map(([key, v]) => [key, v - before.total[key as keyof Traffic.Counts]])) as unknown as Traffic.Counts,
        ...(request.generation?.mode === "sirius" ? { verifications } : {})
      }
      return result
    })
  )

const sirius: SiriusPage = {
  backends: backendsReason,
  open: async (mode, pipeline) => {
    const scope = Effect.runSync(Scope.make())
    const made = await run(Scope.provide(GpuKernels.make({ mode: mode as GpuMode, ...(pipeline === undefined ? {} : { pipeline }) }), scope))
    if ("error" in made) {
      await Effect.runPromise(Scope.close(scope, Exit.void))
      return made
    }
    const id = nextId++
    open.set(id, { scope, kernels: made, handles: new Map(), scopes: new Map() })
    return { id, name: made.name }
  },
  openScope: async (id) => {
    const o = open.get(id)
    if (o === undefined) return { error: { _tag: "Error", message: `no open backend ${id}` } }
    const scopeId = nextId++
    o.scopes.set(scopeId, { scope: Effect.runSync(Scope.make()), handles: [] })
    return scopeId
  },
  closeScope: async (id, scopeId) => {
    const o = open.get(id)
    const s = o?.scopes.get(scopeId)
    if (o === undefined || s === undefined) return
    o.scopes.delete(scopeId)
    s.handles.forEach((h) => o.handles.delete(h))
    await Effect.runPromise(Scope.close(s.scope, Exit.void))
  },
  call: (id, op, args, scope) => {
    const o = open.get(id)
    if (o === undefined) return Promise.resolve({ error: { _tag: "Error", message: `no open backend ${id}` } })
    return run(call(o, op, args, scope))
  },
  loseDevice: async (id) => {
    const o = open.get(id)
    if (o !== undefined) await Effect.runPromise(o.kernels.runtime.loseDevice())
  },
  close: async (id) => {
    const o = open.get(id)
    open.delete(id)
    if (o === undefined) return
    for (const s of o.scopes.values()) await Effect.runPromise(Scope.close(s.scope, Exit.void))
    await Effect.runPromise(Scope.close(o.scope, Exit.void))
  },
  generate: (request) => run(generate(request))
}

;(globalThis as { sirius?: SiriusPage }).sirius = sirius
