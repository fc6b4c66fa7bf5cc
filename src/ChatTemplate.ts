/**
 * ChatTemplate: a conversation (role/content messages) to the prompt text the model was trained on.
 *
 * A chat model ships its format as a Jinja template: `chat_template` in tokenizer_config.json (a string,
 * or a list of named templates of which "default" is used), or a `chat_template.jinja` file beside it; a
 * GGUF file carries it as `tokenizer.chat_template`. It is rendered with `@huggingface/jinja` (whose
 * Template trims and lstrips blocks as transformers' environment does), given the messages, the special
 * tokens' strings and `add_generation_prompt: true`, so the text ends where the assistant's answer begins.
 *
 * `make(source, specialTokens)` takes a template string and the special tokens directly; `forCheckpoint`
 * uses what a loaded Checkpoint carries (Checkpoint.ts reads both from HF directories and GGUF files);
 * `fromDirectory(dir)` reads an HF directory without loading its weights.
 *
 * Models without a template (the bundled sirius-tiny-arith, base models) get the documented `fallback`,
 * the bundled model's own question/answer format:
 * - a user message becomes `Q: <content>\n`, an assistant message `A: <content, trimmed>\n`;
 * - a system message is kept as a line of its own, `<content>\n`, where it stands in the conversation
 *   (the bundled model was never trained on one: it is passed on, not silently dropped);
 * - the generation prompt is `A:`, so one user message gives exactly `Q: <content>\nA:` and a multi-turn
 *   conversation `Q: u1\nA: a1\nQ: u2\nA:`;
 * - any other role (tool results) is a ChatTemplateError: the format has no place for it.
 *
 * This module renders text only: `encode` turns it into ids with the model's tokenizer. It does not
 * validate roles beyond what a template itself checks (`raise_exception` becomes a ChatTemplateError).
 */
import { Template } from "@huggingface/jinja"
import { Effect, Schema } from "effect"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { errorText } from "./Config.ts"
import type { TextTokenizer } from "./Tokenizer.ts"

/** The template is unreadable, does not parse, or refused the conversation (its `raise_exception`). */
export class ChatTemplateError extends Schema.TaggedError<ChatTemplateError>()("ChatTemplateError", {
  source: Schema.String,
  message: Schema.String
}) {}

/** One turn of a conversation. Content is text: other parts are the caller's to refuse. */
export interface Message {
  readonly role: string
  readonly content: string
}

/** The special tokens' strings, as templates use them (`bos_token`, `eos_token`, `unk_token`). */
export interface SpecialTokens {
  readonly bos?: string | undefined
  readonly eos?: string | undefined
  readonly unk?: string | undefined
}

export interface ChatTemplate {
  /** Where the template came from ("tokenizer_config.json", "chat_template.jinja", a caller's name) or "fallback". */
  readonly source: string
  readonly specialTokens: SpecialTokens
  /** The prompt text for a conversation, ending with the generation prompt (the assistant's turn). */
  readonly render: (messages: ReadonlyArray<Message>) => Effect.Effect<string, ChatTemplateError>
}

/**
 * A template from its Jinja source and the special tokens' strings.
 *
 * **Details**: the source is parsed once, here (a syntax error is a ChatTemplateError naming `source`);
 * each render passes `messages`, `add_generation_prompt: true`, `bos_token`, `eos_token` and `unk_token`
 * (an empty string where unknown: some templates concatenate `bos_token` unconditionally).
 *
 * @example
 * const t = yield* ChatTemplate.make("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}<|assistant|>", { eos: "</s>" })
 * yield* t.render([{ role: "user", content: "Hi" }]) // => "<|user|>Hi<|assistant|>"
 */
export const make = (template: string, specialTokens: SpecialTokens = {}, source = "chat template"): Effect.Effect<ChatTemplate, ChatTemplateError> =>
  Effect.try({
    try: () => new Template(template),
    catch: (cause) => new ChatTemplateError({ source, message: `${source}: the chat template does not parse (${errorText(cause)})` })
  }).pipe(
    Effect.map((parsed): ChatTemplate => ({
      source,
      specialTokens,
      render: (messages) =>
        Effect.try({
          try: () =>
            parsed.render({
              messages: messages.map((m) => ({ role: m.role, content: m.content })),
              add_generation_prompt: true,
              bos_token: specialTokens.bos ?? "",
              eos_token: specialTokens.eos ?? "",
              unk_token: specialTokens.unk ?? ""
            }),
          catch: (cause) => new ChatTemplateError({ source, message: `${source}: ${errorText(cause)}` })
        })
    }))
  )

/** The bundled model's question/answer format, for models without a template (see the module comment). */
export const fallback: ChatTemplate = {
  source: "fallback",
  specialTokens: {},
  render: (messages) => {
    let text = ""
    for (const [i, m] of messages.entries()) {
      if (m.role === "system") text += `${m.content}\n`
      else if (m.role === "user") text += `Q: ${m.content}\n`
      else if (m.role === "assistant") text += `A: ${m.content.trim()}\n`
      else
        return Effect.fail(
          new ChatTemplateError({
            source: "fallback",
            message: `messages.${i}.role: "${m.role}" has no place in the model's question/answer format (it has no chat template): use system, user or assistant`
          })
        )
    }
    return Effect.succeed(`${text}A:`)
  }
}

/** tokenizer_config.json's special token entries: a string or an AddedToken object `{ content }`. */
const tokenText = (v: unknown): string | undefined =>
  typeof v === "string" ? v : typeof v === "object" && v !== null && typeof (v as { content?: unknown }).content === "string" ? (v as { content: string }).content : undefined

const readText = (file: string) =>
  Effect.try({ try: () => readFileSync(file, "utf8"), catch: (cause) => new ChatTemplateError({ source: file, message: `${file}: cannot read (${errorText(cause)})` }) })

/**
 * The template of an HF model directory: `chat_template.jinja` if present, else tokenizer_config.json's
 * `chat_template` (a string, or the named-list form: the one named "default", else the first), with that
 * file's special tokens;
 * `fallback` when the directory has neither.
 */
export const fromDirectory = (dir: string): Effect.Effect<ChatTemplate, ChatTemplateError> =>
  Effect.gen(function* () {
    const configFile = join(dir, "tokenizer_config.json")
    const jinjaFile = join(dir, "chat_template.jinja")
    let config: Record<string, unknown> = {}
    if (existsSync(configFile)) {
      const text = yield* readText(configFile)
      const json = yield* Effect.try({
        try: (): unknown => JSON.parse(text),
        catch: (cause) => new ChatTemplateError({ source: configFile, message: `${configFile}: cannot read JSON (${errorText(cause)})` })
      })
      if (typeof json === "object" && json !== null && !Array.isArray(json)) config = json as Record<string, unknown>
    }
    const specialTokens: SpecialTokens = { bos: tokenText(config["bos_token"]), eos: tokenText(config["eos_token"]), unk: tokenText(config["unk_token"]) }
    if (existsSync(jinjaFile)) return yield* make(yield* readText(jinjaFile), specialTokens, jinjaFile)
    const raw = config["chat_template"]
    if (raw === undefined || raw === null) return fallback
    if (typeof raw === "string") return yield* make(raw, specialTokens, configFile)
    const named = Array.isArray(raw) ? raw.filter((t): t is { name: string; template: string } => typeof t?.name === "string" && typeof t?.template === "string") : []
    const chosen = named.find((t) => t.name === "default") ?? named[0]
    if (chosen === undefined || named.length !== (raw as ReadonlyArray<unknown>).length)
      return yield* new ChatTemplateError({ source: configFile, message: `${configFile}: field "chat_template" must be a string or a list of { name, template }` })
    return yield* make(chosen.template, specialTokens, `${configFile} (${chosen.name})`)
  })

/**
 * The template of a loaded checkpoint: its `chatTemplate` with its `specialTokens`, or the fallback when
 * it has none. An object without `specialTokens` (not a Checkpoint) is read from its directory.
 */
export const forCheckpoint = (checkpoint: {
  readonly dir: string
  readonly chatTemplate?: string | undefined
  readonly specialTokens?: SpecialTokens | undefined
}): Effect.Effect<ChatTemplate, ChatTemplateError> =>
  checkpoint.specialTokens === undefined
    ? fromDirectory(checkpoint.dir)
    : checkpoint.chatTemplate === undefined
      ? Effect.succeed(fallback)
      : make(checkpoint.chatTemplate, checkpoint.specialTokens, "checkpoint")

/**
 * Token ids of a rendered conversation. The tokenizer adds its own special tokens (a BOS); a template that
 * also writes `bos_token` would give two, which the model never saw in training: the doubled one is
 * dropped (llama.cpp warns about the same thing).
 */
export const encode = (template: ChatTemplate, tokenizer: TextTokenizer, text: string): Array<number> => {
  const ids = tokenizer.encode(text)
  const bos = template.specialTokens.bos
  return bos !== undefined && bos !== "" && text.startsWith(bos) && ids.length >= 2 && ids[0] === ids[1] ? ids.slice(1) : ids
}
