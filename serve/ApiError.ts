/**
 * ApiError: every way the server refuses or fails a request, as one tagged error that carries its HTTP
 * status and the OpenAI error body `{"error": {"message", "type", "param", "code"}}` (what the `openai`
 * client turns into an APIError with these fields). Route handlers fail with it; `toResponse` is the only
 * place it becomes a response. Where the failure is the client's, `param` names the field.
 *
 * This module builds errors and their responses; deciding which error a request gets is the caller's.
 */
import { Schema } from "effect"
import { HttpServerResponse } from "effect/http"

export class ApiError extends Schema.TaggedError<ApiError>()("ApiError", {
  status: Schema.Number,
  message: Schema.String,
  type: Schema.String,
  param: Schema.NullOr(Schema.String),
  code: Schema.NullOr(Schema.String),
  /** Seconds, for 503s: when a retry may succeed. */
  retryAfter: Schema.optionalKey(Schema.Number)
}) {}

/** The request is malformed or asks for something this server cannot do (400). */
export const invalid = (param: string | null, message: string, code: string | null = null): ApiError =>
  new ApiError({ status: 400, type: "invalid_request_error", param, code, message })

/** The JSON body of an error response. */
export const body = (e: ApiError) => ({ error: { message: e.message, type: e.type, param: e.param, code: e.code } })

export const toResponse = (e: ApiError): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.jsonUnsafe(body(e), {
    status: e.status,
    headers: e.retryAfter === undefined ? {} : { "retry-after": String(e.retryAfter) }
  })
