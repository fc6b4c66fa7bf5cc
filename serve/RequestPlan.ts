/**
 * RequestPlan: a decoded OpenAI request (OpenAiSchema.ts) and the server's defaults to what the server
 * will run: the Client.Request (Client.requestStream turns it into the engine's stream: the one place),
 * the prompt's token ids, how to answer (stream or not, usage chunk, logprobs, Sirius events) and what the
 * request will allocate on the backend (Request.backendBytes, for admission).
 *
 * Everything a client can get wrong is found here, before the request takes a slot, and is a 400 naming
 * the field (404 for another model's name): a prompt that fills the context, `max_tokens` beyond it, a
 * conversation the chat template refuses, a `sirius` option that the request's mode would ignore.
 *
 * Defaults: `max_tokens` is the server's `--max-tokens`, else the model's generation_config
 * `max_new_tokens`, else 256, cut to what the context leaves after the prompt (a client that gave no
 * `max_tokens` is not refused for the server's default); sampling and Sirius settings are the server's
 * flags; a sampled request without `seed` draws its own, unless the server was given `--seed`.
 */
import { Effect, Result } from "effect"
import { readFileSync } from "node:fs"
import { thresholdsFile } from "../cli/generate.ts"
import * as ChatTemplate from "../src/ChatTemplate.ts"
import type * as Client from "../src/Client.ts"
import { errorText } from "../src/Config.ts"
import * as Policy from "../src/Policy.ts"
import * as Request from "../src/Request.ts"
import type { SamplingOptions } from "../src/Sampler.ts"
import * as Sampler from "../src/Sampler.ts"
import type { Granularity, SparsityOptions } from "../src/Sparsity.ts"
import { ApiError, invalid } from "./ApiError.ts"
import type { ChatMessage, ChatRequest, CompletionRequest } from "./OpenAiSchema.ts"
import type { ServedModel } from "./ServedModel.ts"

export type Mode = Request.Mode

/** The server's per-request defaults (its generation flags). */
export interface Defaults {
  readonly mode: Mode
  readonly granularity: Granularity
  readonly density: number
  readonly period: number
  readonly threshold: number
  readonly treeWidth: number
  readonly acceptance: Policy.AcceptanceName
  readonly sampling: SamplingOptions
  /** The server's `--seed`: requests without a seed use it; absent, each sampled request draws its own. */
  readonly seed: number | undefined
  readonly maxTokens: number | undefined
  readonly stop: ReadonlyArray<string>
}

export const defaults: Defaults = {
  mode: "full",
  granularity: "coarse",
  density: 0.5,
  period: 16,
  threshold: 0.1,
  treeWidth: 1,
  acceptance: "threshold",
  sampling: Sampler.greedy,
  seed: undefined,
  maxTokens: undefined,
  stop: []
}

/** The fallback budget when neither the request, the server nor the model's generation_config sets one. */
export const defaultMaxTokens = 256

export type Input = { readonly kind: "completion"; readonly body: CompletionRequest } | { readonly kind: "chat"; readonly body: ChatRequest }

export interface Plan {
  readonly kind: Input["kind"]
  readonly request: Client.Request
  readonly promptIds: ReadonlyArray<number>
  readonly stream: boolean
  /** Stream a final usage chunk (`stream_options.include_usage`). */
  readonly includeUsage: boolean
  /** Alternatives per token when log-probabilities were asked for. */
  readonly logprobs: number | undefined
  /** Stream Sirius's drafts, verifications and rollbacks as named events. */
  readonly events: boolean
  readonly mode: Mode
  readonly sparsity: SparsityOptions | undefined
  /** What the request allocates in the backend's memory (Request.backendBytes: gathers, KV cache, activations). */
  readonly backendBytes: number
}

/** Which `sirius` options each mode reads: giving one to a mode that ignores it is an error, as in the CLI. */
const modesOf = { sparsity: ["sparse", "sirius"], density: ["sparse", "sirius"], period: ["sirius"], threshold: ["sirius"], tree_width: ["sirius"], acceptance: ["sirius"] } as const

/** Per-layer thresholds written by `sirius calibrate`, read once per density. */
const thresholdsCache = new Map<string, ReadonlyArray<number>>()
const readThresholds = (dir: string, layers: number, density: number): Effect.Effect<ReadonlyArray<number>, ApiError> => {
  const file = thresholdsFile(dir, density)
  const cached = thresholdsCache.get(file)
  if (cached !== undefined) return Effect.succeed(cached)
  return Effect.try({
    try: () => {
      const json = JSON.parse(readFileSync(file, "utf8")) as { thresholds?: unknown }
      if (!Array.isArray(json.thresholds) || json.thresholds.length !== layers || json.thresholds.some((t) => typeof t !== "number"))
        throw new Error(`expected {"thresholds": [${layers} numbers]}`)
      thresholdsCache.set(file, json.thresholds as Array<number>)
      return json.thresholds as ReadonlyArray<number>
    },
    catch: (e) =>
      invalid("sirius.sparsity", `sirius.sparsity: fine-threshold needs the thresholds \`sirius calibrate --density ${density}\` writes (${file}: ${errorText(e)})`)
  })
}

/** The text of a chat message: a string, or its text parts joined by newlines (other parts are refused). */
const messageText = (m: ChatMessage, i: number): Effect.Effect<string, ApiError> => {
  if (m.content === undefined || m.content === null) return Effect.succeed("")
  if (typeof m.content === "string") return Effect.succeed(m.content)
  const texts: Array<string> = []
  for (const [j, part] of m.content.entries()) {
    if (part.type !== "text" || part.text === undefined)
      return Effect.fail(invalid(`messages.${i}.content.${j}`, `messages.${i}.content.${j}: only text parts are supported (got a part of type "${part.type}")`))
    texts.push(part.text)
  }
  return Effect.succeed(texts.join("\n"))
}

/** The prompt's token ids: completions encode the text (or take ids); chat renders the model's template. */
const promptIds = (served: ServedModel, input: Input): Effect.Effect<ReadonlyArray<number>, ApiError> =>
  Effect.gen(function* () {
    const tokenizer = served.checkpoint.tokenizer
    const field = input.kind === "chat" ? "messages" : "prompt"
    const needTokenizer = () => invalid(field, `${field}: the model ${served.id} has no tokenizer.json, so prompts must be token ids (a completions request's prompt as a list of ids)`)
    if (input.kind === "completion") {
      let prompt = input.body.prompt
      if (Array.isArray(prompt) && prompt.length > 0 && (typeof prompt[0] === "string" || Array.isArray(prompt[0]))) {
        if (prompt.length !== 1) return yield* invalid("prompt", `prompt: one prompt per request (got a list of ${prompt.length})`)
        prompt = prompt[0]!
      }
      if (typeof prompt !== "string") return prompt as ReadonlyArray<number>
      if (tokenizer === undefined) return yield* needTokenizer()
      return tokenizer.encode(prompt)
    }
    if (tokenizer === undefined) return yield* needTokenizer()
    if (Result.isFailure(served.template))
      return yield* new ApiError({ status: 500, type: "server_error", param: null, code: "chat_template_error", message: `the model's chat template cannot be used: ${served.template.failure.message}` })
    const template = served.template.success
    const messages: Array<ChatTemplate.Message> = []
    for (const [i, m] of input.body.messages.entries())
      messages.push({ role: m.role === "developer" ? "system" : m.role, content: yield* messageText(m, i) })
    const text = yield* template.render(messages).pipe(Effect.mapError((e) => invalid("messages", e.message.startsWith("messages.") ? e.message : `messages: ${e.message}`)))
    return ChatTemplate.encode(template, tokenizer, text)
  })

/** Plan a request against the served model and the server's defaults. */
export const plan = (served: ServedModel, d: Defaults, input: Input): Effect.Effect<Plan, ApiError> =>
  Effect.gen(function* () {
    const body = input.body
    if (body.model !== undefined && body.model !== null && body.model !== served.id)
      return yield* new ApiError({
        status: 404,
        type: "invalid_request_error",
        param: "model",
        code: "model_not_found",
        message: `The model '${body.model}' does not exist: this server serves '${served.id}'`
      })

    // the mode and its options
    const s = body.sirius ?? {}
    const mode = s.mode ?? d.mode
    for (const [key, modes] of Object.entries(modesOf))
      if (s[key as keyof typeof modesOf] !== undefined && s[key as keyof typeof modesOf] !== null && !(modes as ReadonlyArray<Mode>).includes(mode))
        return yield* invalid(`sirius.${key}`, `sirius.${key}: applies to mode ${modes.join(" or ")}, and this request's mode is ${mode}${s.mode == null ? " (the server's default; set sirius.mode)" : ""}`)
    const acceptance = s.acceptance ?? d.acceptance
    if (s.threshold != null && acceptance !== "threshold")
      return yield* invalid("sirius.threshold", `sirius.threshold: applies to acceptance threshold, not ${acceptance}`)
    const treeWidth = s.tree_width ?? d.treeWidth
    const policy = Policy.byName(acceptance, s.threshold ?? d.threshold)
    if (mode === "sirius" && treeWidth > 1 && policy.draft !== undefined)
      return yield* invalid("sirius.acceptance", `sirius.acceptance: ${acceptance} samples its own drafts, which tree drafting (tree_width ${treeWidth}) cannot honour: use tree_width 1, or acceptance greedy-exact or threshold`)
    const granularity = s.sparsity ?? d.granularity
    const density = s.density ?? d.density
    const sparsity: SparsityOptions | undefined =
      mode === "full"
        ? undefined
        : granularity === "fine-threshold"
          ? { granularity, density, thresholds: yield* readThresholds(served.checkpoint.dir, served.model.config.numHiddenLayers, density) }
          : { granularity, density }

    // the prompt and the budget
    const ids = yield* promptIds(served, input)
    const context = served.model.config.maxPositionEmbeddings
    const promptField = input.kind === "chat" ? "messages" : "prompt"
    if (ids.length >= context)
      return yield* invalid(promptField, `${promptField}: the prompt is ${ids.length} tokens, and the model's context is ${context} (max_position_embeddings): no room to generate`, "context_length_exceeded")
    const [budgetField, asked] =
      input.kind === "chat" && input.body.max_completion_tokens != null ? (["max_completion_tokens", input.body.max_completion_tokens] as const) : (["max_tokens", body.max_tokens] as const)
    if (asked != null && ids.length + asked > context)
      return yield* invalid(budgetField, `${budgetField}: the prompt (${ids.length} tokens) + ${budgetField} (${asked}) exceeds the model's context of ${context} tokens (max_position_embeddings)`, "context_length_exceeded")
    const maxNewTokens = asked ?? Math.min(d.maxTokens ?? served.checkpoint.generation.maxNewTokens ?? defaultMaxTokens, context - ids.length)

    // how to answer
    let logprobs: number | undefined
    if (input.kind === "completion") logprobs = input.body.logprobs ?? undefined
    else if (input.body.logprobs === true) logprobs = input.body.top_logprobs ?? 0
    else if (input.body.top_logprobs != null) return yield* invalid("top_logprobs", "top_logprobs: requires logprobs: true")
    const stream = body.stream === true

    const sampling: SamplingOptions = {
      temperature: body.temperature ?? d.sampling.temperature,
      topK: body.top_k ?? d.sampling.topK,
      topP: body.top_p ?? d.sampling.topP,
      minP: body.min_p ?? d.sampling.minP,
      repetitionPenalty: body.repeat_penalty ?? d.sampling.repetitionPenalty,
      seed: body.seed ?? d.seed ?? Math.floor(Math.random() * 2 ** 32)
    }
    const stop = body.stop == null ? d.stop : typeof body.stop === "string" ? [body.stop] : body.stop
    const common = { prompt: ids, maxNewTokens, sampling, stopStrings: stop, ...(logprobs === undefined ? {} : { logprobs }) }
    const request: Client.Request =
      mode === "full"
        ? { ...common, mode: "full" }
        : mode === "sparse"
          ? { ...common, mode: "sparse", sparsity: sparsity! }
          : ({ ...common, mode: "sirius", sparsity: sparsity!, correctionPeriod: s.period ?? d.period, treeWidth, policy } as Client.Request)
    return {
      kind: input.kind,
      request,
      promptIds: ids,
      stream,
      includeUsage: stream && body.stream_options?.include_usage === true,
      logprobs,
      events: stream && mode === "sirius" && s.events === true,
      mode,
      sparsity,
      // KV slots beyond prompt + budget, as the engine allocates them: a Sirius window's look-ahead, a tree's
      // nodes (Sirius.init)
      backendBytes: Request.backendBytes(served.model, sparsity, {
        prompt: ids.length,
        maxNewTokens,
        extraSlots: mode === "sirius" && treeWidth > 1 ? 1 + ((s.period ?? d.period) - 1) * treeWidth : 1
      })
    }
  })
