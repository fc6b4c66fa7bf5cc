// Chat templates (src/ChatTemplate.ts): real models' templates render byte-identical to the prompts
// transformers gives (fixtures under properties/fixtures/chat-templates, sources noted there), from a
// template string + special tokens and from a model directory's tokenizer_config.json (string and named-list
// forms) or chat_template.jinja; the bundled model's fallback; errors as ChatTemplateError; a doubled BOS
// dropped when encoding.
import { Effect } from "effect"
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import * as Bundled from "../src/Bundled.ts"
import * as ChatTemplate from "../src/ChatTemplate.ts"
import { loadTokenizer } from "../src/Tokenizer.ts"

interface Fixture {
  readonly model: string
  readonly chat_template: string
  readonly bos_token: string | null
  readonly eos_token: string | null
  readonly cases: ReadonlyArray<{ readonly messages: ReadonlyArray<ChatTemplate.Message>; readonly expected: string }>
}

const fixturesDir = join(import.meta.dirname, "fixtures", "chat-templates")
const fixtures = readdirSync(fixturesDir)
  .filter((f) => f.endsWith(".json"))
  .map((f) => [f.replace(/\.json$/, ""), JSON.parse(readFileSync(join(fixturesDir, f), "utf8")) as Fixture] as const)

const run = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(e)
const failure = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(Effect.flip(e))

describe("real templates", () => {
  it("the four fixture families are present", () => {
    expect(fixtures.map(([name]) => name).sort()).toEqual(["llama-3-8b-instruct", "qwen2.5-0.5b-instruct", "smollm2-135m-instruct", "tinyllama-1.1b-chat-v1.0"])
  })

  for (const [name, f] of fixtures) {
    it(`${name}: a template string + special tokens renders every case byte for byte`, async () => {
      const template = await run(ChatTemplate.make(f.chat_template, { bos: f.bos_token ?? undefined, eos: f.eos_token ?? undefined }, name))
      for (const c of f.cases) expect(await run(template.render(c.messages))).toBe(c.expected)
    })

    it(`${name}: read from a model directory's tokenizer_config.json, the same`, async () => {
      const dir = mkdtempSync(join(tmpdir(), "sirius-chat-"))
      writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ bos_token: f.bos_token, eos_token: { content: f.eos_token }, chat_template: f.chat_template }))
      const template = await run(ChatTemplate.fromDirectory(dir))
      expect(template.source).toBe(join(dir, "tokenizer_config.json"))
      for (const c of f.cases) expect(await run(template.render(c.messages))).toBe(c.expected)
    })
  }

  it("the named-list form uses the template named default; chat_template.jinja wins over tokenizer_config.json", async () => {
    const [, llama] = fixtures.find(([n]) => n === "llama-3-8b-instruct")!
    const [, smol] = fixtures.find(([n]) => n === "smollm2-135m-instruct")!
    const dir = mkdtempSync(join(tmpdir(), "sirius-chat-"))
    writeFileSync(
      join(dir, "tokenizer_config.json"),
      JSON.stringify({ bos_token: llama.bos_token, chat_template: [{ name: "tool_use", template: "TOOLS" }, { name: "default", template: llama.chat_template }] })
    )
    const named = await run(ChatTemplate.fromDirectory(dir))
    expect(await run(named.render(llama.cases[0]!.messages))).toBe(llama.cases[0]!.expected)
    writeFileSync(join(dir, "chat_template.jinja"), smol.chat_template)
    const jinja = await run(ChatTemplate.fromDirectory(dir))
    expect(jinja.source).toBe(join(dir, "chat_template.jinja"))
    expect(await run(jinja.render(smol.cases[0]!.messages))).toBe(smol.cases[0]!.expected)
  })

  it("a checkpoint carrying its template (GGUF) is used as it is; one carrying none gets the fallback", async () => {
    const [, zephyr] = fixtures.find(([n]) => n === "tinyllama-1.1b-chat-v1.0")!
    const t = await run(ChatTemplate.forCheckpoint({ dir: "/nonexistent", chatTemplate: zephyr.chat_template, specialTokens: { eos: "</s>" } }))
    expect(await run(t.render(zephyr.cases[1]!.messages))).toBe(zephyr.cases[1]!.expected)
    expect(await run(ChatTemplate.forCheckpoint({ dir: "/nonexistent", specialTokens: {} }))).toBe(ChatTemplate.fallback)
  })
})

describe("the fallback (the bundled model's Q/A format)", () => {
  it("the bundled model directory has no template: one user message is exactly `Q: …\\nA:`", async () => {
    const template = await run(ChatTemplate.fromDirectory(Bundled.modelDir))
    expect(template).toBe(ChatTemplate.fallback)
    expect(await run(template.render([{ role: "user", content: "Tom has 2 pens. He buys 3 more. How many pens now?" }]))).toBe(
      "Q: Tom has 2 pens. He buys 3 more. How many pens now?\nA:"
    )
  })

  it("multi-turn: Q/A lines in order, assistant answers trimmed; system messages kept as their own line", async () => {
    const text = await run(
      ChatTemplate.fallback.render([
        { role: "system", content: "Answer with the number." },
        { role: "user", content: "Ann has 2 pens. How many pens now?" },
        { role: "assistant", content: " The answer is 2.\n" },
        { role: "user", content: "She buys 3 more. How many pens now?" }
      ])
    )
    expect(text).toBe("Answer with the number.\nQ: Ann has 2 pens. How many pens now?\nA: The answer is 2.\nQ: She buys 3 more. How many pens now?\nA:")
  })

  it("a role the format has no place for is a ChatTemplateError naming the message", async () => {
    const e = await failure(ChatTemplate.fallback.render([{ role: "user", content: "x" }, { role: "tool", content: "42" }]))
    expect(e._tag).toBe("ChatTemplateError")
    expect(e.message).toBe(`messages.1.role: "tool" has no place in the model's question/answer format (it has no chat template): use system, user or assistant`)
  })
})

describe("errors and encoding", () => {
  it("a template that does not parse, or that raises, is a ChatTemplateError", async () => {
    const bad = await failure(ChatTemplate.make("{% for m in messages %}", {}, "broken"))
    expect(bad._tag).toBe("ChatTemplateError")
    expect(bad.message).toMatch(/^broken: the chat template does not parse/)
    const strict = await run(ChatTemplate.make("{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation must start with a user message') }}{% endif %}ok", {}, "strict"))
    const raised = await failure(strict.render([{ role: "assistant", content: "x" }]))
    expect(raised.message).toBe("strict: Conversation must start with a user message")
  })

  it("encode drops the BOS a template writes when the tokenizer adds one too", async () => {
    const tokenizer = await run(loadTokenizer(Bundled.modelDir))
    const withBos = await run(ChatTemplate.make("{{ bos_token }}{% for m in messages %}Q: {{ m.content }}\n{% endfor %}A:", { bos: "<s>" }))
    const text = await run(withBos.render([{ role: "user", content: "Ann has 2 pens. How many pens now?" }]))
    expect(text.startsWith("<s>Q:")).toBe(true)
    const ids = ChatTemplate.encode(withBos, tokenizer, text)
    expect(ids).toEqual(tokenizer.encode("Q: Ann has 2 pens. How many pens now?\nA:"))
    expect(ids[0]).toBe(1)
    expect(ids[1]).not.toBe(1)
  })
})
