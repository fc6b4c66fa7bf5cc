/**
 * SiriusLanguageModel: an `effect/ai` LanguageModel backed by a local sirius-ts model, so Effect programs
 * call `LanguageModel.generateText` / `streamText` on it as on any provider.
 *
 * The prompt's messages go through the model's chat template (ChatTemplate.ts: its own Jinja template, or
 * the bundled model's Q/A format), the request through `Client.requestStream` (the one place a request
 * becomes a stream). `generateText` answers with a text part and a finish part (reason and usage);
 * `streamText` with text-start, a text-delta per committed piece of text (in Sirius mode, as each window is
 * verified), text-end and finish. The finish part's metadata carries the request's stats under `sirius`
 * (the engine's names: `aal`, `effectiveDensity`, ...).
 *
 * Sampling and Sirius settings are not part of `effect/ai`'s options: they come from the `Config` service,
 * merged over the defaults given to `layer`/`make`, and scoped per call with `withConfigOverride` (the
 * pattern of Effect's OpenAI provider).
 *
 * Text only: tools, files and JSON response formats are refused with an AiError (InvalidRequestError), as
 * is a prompt the template cannot render. Requests are not queued: the caller decides how many run at once
 * (`sirius serve` adds slots and admission).
 */
import { Context, Effect, Layer, Stream } from "effect"
import { AiError, IdGenerator, LanguageModel, type Prompt, type Response } from "effect/ai"
import { dual } from "effect/Function"
import * as ChatTemplate from "../src/ChatTemplate.ts"
import { loadCheckpoint } from "../src/Checkpoint.ts"
import * as Client from "../src/Client.ts"
import type { GenerateError } from "../src/Generation.ts"
import type { Kernels } from "../src/Kernels.ts"
import * as Model from "../src/Model.ts"
import type * as Policy from "../src/Policy.ts"
import type { Event, Mode, StopReason } from "../src/Request.ts"
import type { SparsityOptions } from "../src/Sparsity.ts"

/** Generation settings: what `effect/ai`'s options do not carry. Every field is optional. */
export interface ConfigShape {
  /** Most tokens to generate. Default: the model's generation_config max_new_tokens, else 256 (cut to the context left). */
  readonly maxTokens?: number
  /** 0 (the default) is greedy decoding. */
  readonly temperature?: number
  readonly topK?: number
  readonly topP?: number
  readonly minP?: number
  readonly repetitionPenalty?: number
  readonly seed?: number
  readonly stop?: ReadonlyArray<string>
  /** "full" (default), "sparse" or "sirius". */
  readonly mode?: Mode
  /** Sparse and Sirius modes. Default coarse, density 0.5. */
  readonly sparsity?: SparsityOptions
  /** Sirius: tokens per verification window. Default 16. */
  readonly correctionPeriod?: number
  /** Sirius: beam width of tree drafting. Default 1 (chain). */
  readonly treeWidth?: number
  /** Sirius: which drafts the full model accepts. Default Policy.threshold(0.1). */
  readonly policy?: Policy.CorrectionPolicy
}

/** The generation settings in context; merged over the provider's defaults on each call. */
export class Config extends Context.Service<Config, ConfigShape>()("sirius-ts/ai/SiriusLanguageModel/Config") {}

/** Scope settings over the effects inside (merged over any Config already in context). */
export const withConfigOverride: {
  (overrides: ConfigShape): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, Exclude<R, Config>>
  <A, E, R>(self: Effect.Effect<A, E, R>, overrides: ConfigShape): Effect.Effect<A, E, Exclude<R, Config>>
} = dual(2, <A, E, R>(self: Effect.Effect<A, E, R>, overrides: ConfigShape) =>
  Effect.flatMap(Effect.serviceOption(Config), (config) => Effect.provideService(self, Config, { ...(config._tag === "Some" ? config.value : {}), ...overrides }))
)

const MODULE = "SiriusLanguageModel"

const invalidRequest = (method: string, description: string, parameter?: string) =>
  AiError.make({ module: MODULE, method, reason: new AiError.InvalidRequestError({ description, ...(parameter === undefined ? {} : { parameter }) }) })

/** The engine's failure as an AiError: the request's (InvalidRequestError) or the backend's (InternalProviderError). */
const engineError = (method: string) => (e: GenerateError) =>
  e._tag === "GenerationError"
    ? invalidRequest(method, e.message, e.field)
    : AiError.make({ module: MODULE, method, reason: new AiError.InternalProviderError({ description: `${e._tag}: ${e.message}` }) })

/** The prompt's messages as chat-template messages: text parts only. */
const messagesOf = (method: string, prompt: Prompt.Prompt): Effect.Effect<Array<ChatTemplate.Message>, AiError.AiError> => {
  const out: Array<ChatTemplate.Message> = []
  for (const [i, m] of prompt.content.entries()) {
    if (m.role === "system") {
      out.push({ role: "system", content: m.content })
      continue
    }
    if (m.role === "tool") return Effect.fail(invalidRequest(method, `prompt message ${i}: tool results are not supported (sirius-ts generates text only)`, "prompt"))
    const texts: Array<string> = []
    for (const part of m.content) {
      if (part.type === "text") texts.push(part.text)
      else if (part.type !== "reasoning")
        return Effect.fail(invalidRequest(method, `prompt message ${i}: ${part.type} parts are not supported (sirius-ts generates text only)`, "prompt"))
    }
    out.push({ role: m.role, content: texts.join("") })
  }
  return Effect.succeed(out)
}

const finishReason = (r: StopReason): Response.FinishReason => (r === "length" ? "length" : "stop")

export interface MakeOptions {
  /** What requests read from the checkpoint (its weights are not needed once the model is resident). */
  readonly checkpoint: Client.RequestCheckpoint
  readonly model: Model.Model
  /** Default: the checkpoint's own (ChatTemplate.forCheckpoint). */
  readonly template?: ChatTemplate.ChatTemplate
  /** Defaults under any Config in context. */
  readonly config?: ConfigShape
}

/** A LanguageModel service over a loaded model. */
export const make = (options: MakeOptions): Effect.Effect<LanguageModel.LanguageModel, ChatTemplate.ChatTemplateError> =>
  Effect.gen(function* () {
    const { checkpoint, model } = options
    const template = options.template ?? (yield* ChatTemplate.forCheckpoint(checkpoint))
    const tokenizer = checkpoint.tokenizer
    const modelId = checkpoint.dir.split(/[\\/]/).filter((s) => s !== "").pop() ?? checkpoint.dir

    /** The engine's stream of events for a call: settings merged, prompt rendered and encoded. */
    const events = (method: string, provider: LanguageModel.ProviderOptions) =>
      Effect.gen(function* () {
        if (provider.tools.length > 0) return yield* invalidRequest(method, "tools are not supported (sirius-ts generates text only)", "tools")
        if (provider.responseFormat.type !== "text") return yield* invalidRequest(method, "only the text response format is supported", "responseFormat")
        if (tokenizer === undefined) return yield* invalidRequest(method, `${checkpoint.dir} has no tokenizer.json: text prompts need one`, "prompt")
        const context = yield* Effect.context<never>()
        const c: ConfigShape = { ...options.config, ...context.mapUnsafe.get(Config.key) }
        const messages = yield* messagesOf(method, provider.prompt)
        const text = yield* template.render(messages).pipe(Effect.mapError((e) => invalidRequest(method, e.message, "prompt")))
        const prompt = ChatTemplate.encode(template, tokenizer, text)
        const room = model.config.maxPositionEmbeddings - prompt.length
        const sampling = {
          ...(c.temperature === undefined ? {} : { temperature: c.temperature }),
          ...(c.topK === undefined ? {} : { topK: c.topK }),
          ...(c.topP === undefined ? {} : { topP: c.topP }),
          ...(c.minP === undefined ? {} : { minP: c.minP }),
          ...(c.repetitionPenalty === undefined ? {} : { repetitionPenalty: c.repetitionPenalty }),
          ...(c.seed === undefined ? {} : { seed: c.seed })
        }
        const common = {
          prompt,
          maxNewTokens: c.maxTokens ?? Math.max(1, Math.min(checkpoint.generation.maxNewTokens ?? 256, room)),
          sampling,
          stopStrings: c.stop ?? []
        }
        const sparsity = c.sparsity === undefined ? {} : { sparsity: c.sparsity }
        const request: Client.Request =
          c.mode === "sirius"
            ? ({
                ...common,
                mode: "sirius",
                ...sparsity,
                ...(c.correctionPeriod === undefined ? {} : { correctionPeriod: c.correctionPeriod }),
                ...(c.treeWidth === undefined ? {} : { treeWidth: c.treeWidth }),
                ...(c.policy === undefined ? {} : { policy: c.policy })
              } as Client.Request)
            : c.mode === "sparse"
              ? { ...common, mode: "sparse", ...sparsity }
              : { ...common, mode: "full" }
        return Stream.mapError(Client.requestStream(checkpoint, model, request) as Stream.Stream<Event, GenerateError>, engineError(method))
      })

    const finish = (e: Extract<Event, { _tag: "Finished" }>): Response.FinishPartEncoded => ({
      type: "finish",
      reason: finishReason(e.reason),
      usage: { inputTokens: { total: e.stats.promptTokens }, outputTokens: { total: e.stats.generatedTokens } },
      metadata: { sirius: { ...e.stats } }
    })

    return yield* LanguageModel.make({
      generateText: (provider) =>
        Effect.gen(function* () {
          const stream = yield* events("generateText", provider)
          const last = yield* Stream.runLast(Stream.filter(stream, (e) => e._tag === "Finished"))
          if (last._tag === "None") return yield* Effect.die(new Error("the request's stream ended without a Finished event"))
          const finished = last.value as Extract<Event, { _tag: "Finished" }>
          const parts: Array<Response.PartEncoded> = [{ type: "response-metadata", modelId, timestamp: new Date().toISOString() }, { type: "text", text: finished.text }, finish(finished)]
          return parts
        }),
      streamText: (provider) =>
        Stream.unwrap(
          Effect.gen(function* () {
            const stream = yield* events("streamText", provider)
            const id = yield* (yield* IdGenerator.IdGenerator).generateId()
            const parts = Stream.flatMap(stream, (e): Stream.Stream<Response.StreamPartEncoded> => {
              if (e._tag === "Committed") return e.text === "" ? Stream.empty : Stream.make({ type: "text-delta", id, delta: e.text })
              if (e._tag === "Finished") return Stream.make({ type: "text-end", id }, finish(e))
              return Stream.empty
            })
            return Stream.concat(Stream.make<[Response.StreamPartEncoded, Response.StreamPartEncoded]>({ type: "response-metadata", modelId, timestamp: new Date().toISOString() }, { type: "text-start", id }), parts)
          })
        )
    })
  })

export interface LayerOptions {
  /** A model directory (HF layout). */
  readonly model: string
  /** Defaults under any Config in context. */
  readonly config?: ConfigShape
}

/**
 * Load a model onto the Kernels in context and provide it as the LanguageModel.
 *
 * @example
 * const program = LanguageModel.generateText({ prompt: "Tom has 2 pens. He buys 3 more. How many pens now?" })
 * Effect.runPromise(program.pipe(Effect.provide(SiriusLanguageModel.layer({ model: Bundled.modelDir })), Effect.provide(SimdKernels.layer())))
 */
export const layer = (options: LayerOptions) =>
  Layer.effect(
    LanguageModel.LanguageModel,
    Effect.gen(function* () {
      const checkpoint = yield* loadCheckpoint(options.model)
      // the transposed down_proj lets a Config choose any sparsity granularity
      const model = yield* Model.fromCheckpoint(checkpoint, { sparse: true })
      const template = yield* ChatTemplate.forCheckpoint(checkpoint)
      // not the weights: once resident they are the backend's
      const { weights: _weights, ...rest } = checkpoint
      return yield* make({ checkpoint: rest, model, template, ...(options.config === undefined ? {} : { config: options.config }) })
    })
  ) satisfies Layer.Layer<LanguageModel.LanguageModel, unknown, Kernels>
