/**
 * The model a server serves: its id (what `GET /v1/models` lists and requests name), the checkpoint, the
 * model resident on the backend and its chat template. One per server; every request slot shares it (one
 * Model, one Kernels): a request's own state (KV cache, coarse gathers) lives in its stream.
 *
 * The model is loaded with the transposed down_proj (`{ sparse: true }`, as Client.open does), so each
 * request may choose any sparsity granularity. A chat template that cannot be used (it does not parse) does
 * not stop the server: completions still work, chat requests fail with the template's error.
 *
 * This module loads; it does not decide when (Server.ts loads while already listening).
 */
import { Effect, Result } from "effect"
import { statSync } from "node:fs"
import { basename, extname, resolve } from "node:path"
import * as ChatTemplate from "../src/ChatTemplate.ts"
import { loadCheckpoint } from "../src/Checkpoint.ts"
import type { RequestCheckpoint } from "../src/Client.ts"
import type { OnProgress } from "../src/LoadProgress.ts"
import * as Model from "../src/Model.ts"

export interface ServedModel {
  readonly id: string
  /** The checkpoint without its weights: once resident on the backend, the host copies are let go. */
  readonly checkpoint: RequestCheckpoint
  readonly model: Model.Model
  /** The chat template, or why the model's own cannot be used. */
  readonly template: Result.Result<ChatTemplate.ChatTemplate, ChatTemplate.ChatTemplateError>
  /** When it finished loading (unix seconds): `created` in /v1/models. */
  readonly created: number
}

/** A model's id: the model directory's name, or a model file's name without its extension (GGUF files). */
export const modelId = (path: string): string => {
  const name = basename(resolve(path))
  const isFile = statSync(path, { throwIfNoEntry: false })?.isFile() === true
  return isFile && extname(name) !== "" ? name.slice(0, -extname(name).length) : name
}

/** Load the checkpoint, make it resident on the Kernels in context, and read its chat template. */
export const load = (path: string, onProgress?: OnProgress) =>
  Effect.gen(function* () {
    const progress = onProgress === undefined ? {} : { onProgress }
    const checkpoint = yield* loadCheckpoint(path, progress)
    const model = yield* Model.fromCheckpoint(checkpoint, { sparse: true, ...progress })
    const template = yield* Effect.result(ChatTemplate.forCheckpoint(checkpoint))
    // not the weights: a backend that keeps its own copy (wasm memory, a GPU) leaves them unreferenced
    const { weights: _weights, ...rest } = checkpoint
    const served: ServedModel = { id: modelId(path), checkpoint: rest, model, template, created: Math.floor(Date.now() / 1000) }
    return served
  })

/** Why a model did not load (the checkpoint's errors, the backend's upload errors). */
export type LoadError = ReturnType<typeof load> extends Effect.Effect<unknown, infer E, unknown> ? E : never
