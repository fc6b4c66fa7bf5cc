/**
 * Server: `sirius serve` as an Effect: an OpenAI-compatible HTTP server (Routes.ts on Effect's router,
 * served on Node by @effect/platform-node) over one model.
 *
 * It listens first and loads the model behind it: `/health` answers 503 until the model is resident, and
 * `ready` completes then (or fails with the load's error). Requests share the one model and backend
 * (`--threads` is the backend's total); `parallel` of them run at once, `queue` more wait, the rest get 503
 * (Admission.ts).
 *
 * Lifetime is the scope's. Closing it shuts down gracefully: the listener stops accepting, in-flight
 * requests get `shutdownTimeoutMs` to finish, then whatever still runs is interrupted (freeing its KV
 * cache and gathers); the backend is released last, after every request is gone.
 *
 * `start` is the same as a Promise, for tests, examples and services not written with Effect.
 */
import { NodeHttpServer } from "@effect/platform-node"
import { Cause, Context, Deferred, Effect, Exit, Layer, Logger, Scope } from "effect"
import { HttpRouter, HttpServer } from "effect/http"
import type { ServeError } from "effect/http/HttpServerError"
import { createServer } from "node:http"
import type { Kernels } from "../src/Kernels.ts"
import type { OnProgress } from "../src/LoadProgress.ts"
import * as Admission from "./Admission.ts"
import * as Metrics from "./Metrics.ts"
import * as RequestPlan from "./RequestPlan.ts"
import * as Routes from "./Routes.ts"
import * as ServedModel from "./ServedModel.ts"

export interface Options<E = unknown> {
  /** The model: an HF directory (or a model file, once the checkpoint reader takes them). */
  readonly model: string
  /** The backend, e.g. `SimdKernels.layer({ threads: 2 })`: built after the server listens. */
  readonly kernels: Layer.Layer<Kernels, E>
  /** Default 127.0.0.1. */
  readonly host?: string
  /** Default 8080; 0 picks a free port (see `port` on the result). */
  readonly port?: number
  /** Requests generating at once. Default 4. */
  readonly parallel?: number
  /** Requests waiting for a slot beyond those; past them, 503. Default 32. */
  readonly queue?: number
  /** Require `Authorization: Bearer <apiKey>` (everywhere but /health). */
  readonly apiKey?: string | undefined
  /** Allow this browser origin ("*" for any): CORS headers and preflights. */
  readonly cors?: string | undefined
  /** The per-request defaults (the generation flags). */
  readonly defaults?: Partial<RequestPlan.Defaults>
  /** Largest request body. Default 4 MiB. */
  readonly maxBodyBytes?: number
  /** How long shutdown waits for in-flight requests before cancelling them. Default 10 s. */
  readonly shutdownTimeoutMs?: number
  /** Loading progress (tensors read, then uploaded). */
  readonly onProgress?: OnProgress
  /** One line per request through Effect's logger. Default true. */
  readonly log?: boolean
}

/** Why a model did not load: the backend's construction error, the checkpoint's, or an upload's. */
export type LoadError<E> = E | ServedModel.LoadError

export interface Running<E = unknown> {
  readonly host: string
  readonly port: number
  /** http://host:port */
  readonly url: string
  /** Completes when the model is loaded and requests are served; fails with the load's error. */
  readonly ready: Effect.Effect<void, LoadError<E>>
  readonly snapshot: () => Admission.Snapshot & { readonly loaded: boolean }
}

/** Serve a model in the current scope; returns once listening (the model still loading). */
export const make = <E>(options: Options<E>): Effect.Effect<Running<E>, ServeError, Scope.Scope> =>
  Effect.gen(function* () {
    const scope = yield* Effect.scope
    // Created before the server, so that it is closed after it: requests finish before the backend goes.
    const backendScope = yield* Scope.fork(scope, "sequential")
    let state: Routes.LoadState = { _tag: "Loading" }
    const memory = () => (state._tag === "Ready" ? state.served.model.kernels.memory?.() : undefined)
    const admission = Admission.make({ parallel: options.parallel ?? 4, queue: options.queue ?? 32, memory })
    const ctx: Routes.Context = {
      modelId: ServedModel.modelId(options.model),
      state: () => state,
      admission,
      metrics: Metrics.make(),
      defaults: { ...RequestPlan.defaults, ...options.defaults },
      apiKey: options.apiKey,
      maxBodyBytes: options.maxBodyBytes ?? 4 * 2 ** 20,
      memory
    }
    const routes = options.cors === undefined ? Routes.layer(ctx) : Layer.merge(Routes.layer(ctx), HttpRouter.cors({ allowedOrigins: options.cors === "*" ? [] : [options.cors] }))
    const app = HttpRouter.serve(routes, { disableLogger: true, disableListenLog: true }).pipe(
      Layer.provideMerge(
        NodeHttpServer.layer(() => createServer(), {
          host: options.host ?? "127.0.0.1",
          port: options.port ?? 8080,
          gracefulShutdownTimeout: `${options.shutdownTimeoutMs ?? 10_000} millis`
        })
      )
    )
    const built = yield* Layer.buildWithScope(app, scope)
    const address = Context.get(built, HttpServer.HttpServer).address
    const host = options.host ?? "127.0.0.1"
    const port = address._tag === "UnixPathAddress" ? 0 : address.port

    const ready = yield* Deferred.make<void, LoadError<E>>()
    yield* Effect.forkIn(
      Effect.gen(function* () {
        const kernels = yield* Layer.buildWithScope(options.kernels, backendScope)
        const served = yield* Effect.provide(ServedModel.load(options.model, options.onProgress), kernels)
        state = { _tag: "Ready", served }
      }).pipe(
        Effect.onExit((exit) => {
          if (Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)) {
            const failure = Cause.squash(exit.cause) as { readonly message?: string; readonly _tag?: string }
            state = { _tag: "Failed", message: `${failure._tag !== undefined ? `${failure._tag}: ` : ""}${failure.message ?? String(failure)}` }
          }
          return Deferred.done(ready, exit)
        })
      ),
      scope
    )
    return {
      host,
      port,
      url: `http://${host.includes(":") ? `[${host}]` : host}:${port}`,
      ready: Deferred.await(ready),
      snapshot: () => ({ ...admission.snapshot(), loaded: state._tag === "Ready" })
    }
  }).pipe((effect) => (options.log === false ? Effect.provideService(effect, Logger.CurrentLoggers, new Set()) : effect))

/** A running server as Promises. */
export interface Handle {
  readonly url: string
  readonly port: number
  /** Resolves when the model is loaded; rejects with the load's error. */
  readonly ready: Promise<void>
  readonly snapshot: Running["snapshot"]
  /** Graceful shutdown (see the module comment); resolves when everything is released. */
  readonly close: () => Promise<void>
}

/** `make` as a Promise: resolves once listening. */
export const start = async <E>(options: Options<E>): Promise<Handle> => {
  const scope = Effect.runSync(Scope.make("sequential"))
  const exit = await Effect.runPromiseExit(Scope.provide(make(options), scope))
  if (Exit.isFailure(exit)) {
    await Effect.runPromise(Scope.close(scope, exit))
    throw Cause.squash(exit.cause)
  }
  const running = exit.value
  const ready = Effect.runPromise(running.ready)
  ready.catch(() => {}) // observed by whoever awaits it; never an unhandled rejection
  return {
    url: running.url,
    port: running.port,
    ready,
    snapshot: running.snapshot,
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}
