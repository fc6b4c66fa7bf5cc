/**
 * Completions: run a planned request (RequestPlan.ts) on the served model and answer it, as one JSON body
 * or as server-sent events, for both endpoints.
 *
 * The request becomes a stream in one place, `Client.requestStream`. A streamed answer starts only once
 * the engine has accepted the request (its validation, allocation and prefill are the first pull), so a
 * request the engine refuses still gets a proper 400 rather than a 200 stream holding an error; after
 * that, committed text goes out as it is committed (in Sirius mode, per verified window), a failure
 * becomes an error event, and the last chunks are the finish reason, the usage chunk when asked, and
 * `data: [DONE]`. The stream runs in the request's scope: a client that disconnects interrupts it at the
 * next forward pass and its KV cache and gathers are freed with it.
 *
 * Admission is the caller's (Routes.ts): by the time `respond` runs, the request holds a slot.
 */
import { Effect, Pull, type Scope, Stream } from "effect"
import { HttpServerResponse } from "effect/http"
import * as Client from "../src/Client.ts"
import type { GenerateError } from "../src/Generation.ts"
import type { Event } from "../src/Request.ts"
import { ApiError, invalid } from "./ApiError.ts"
import type { Metrics } from "./Metrics.ts"
import type { Plan } from "./RequestPlan.ts"
import * as Responses from "./Responses.ts"
import type { ServedModel } from "./ServedModel.ts"
import * as Sse from "./Sse.ts"

/** The engine's option names as this API's parameters. */
const params: Record<string, string> = {
  maxNewTokens: "max_tokens",
  temperature: "temperature",
  topK: "top_k",
  topP: "top_p",
  minP: "min_p",
  repetitionPenalty: "repeat_penalty",
  seed: "seed",
  density: "sirius.density",
  sparsity: "sirius.sparsity",
  thresholds: "sirius.sparsity",
  correctionPeriod: "sirius.period",
  treeWidth: "sirius.tree_width",
  policy: "sirius.acceptance"
}

/** An engine failure as an API error: the request's fault (400, the field named in this API's terms) or the server's (500). */
export const engineError =
  (plan: Plan) =>
  (e: GenerateError): ApiError => {
    if (e._tag === "GenerationError") {
      const param =
        e.field === "prompt" ? (plan.kind === "chat" ? "messages" : "prompt") : e.field === "logprobs" ? (plan.kind === "chat" ? "top_logprobs" : "logprobs") : (params[e.field] ?? e.field)
      const message = e.message.startsWith(`${e.field}: `) ? `${param}: ${e.message.slice(e.field.length + 2)}` : e.message
      return invalid(param, message)
    }
    return new ApiError({ status: 500, type: "server_error", param: null, code: e._tag === "KernelError" ? "kernel_error" : "policy_error", message: e.message })
  }

type Finished = Extract<Event, { _tag: "Finished" }>

/** Answer a planned, admitted request. */
export const respond = (
  served: ServedModel,
  metrics: Metrics,
  plan: Plan,
  onFinished: (finished: Finished) => void = () => {}
): Effect.Effect<HttpServerResponse.HttpServerResponse, ApiError, Scope.Scope> =>
  Effect.gen(function* () {
    const m = Responses.meta(plan.kind, served.id)
    const tokenizer = served.checkpoint.tokenizer
    const startedMs = performance.now()
    const events = Client.requestStream(served.checkpoint, served.model, plan.request) as Stream.Stream<Event, GenerateError>
    const record = (finished: Finished) => {
      metrics.finished(finished.stats.promptTokens, finished.stats.timeToFirstTokenMs, performance.now() - startedMs)
      onFinished(finished)
    }
    const entry = (e: Extract<Event, { _tag: "Committed" }>) => (e.logprob === undefined ? undefined : Responses.tokenEntry(tokenizer, e.token, e.logprob))

    if (!plan.stream) {
      const entries: Array<Responses.TokenEntry> = []
      let finished: Finished | undefined
      yield* Stream.runForEach(events, (e) =>
        Effect.sync(() => {
          if (e._tag === "Committed") {
            metrics.tokens(1)
            const t = entry(e)
            if (t !== undefined) entries.push(t)
          } else if (e._tag === "Finished") finished = e
        })
      ).pipe(Effect.mapError(engineError(plan)))
      if (finished === undefined) return yield* Effect.die(new Error("the request's stream ended without a Finished event"))
      record(finished)
      const x = Responses.extras(plan.mode, plan.sparsity, finished.stats)
      const reason = Responses.finishReason(finished.reason)
      const logprobs = plan.logprobs === undefined ? undefined : entries
      return HttpServerResponse.jsonUnsafe(plan.kind === "chat" ? Responses.chat(m, finished.text, reason, logprobs, x) : Responses.completion(m, finished.text, reason, logprobs, x))
    }

    // The first pull validates, allocates and prefills: its failure is still an ordinary error response.
    const pull = yield* Stream.toPull(events)
    const first = yield* pull.pipe(
      Pull.catchDone(() => Effect.die(new Error("the request's stream ended before its first event"))),
      Effect.mapError(engineError(plan))
    )
    const all = Stream.concat(Stream.fromArray(first), Stream.fromPull(Effect.succeed(pull)))

    let offset = 0 // characters of token texts so far (completions' text_offset)
    const messages = (e: Event): ReadonlyArray<string> => {
      switch (e._tag) {
        case "Committed": {
          metrics.tokens(1)
          const t = entry(e)
          if (t === undefined && e.text === "") return [] // a character or stop string still pending
          const part = { text: e.text, ...(t === undefined ? {} : { logprobs: [t], offset }) }
          if (t !== undefined) offset += t.text.length
          return [Sse.data(Responses.chunk(plan.kind, m, part, plan.includeUsage))]
        }
        case "Finished": {
          record(e)
          const x = Responses.extras(plan.mode, plan.sparsity, e.stats)
          const last = Sse.data(Responses.chunk(plan.kind, m, { finish: Responses.finishReason(e.reason) }, plan.includeUsage, x))
          return plan.includeUsage ? [last, Sse.data(Responses.usageChunk(plan.kind, m, x)), Sse.done] : [last, Sse.done]
        }
        case "Drafted":
        case "Verified":
          return plan.events ? Responses.siriusEvents(m, e, tokenizer).map(([name, data]) => Sse.event(name, data)) : []
        default:
          return []
      }
    }
    const opening = plan.kind === "chat" ? [Sse.data(Responses.chunk("chat", m, { role: true }, plan.includeUsage))] : []
    const body = Stream.concat(
      Stream.fromArray(opening),
      all.pipe(
        Stream.map(messages),
        Stream.flattenIterable,
        // after the 200: a failure is an error event (the openai client throws it as an APIError), then the end
        Stream.catch((e) => Stream.make(Sse.data({ error: { message: engineError(plan)(e).message, type: "server_error", param: null, code: null } })))
      )
    )
    return Sse.response(body)
  })
