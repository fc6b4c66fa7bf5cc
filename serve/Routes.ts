/**
 * The HTTP routes of `sirius serve` on Effect's router:
 *
 *   GET  /health                 503 while the model loads (llama.cpp's body), then {"status":"ok"}; open without a key
 *   GET  /v1/models[/{id}]       the served model
 *   POST /v1/completions         text completions, JSON or server-sent events
 *   POST /v1/chat/completions    chat completions through the model's chat template
 *   GET  /metrics                Prometheus text
 *   anything else                404 (405 for a known path with another method), OpenAI-shaped
 *
 * Each handler runs in the request's scope: a generation request reads its body (bounded: 413 beyond the
 * limit), decodes it (OpenAiSchema), plans it (RequestPlan), takes a place from Admission (held until the
 * scope closes, whether the answer was sent, failed, or its client went away) and answers (Completions).
 * Every failure is an ApiError turned into its response here; a defect is a 500 with the same shape. One log
 * line per request (Effect's logger) is written when its scope closes, with what the generation did.
 *
 * Routes are interruptible (the router's default): a client that disconnects interrupts its handler
 * wherever it is, in the queue or between forward passes.
 */
import { Cause, Effect, Exit, type Scope } from "effect"
import * as ByteSize from "effect/ByteSize"
import { HttpIncomingMessage, HttpRouter, HttpServerResponse } from "effect/http"
import { ClientAbort } from "effect/http/HttpServerError"
import type { HttpServerRequest } from "effect/http/HttpServerRequest"
import { createHash, timingSafeEqual } from "node:crypto"
import type { Admission } from "./Admission.ts"
import { ApiError, invalid, toResponse } from "./ApiError.ts"
import * as Completions from "./Completions.ts"
import type { Metrics } from "./Metrics.ts"
import * as OpenAiSchema from "./OpenAiSchema.ts"
import * as RequestPlan from "./RequestPlan.ts"
import type { ServedModel } from "./ServedModel.ts"

/** Where the served model is. */
export type LoadState =
  | { readonly _tag: "Loading" }
  | { readonly _tag: "Ready"; readonly served: ServedModel }
  | { readonly _tag: "Failed"; readonly message: string }

export interface Context {
  readonly modelId: string
  readonly state: () => LoadState
  readonly admission: Admission
  readonly metrics: Metrics
  readonly defaults: RequestPlan.Defaults
  readonly apiKey: string | undefined
  readonly maxBodyBytes: number
  readonly memory: () => { readonly usedBytes: number; readonly limitBytes: number } | undefined
}

/** What one request did, for its log line and the metrics. */
interface Note {
  status: number
  mode: string | undefined
  /** It held a slot and ran (or was running) a generation. */
  generating: boolean
  finished: { readonly promptTokens: number; readonly completionTokens: number; readonly reason: string } | undefined
}

const sha256 = (s: string) => createHash("sha256").update(s).digest()

/** `Authorization: Bearer <key>`, compared in constant time. */
const authorize = (ctx: Context, request: HttpServerRequest): Effect.Effect<void, ApiError> => {
  if (ctx.apiKey === undefined) return Effect.void
  const header = request.headers["authorization"] ?? ""
  const given = /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1]
  if (given !== undefined && timingSafeEqual(sha256(given), sha256(ctx.apiKey))) return Effect.void
  return Effect.fail(
    new ApiError({
      status: 401,
      type: "invalid_request_error",
      param: null,
      code: "invalid_api_key",
      message: header === "" ? "No API key provided: send the header Authorization: Bearer <key>" : "Incorrect API key provided"
    })
  )
}

const loading = new ApiError({ status: 503, type: "unavailable_error", param: null, code: "model_loading", message: "Loading model", retryAfter: 5 })

const served = (ctx: Context): Effect.Effect<ServedModel, ApiError> => {
  const s = ctx.state()
  if (s._tag === "Ready") return Effect.succeed(s.served)
  if (s._tag === "Loading") return Effect.fail(loading)
  return Effect.fail(new ApiError({ status: 500, type: "server_error", param: null, code: "model_load_failed", message: `the model failed to load: ${s.message}` }))
}

/** The body as JSON, at most `maxBytes` of it. */
const readJson = (request: HttpServerRequest, maxBytes: number): Effect.Effect<unknown, ApiError> => {
  const tooLarge = new ApiError({
    status: 413,
    type: "invalid_request_error",
    param: null,
    code: "request_too_large",
    message: `the request body exceeds the server's limit of ${maxBytes} bytes`
  })
  const length = Number(request.headers["content-length"])
  if (Number.isFinite(length) && length > maxBytes) return Effect.fail(tooLarge)
  return request.text.pipe(
    Effect.provideService(HttpIncomingMessage.MaxBodySize, ByteSize.bytes(maxBytes)),
    Effect.mapError((e) =>
      e.reason._tag === "RequestParseError" && e.reason.reason === "BodyTooLarge" ? tooLarge : invalid(null, `the request body could not be read (${e.message})`)
    ),
    Effect.flatMap((text) =>
      Effect.try({
        try: (): unknown => JSON.parse(text),
        catch: (e) => invalid(null, `the request body is not valid JSON (${e instanceof Error ? e.message : String(e)})`, "invalid_json")
      })
    )
  )
}

const admissionError = (e: { readonly _tag: "Overloaded" | "NeverFits"; readonly message: string }): ApiError =>
  e._tag === "Overloaded"
    ? new ApiError({ status: 503, type: "unavailable_error", param: null, code: "server_overloaded", message: e.message, retryAfter: 1 })
    : invalid(null, e.message, "insufficient_backend_memory")

/**
 * A route's handler with the shared parts: ApiErrors and defects as responses, the metrics, and the log line
 * when the request's scope closes (after a streamed body is sent, or when its client went away).
 */
const handle =
  (ctx: Context, endpoint: string, f: (request: HttpServerRequest, note: Note) => Effect.Effect<HttpServerResponse.HttpServerResponse, ApiError, Scope.Scope | HttpRouter.RouteContext>) =>
  (request: HttpServerRequest) =>
    Effect.gen(function* () {
      const started = performance.now()
      const note: Note = { status: 0, mode: undefined, generating: false, finished: undefined }
      yield* Effect.addFinalizer((exit) => {
        const interrupted = Exit.isFailure(exit) && Cause.hasInterrupts(exit.cause)
        // the platform marks a client's disconnect; any other interruption is the server's (shutdown)
        const abandoned = interrupted && exit.cause.reasons.some((r) => Cause.isInterruptReason(r) && r.annotations.has(ClientAbort.key))
        // 499: the client closed the request before an answer was decided (nginx's convention)
        const status = note.status === 0 ? 499 : note.status
        ctx.metrics.request(endpoint, status)
        if (interrupted && note.generating && note.finished === undefined) ctx.metrics.cancelled()
        const f = note.finished
        const what = f !== undefined ? ` ${note.mode} prompt=${f.promptTokens} completion=${f.completionTokens} finish=${f.reason}` : note.mode !== undefined ? ` ${note.mode}` : ""
        const outcome = abandoned ? " (client disconnected)" : interrupted ? " (cancelled: shutting down)" : Exit.isFailure(exit) ? " (failed)" : ""
        return Effect.logInfo(`${request.method} ${request.url} ${status}${what} ${(performance.now() - started).toFixed(0)}ms${outcome}`)
      })
      const response = yield* f(request, note).pipe(
        Effect.catchTag("ApiError", (e) => Effect.succeed(toResponse(e))),
        Effect.catchDefect((defect) =>
          Effect.as(
            Effect.logError("internal error", defect),
            toResponse(new ApiError({ status: 500, type: "server_error", param: null, code: "internal_error", message: `internal error: ${defect instanceof Error ? defect.message : String(defect)}` }))
          )
        )
      )
      note.status = response.status
      return response
    })

/** A generation endpoint: authorize, decode, plan, admit, answer. */
const generation = (ctx: Context, kind: "completion" | "chat") =>
  handle(ctx, kind === "chat" ? "/v1/chat/completions" : "/v1/completions", (request, note) =>
    Effect.gen(function* () {
      yield* authorize(ctx, request)
      const model = yield* served(ctx)
      const json = yield* readJson(request, ctx.maxBodyBytes)
      const input: RequestPlan.Input =
        kind === "chat" ? { kind, body: yield* OpenAiSchema.decodeChat(json) } : { kind, body: yield* OpenAiSchema.decodeCompletion(json) }
      const plan = yield* RequestPlan.plan(model, ctx.defaults, input)
      note.mode = plan.mode
      yield* ctx.admission.enter(plan.backendBytes).pipe(Effect.mapError(admissionError))
      note.generating = true
      return yield* Completions.respond(model, ctx.metrics, plan, (finished) => {
        note.finished = { promptTokens: finished.stats.promptTokens, completionTokens: finished.stats.generatedTokens, reason: finished.reason }
      })
    })
  )

const modelObject = (ctx: Context) => {
  const s = ctx.state()
  return {
    id: ctx.modelId,
    object: "model",
    created: s._tag === "Ready" ? s.served.created : 0,
    owned_by: "sirius-ts",
    ...(s._tag === "Ready" ? { context_length: s.served.model.config.maxPositionEmbeddings } : {})
  }
}

const known: Record<string, string> = {
  "/health": "GET",
  "/v1/models": "GET",
  "/v1/completions": "POST",
  "/v1/chat/completions": "POST",
  "/metrics": "GET"
}

/** The routes, as a layer for HttpRouter.serve. */
export const layer = (ctx: Context) =>
  HttpRouter.addAll([
    HttpRouter.route("GET", "/health", () => {
      const s = ctx.state()
      return Effect.succeed(
        s._tag === "Ready"
          ? HttpServerResponse.jsonUnsafe({ status: "ok" })
          : s._tag === "Loading"
            ? HttpServerResponse.jsonUnsafe({ error: { code: 503, message: "Loading model", type: "unavailable_error" } }, { status: 503 })
            : HttpServerResponse.jsonUnsafe({ error: { code: 500, message: `the model failed to load: ${s.message}`, type: "server_error" } }, { status: 500 })
      )
    }),
    HttpRouter.route(
      "GET",
      "/v1/models",
      handle(ctx, "/v1/models", (request) => Effect.as(authorize(ctx, request), HttpServerResponse.jsonUnsafe({ object: "list", data: [modelObject(ctx)] })))
    ),
    HttpRouter.route(
      "GET",
      "/v1/models/:id",
      handle(ctx, "/v1/models/{id}", (request) =>
        Effect.flatMap(authorize(ctx, request), () =>
          Effect.flatMap(HttpRouter.params, (params) =>
            params["id"] === ctx.modelId
              ? Effect.succeed(HttpServerResponse.jsonUnsafe(modelObject(ctx)))
              : Effect.fail(
                  new ApiError({ status: 404, type: "invalid_request_error", param: "model", code: "model_not_found", message: `The model '${params["id"]}' does not exist: this server serves '${ctx.modelId}'` })
                )
          )
        )
      )
    ),
    HttpRouter.route("POST", "/v1/completions", generation(ctx, "completion")),
    HttpRouter.route("POST", "/v1/chat/completions", generation(ctx, "chat")),
    HttpRouter.route(
      "GET",
      "/metrics",
      handle(ctx, "/metrics", (request) =>
        Effect.map(authorize(ctx, request), () => {
          const a = ctx.admission.snapshot()
          return HttpServerResponse.text(
            ctx.metrics.render({ busy: a.busy, queued: a.queued, parallel: a.parallel, queue: a.queue, loaded: ctx.state()._tag === "Ready", memory: ctx.memory() }),
            { contentType: "text/plain; version=0.0.4; charset=utf-8" }
          )
        })
      )
    ),
    HttpRouter.route(
      "*",
      "/*",
      handle(ctx, "other", (request) => {
        const path = request.url.split("?")[0]!
        const method = known[path]
        return Effect.fail(
          method !== undefined
            ? new ApiError({ status: 405, type: "invalid_request_error", param: null, code: "method_not_allowed", message: `${request.method} ${path}: use ${method}` })
            : new ApiError({ status: 404, type: "invalid_request_error", param: null, code: "unknown_url", message: `Unknown request URL: ${request.method} ${path}` })
        )
      })
    )
  ])

