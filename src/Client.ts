/**
 * Client: the Promise / AsyncIterable facade for services not written with Effect.
 *
 * `open(dir, { kernels })` loads a model directory once onto a backend (a Kernels layer, e.g.
 * `ReferenceKernels.layer` or `SimdKernels.layer({ threads })`) and returns a client whose `generate`
 * resolves to the finished completion and whose `stream` is an AsyncIterable of the request's events.
 * Both take an AbortSignal: aborting interrupts the request at its next forward pass and frees its state.
 * `close()` releases the backend (workers, device memory).
 *
 * @example
 * const client = await Client.open("models/sirius-tiny-arith", { kernels: ReferenceKernels.layer })
 * const out = await client.generate({ prompt: "Q: ...\nA:", mode: "sirius" })
 * for await (const e of client.stream({ prompt: "Q: ...\nA:" })) if (e._tag === "Committed") process.stdout.write(e.text)
 * await client.close()
 */
import { Effect, type Layer, ManagedRuntime, Stream } from "effect"
import { type Checkpoint, loadCheckpoint } from "./Checkpoint.ts"
import * as Generation from "./Generation.ts"
import type { KernelError, Kernels } from "./Kernels.ts"
import * as Model from "./Model.ts"
import * as Policy from "./Policy.ts"
import * as Sampler from "./Sampler.ts"
import * as Sirius from "./Sirius.ts"
import type { SparsityOptions } from "./Sparsity.ts"

export interface Request {
  /** Text (needs the model's tokenizer) or token ids. */
  readonly prompt: string | ReadonlyArray<number>
  readonly maxNewTokens?: number
  /** full (default), sparse, or sirius (sparse drafts + full verification). */
  readonly mode?: "full" | "sparse" | "sirius"
  readonly sparsity?: SparsityOptions
  readonly correctionPeriod?: number
  readonly treeWidth?: number
  readonly policy?: Policy.CorrectionPolicy
  readonly sampling?: Partial<Sampler.SamplingOptions>
  readonly stopStrings?: ReadonlyArray<string>
}

export type Event = Generation.GenerationEvent | Sirius.SiriusEvent
export type Completion = Extract<Event, { _tag: "Finished" }>

export interface Client {
  readonly checkpoint: Checkpoint
  readonly backend: string
  readonly generate: (request: Request, options?: { readonly signal?: AbortSignal }) => Promise<Completion>
  readonly stream: (request: Request, options?: { readonly signal?: AbortSignal }) => AsyncIterable<Event>
  readonly close: () => Promise<void>
}

/** The Effect stream of one request; also what the fp-ts interop runs. */
export const requestStream = (checkpoint: Checkpoint, model: Model.Model, request: Request): Stream.Stream<Event, Generation.GenerationError | KernelError> =>
  Effect.gen(function* () {
    const tokenizer = checkpoint.tokenizer
    if (typeof request.prompt === "string" && tokenizer === undefined)
      return yield* Effect.fail(new Generation.GenerationError({ field: "prompt", message: `${checkpoint.dir} has no tokenizer.json: pass token ids` }))
    const base: Generation.GenerateOptions = {
      prompt: typeof request.prompt === "string" ? tokenizer!.encode(request.prompt) : request.prompt,
      maxNewTokens: request.maxNewTokens ?? checkpoint.generation.maxNewTokens ?? 128,
      sampling: { ...Sampler.greedy, ...request.sampling },
      eosTokenIds: checkpoint.eosTokenIds,
      stopStrings: request.stopStrings ?? [],
      tokenizer
    }
    const sparsity = request.sparsity ?? { granularity: "coarse", density: 0.5 }
    const mode = request.mode ?? "full"
    const stream: Stream.Stream<Event, Generation.GenerationError | KernelError> =
      mode === "sirius"
        ? Sirius.generate(model, {
            ...base,
            sparsity,
            ...(request.correctionPeriod !== undefined ? { correctionPeriod: request.correctionPeriod } : {}),
            ...(request.treeWidth !== undefined ? { treeWidth: request.treeWidth } : {}),
            ...(request.policy !== undefined ? { policy: request.policy } : {})
          })
        : Generation.generate(model, mode === "sparse" ? { ...base, sparsity } : base)
    return stream
  }).pipe(Stream.unwrap)

const abortable = <A, E>(stream: Stream.Stream<A, E>, signal: AbortSignal | undefined): Stream.Stream<A, E> =>
  signal === undefined
    ? stream
    : Stream.interruptWhen(
        stream,
        Effect.callback<void>((resume) => {
          if (signal.aborted) resume(Effect.void)
          else signal.addEventListener("abort", () => resume(Effect.void), { once: true })
        })
      )

export const open = async (dir: string, options: { readonly kernels: Layer.Layer<Kernels> }): Promise<Client> => {
  const runtime = ManagedRuntime.make(options.kernels)
  const { checkpoint, model } = await runtime.runPromise(
    Effect.gen(function* () {
      const checkpoint = yield* loadCheckpoint(dir)
      // the transposed down_proj lets sparse and Sirius requests share the loaded model
      const model = yield* Model.fromCheckpoint(checkpoint, { sparse: true })
      return { checkpoint, model }
    })
  )
  return {
    checkpoint,
    backend: model.kernels.name,
    generate: (request, opts) =>
      runtime.runPromise(
        Stream.runLast(abortable(requestStream(checkpoint, model, request), opts?.signal)).pipe(
          Effect.flatMap((last) =>
            last._tag === "Some" && last.value._tag === "Finished"
              ? Effect.succeed(last.value as Completion)
              : Effect.fail(new Generation.GenerationError({ field: "signal", message: "the request was aborted" }))
          )
        )
      ),
    stream: (request, opts) => Stream.toAsyncIterable(abortable(requestStream(checkpoint, model, request), opts?.signal)),
    close: () => runtime.dispose()
  }
}
