/**
 * Client: the Promise / AsyncIterable facade for services not written with Effect.
 *
 * `open(path, { kernels })` loads a model once onto a backend (any Kernels layer: `SimdKernels.layer()`,
 * `ReferenceKernels.layer`, a GPU layer) and returns a client whose `generate` resolves to the finished
 * completion and whose `stream` is an AsyncIterable of the request's events. Both take an AbortSignal:
 * aborting interrupts the request at its next forward pass, frees its state, and rejects with an
 * AbortedError. `close()` releases the backend (workers, device memory); later calls reject with
 * ClientClosedError.
 *
 * Every rejection is an `Error` subclass carrying `_tag` (the `ClientError` union): handle by tag.
 *
 * @example
 * const client = await Client.open("models/sirius-tiny-arith", { kernels: SimdKernels.layer() })
 * const out = await client.generate({ prompt: "Q: ...\nA:", mode: "sirius" })
 * out.stats.aal // Sirius stats, typed by the mode
 * for await (const e of client.stream({ prompt: "Q: ...\nA:" })) if (e._tag === "Committed") process.stdout.write(e.text)
 * await client.close()
 */
import { Cause, Effect, Exit, Fiber, type Layer, ManagedRuntime, Schema, Stream } from "effect"
import * as ChatTemplate from "./ChatTemplate.ts"
import { type Checkpoint, type CheckpointError, loadCheckpoint } from "./Checkpoint.ts"
import type { ConfigError } from "./Config.ts"
import * as Generation from "./Generation.ts"
import type { BackendUnavailableError, KernelError, Kernels } from "./Kernels.ts"
import type { OnProgress } from "./LoadProgress.ts"
import * as Model from "./Model.ts"
import type * as Policy from "./Policy.ts"
import * as Sampler from "./Sampler.ts"
import type { SparsityOptions } from "./Sparsity.ts"

/** The request was aborted through its AbortSignal. */
export class AbortedError extends Schema.TaggedError<AbortedError>()("AbortedError", { message: Schema.String }) {}

/** The client was closed (before or during the call). */
export class ClientClosedError extends Schema.TaggedError<ClientClosedError>()("ClientClosedError", { message: Schema.String }) {}

/** An unexpected failure inside sirius-ts (a bug): the message and the original error as `cause`. */
export class InternalError extends Schema.TaggedError<InternalError>()("InternalError", { message: Schema.String, cause: Schema.Unknown }) {}

/** Everything a Client promise can reject with. */
export type ClientError =
  | ConfigError
  | CheckpointError
  | KernelError
  | BackendUnavailableError
  | Generation.GenerationError
  | Policy.PolicyError
  | AbortedError
  | ClientClosedError
  | InternalError

export type Mode = Generation.Mode

interface CommonRequest {
  /** Default: the model's generation_config max_new_tokens, else 128. */
  readonly maxNewTokens?: number
  readonly sampling?: Partial<Sampler.SamplingOptions>
  readonly stopStrings?: ReadonlyArray<string>
  /** Report each committed token's log-probability and this many alternatives. */
  readonly logprobs?: number
}

export interface FullRequest extends CommonRequest {
  readonly mode?: "full"
}

export interface SparseRequest extends CommonRequest {
  readonly mode: "sparse"
  /** Default: coarse, density 0.5. */
  readonly sparsity?: SparsityOptions
}

interface SiriusCommon extends CommonRequest {
  readonly mode: "sirius"
  /** Default: coarse, density 0.5. */
  readonly sparsity?: SparsityOptions
  readonly correctionPeriod?: number
}

/** A Sirius request: chain drafting with any policy, or tree drafting with a policy that does not draft. */
export type SiriusRequest =
  | (SiriusCommon & { readonly treeWidth?: 1; readonly policy?: Policy.CorrectionPolicy })
  | (SiriusCommon & { readonly treeWidth: number; readonly policy?: Policy.TreePolicy })

/**
 * What to continue, exactly one of (checked at run time too, for callers without types):
 * - `prompt`: text (needs the model's tokenizer) or token ids, used as they are;
 * - `messages`: a conversation, rendered with the model's chat template (ChatTemplate.forCheckpoint: the
 *   template of its tokenizer_config.json, chat_template.jinja or GGUF file, else the documented
 *   question/answer fallback) and encoded with its tokenizer.
 */
export type RequestInput =
  | { readonly prompt: string | ReadonlyArray<number>; readonly messages?: never }
  | { readonly messages: ReadonlyArray<ChatTemplate.Message>; readonly prompt?: never }

export type Request = (FullRequest | SparseRequest | SiriusRequest) & RequestInput

export type ModeOf<R> = R extends { readonly mode: infer M extends Mode } ? M : "full"
export type Event<M extends Mode = Mode> = Generation.EventOf<M>
/** The Finished event: tokens, text, stop reason and the stats of the request's mode. */
export type Completion<M extends Mode = Mode> = Generation.Finished<M>

export interface Client {
  readonly checkpoint: Checkpoint
  readonly backend: string
  readonly generate: <R extends Request>(request: R, options?: { readonly signal?: AbortSignal }) => Promise<Completion<ModeOf<R>>>
  readonly stream: <R extends Request>(request: R, options?: { readonly signal?: AbortSignal }) => AsyncIterable<Event<ModeOf<R>>>
  readonly close: () => Promise<void>
}

const defaultSparsity: SparsityOptions = { granularity: "coarse", density: 0.5 }

/** What a request reads from its checkpoint: not the weights, which a server can let go once resident. */
export type RequestCheckpoint = Omit<Checkpoint, "weights">

/**
 * The Effect stream of one request: the request's text encoded, its defaults filled in from the
 * checkpoint, its mode mapped to a Generation mode. Also what the fp-ts interop runs.
 */
export const requestStream = <R extends Request>(
  checkpoint: RequestCheckpoint,
  model: Model.Model,
  request: R
): Stream.Stream<Event<ModeOf<R>>, Generation.GenerateError> =>
  Effect.gen(function* () {
    const tokenizer = checkpoint.tokenizer
    const prompt = yield* promptIds(checkpoint, request)
    const common: Generation.CommonOptions = {
      prompt,
      maxNewTokens: request.maxNewTokens ?? checkpoint.generation.maxNewTokens ?? 128,
      sampling: { ...Sampler.greedy, ...request.sampling },
      eosTokenIds: checkpoint.eosTokenIds,
      stopStrings: request.stopStrings ?? [],
      tokenizer,
      logprobs: request.logprobs
    }
    const r = request as Request
    const options: Generation.GenerateOptions =
      r.mode === "sirius"
        ? ({
            ...common,
            mode: "sirius",
            sparsity: r.sparsity ?? defaultSparsity,
            ...(r.correctionPeriod !== undefined ? { correctionPeriod: r.correctionPeriod } : {}),
            ...(r.treeWidth !== undefined ? { treeWidth: r.treeWidth } : {}),
            ...(r.policy !== undefined ? { policy: r.policy } : {})
          } as Generation.SiriusOptions)
        : r.mode === "sparse"
          ? { ...common, mode: "sparse", sparsity: r.sparsity ?? defaultSparsity }
          : { ...common, mode: "full" }
    return Generation.generate(model, options) as Stream.Stream<Event<ModeOf<R>>, Generation.GenerateError>
  }).pipe(Stream.unwrap)

/** Each checkpoint's chat template, parsed once (a server or client renders many conversations). */
const templates = new WeakMap<RequestCheckpoint, ChatTemplate.ChatTemplate>()

const templateOf = (checkpoint: RequestCheckpoint): Effect.Effect<ChatTemplate.ChatTemplate, ChatTemplate.ChatTemplateError> => {
  const known = templates.get(checkpoint)
  return known !== undefined ? Effect.succeed(known) : Effect.tap(ChatTemplate.forCheckpoint(checkpoint), (t) => Effect.sync(() => templates.set(checkpoint, t)))
}

/** The request's prompt as token ids: its ids, its text encoded, or its messages rendered and encoded. */
const promptIds = (checkpoint: RequestCheckpoint, request: { readonly prompt?: string | ReadonlyArray<number> | undefined; readonly messages?: ReadonlyArray<ChatTemplate.Message> | undefined }) =>
  Effect.gen(function* () {
    const tokenizer = checkpoint.tokenizer
    if ((request.prompt === undefined) === (request.messages === undefined))
      return yield* new Generation.GenerationError({ field: "prompt", message: "prompt, messages: give exactly one of them" })
    if (request.messages !== undefined) {
      if (tokenizer === undefined)
        return yield* new Generation.GenerationError({ field: "messages", message: `messages: ${checkpoint.dir} has no tokenizer, so a conversation cannot be encoded: give the prompt as token ids` })
      if (request.messages.length === 0) return yield* new Generation.GenerationError({ field: "messages", message: "messages: the conversation is empty" })
      for (const [i, m] of request.messages.entries())
        if (typeof m?.role !== "string" || typeof m.content !== "string")
          return yield* new Generation.GenerationError({ field: "messages", message: `messages.${i}: expected { role: string, content: string }` })
      const template = yield* Effect.mapError(templateOf(checkpoint), (e) => new Generation.GenerationError({ field: "messages", message: `messages: ${e.message}` }))
      const text = yield* Effect.mapError(template.render(request.messages), (e) => new Generation.GenerationError({ field: "messages", message: e.message.startsWith("messages.") ? e.message : `messages: ${e.message}` }))
      return ChatTemplate.encode(template, tokenizer, text)
    }
    const prompt = request.prompt!
    if (typeof prompt !== "string") return prompt
    if (tokenizer === undefined)
      return yield* new Generation.GenerationError({ field: "prompt", message: `prompt: ${checkpoint.dir} has no tokenizer.json, so the prompt must be token ids` })
    return tokenizer.encode(prompt)
  })

/** Fail the stream with AbortedError when the signal aborts (at the next forward pass). */
const abortable = <A, E>(stream: Stream.Stream<A, E>, signal: AbortSignal | undefined): Stream.Stream<A, E | AbortedError> =>
  signal === undefined
    ? stream
    : Stream.interruptWhen(
        stream,
        Effect.callback<never, AbortedError>((resume) => {
          const abort = () => resume(Effect.fail(new AbortedError({ message: `the request was aborted${signal.reason instanceof Error ? `: ${signal.reason.message}` : ""}` })))
          if (signal.aborted) abort()
          else signal.addEventListener("abort", abort, { once: true })
        })
      )

/** The tagged failure of an exit: its typed error, interruption as `interrupted`, anything else an InternalError. */
const failureOf = (cause: Cause.Cause<unknown>, interrupted: () => Error): Error => {
  const failure = cause.reasons.find(Cause.isFailReason)
  if (failure !== undefined) return failure.error as Error
  if (Cause.hasInterruptsOnly(cause)) return interrupted()
  const defect = Cause.squash(cause)
  return new InternalError({ message: `internal error: ${defect instanceof Error ? defect.message : String(defect)}`, cause: defect })
}

/**
 * Pull a stream's events one at a time as an AsyncIterator. The stream runs in a fiber of the runtime (so
 * closing the client interrupts it) and waits for each `next()` (backpressure: no event runs ahead of its
 * consumer); `return()` (a `break` out of `for await`) interrupts it and frees the request's state.
 */
const iterate = <A, R>(
  runtime: ManagedRuntime.ManagedRuntime<R, unknown>,
  stream: Stream.Stream<A, unknown, R>,
  interrupted: () => Error
): AsyncIterator<A> => {
  type Slot = { readonly value: A; readonly taken: () => void }
  let waiting: ((r: IteratorResult<A>) => void) | undefined
  let failing: ((e: Error) => void) | undefined
  let ready: Slot | undefined
  let ended: { readonly error?: Error } | undefined
  let fiber: Fiber.Fiber<void, unknown> | undefined
  const start = () => {
    fiber = runtime.runFork(
      Stream.runForEach(stream, (value) =>
        Effect.callback<void>((resume) => {
          const taken = () => resume(Effect.void)
          if (waiting !== undefined) {
            const w = waiting
            waiting = failing = undefined
            w({ value, done: false })
            taken()
          } else ready = { value, taken }
        })
      )
    )
    fiber.addObserver((exit) => {
      ended = Exit.isSuccess(exit) ? {} : { error: failureOf(exit.cause, interrupted) }
      if (waiting !== undefined) {
        if (ended.error !== undefined) failing!(ended.error)
        else waiting({ value: undefined, done: true })
        waiting = failing = undefined
      }
    })
  }
  return {
    next: () =>
      new Promise<IteratorResult<A>>((resolve, reject) => {
        if (fiber === undefined) start()
        if (ready !== undefined) {
          const r = ready
          ready = undefined
          r.taken()
          resolve({ value: r.value, done: false })
        } else if (ended !== undefined) {
          if (ended.error !== undefined) reject(ended.error)
          else resolve({ value: undefined, done: true })
        } else {
          waiting = resolve
          failing = reject
        }
      }),
    return: async () => {
      if (fiber !== undefined && ended === undefined) await runtime.runPromise(Fiber.interrupt(fiber))
      ended ??= {}
      return { value: undefined, done: true }
    }
  }
}

/**
 * Load a model (an HF directory) onto a backend and return a client.
 *
 * **Details**: `kernels` is any Kernels layer; its construction errors (a backend that cannot start) and
 * the checkpoint's (ConfigError, CheckpointError) reject the promise, and whatever was built is released.
 * `onProgress` sees every tensor read and made resident.
 *
 * @category constructors
 */
export const open = async <E>(
  path: string,
  options: { readonly kernels: Layer.Layer<Kernels, E>; readonly onProgress?: OnProgress }
): Promise<Client> => {
  const runtime = ManagedRuntime.make(options.kernels)
  const onProgress = options.onProgress
  const loaded = await runtime.runPromiseExit(
    Effect.gen(function* () {
      // a GGUF file too large for the backend is refused from its header, before its tensors are read
      yield* Model.admitFile(path, { sparse: true })
      const checkpoint = yield* loadCheckpoint(path, onProgress === undefined ? {} : { onProgress })
      // the transposed down_proj lets sparse and Sirius requests of every granularity share the loaded model
      const model = yield* Model.fromCheckpoint(checkpoint, { sparse: true, ...(onProgress === undefined ? {} : { onProgress }) })
      return { checkpoint, model }
    })
  )
  if (Exit.isFailure(loaded)) {
    await runtime.dispose()
    throw failureOf(loaded.cause, () => new ClientClosedError({ message: "the client was closed while it was opening" }))
  }
  const { checkpoint, model } = loaded.value
  let closed = false
  const closedError = () => new ClientClosedError({ message: "the client is closed" })

  const run = <A>(effect: Effect.Effect<A, unknown>): Promise<A> =>
    closed
      ? Promise.reject(closedError())
      : runtime.runPromiseExit(effect).then((exit) => {
          if (Exit.isSuccess(exit)) return exit.value
          throw failureOf(exit.cause, closedError)
        })

  return {
    checkpoint,
    backend: model.kernels.name,
    generate: <R extends Request>(request: R, opts?: { readonly signal?: AbortSignal }) =>
      run(
        Stream.runLast(abortable(requestStream(checkpoint, model, request), opts?.signal)).pipe(
          Effect.flatMap((last) =>
            last._tag === "Some" && last.value._tag === "Finished"
              ? Effect.succeed(last.value as Completion<ModeOf<R>>)
              : Effect.die(new Error("the request's stream ended without a Finished event"))
          )
        )
      ),
    stream: <R extends Request>(request: R, opts?: { readonly signal?: AbortSignal }): AsyncIterable<Event<ModeOf<R>>> => ({
      [Symbol.asyncIterator]: () =>
        closed
          ? { next: () => Promise.reject(closedError()) }
          : iterate(runtime, abortable(requestStream(checkpoint, model, request), opts?.signal), closedError)
    }),
    close: async () => {
      if (closed) return
      closed = true
      await runtime.dispose()
    }
  }
}
