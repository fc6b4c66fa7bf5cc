/**
 * Server-sent events as the OpenAI streaming API sends them: each message a `data: <JSON>` block, named
 * events (`event: <name>`) for this server's extras, a `data: [DONE]` terminator, and keep-alive comments
 * while the generation is silent (a long prefill, a queue), so proxies do not close an idle stream.
 *
 * Text framing and the streaming response only: what the messages say is Responses.ts's.
 */
import { Stream } from "effect"
import { HttpServerResponse } from "effect/http"

export const data = (json: unknown): string => `data: ${JSON.stringify(json)}\n\n`

export const event = (name: string, json: unknown): string => `event: ${name}\ndata: ${JSON.stringify(json)}\n\n`

export const done = "data: [DONE]\n\n"

/** Seconds of silence before a keep-alive comment. */
export const keepAliveSeconds = 15

/** A streaming response of SSE text; keep-alive comments are merged in and stop with it. */
export const response = <E>(messages: Stream.Stream<string, E>): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.stream(
    Stream.encodeText(
      Stream.merge(
        messages,
        // tick emits at once, then every interval: the first is dropped
        Stream.map(Stream.drop(Stream.tick(`${keepAliveSeconds} seconds`), 1), () => ": keep-alive\n\n"),
        { haltStrategy: "left" }
      )
    ),
    { contentType: "text/event-stream", headers: { "cache-control": "no-cache", "x-accel-buffering": "no" } }
  )
