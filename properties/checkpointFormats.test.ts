/**
 * What issue #14 added to HF directories: Qwen2 configs (biases, refused sliding windows and scalings),
 * the chat template (tokenizer_config.json's string or named-list form, `chat_template.jinja` first)
 * and the special tokens' strings; `loadCheckpoint` on a Qwen2 directory gives the bias vectors.
 */
import { Effect } from "effect"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, assert, describe, it } from "vitest"
import { loadCheckpoint } from "../src/Checkpoint.ts"
import { ConfigError, decodeConfig } from "../src/Config.ts"
import type { LlamaConfig } from "../src/Config.ts"
import { randomWeights, shapes, writeHfCheckpoint } from "../testing/RandomModel.ts"

const root = mkdtempSync(join(tmpdir(), "sirius-formats-"))
afterAll(() => rmSync(root, { recursive: true, force: true }))
let n = 0

const qwen = {
  model_type: "qwen2",
  vocab_size: 64,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 1,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rope_theta: 1000000,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: true,
  use_sliding_window: false,
  sliding_window: 4096,
  max_window_layers: 21
}
const decode = (json: unknown) => Effect.runSync(decodeConfig(json, "config.json"))
const fails = (json: unknown, field: string, text: string) => {
  const e = Effect.runSync(Effect.flip(decodeConfig(json, "config.json")))
  assert.instanceOf(e, ConfigError)
  assert.strictEqual(e.field, field)
  assert.include(e.message, text)
}

describe("Qwen2 configs", () => {
  it("model_type qwen2: q/k/v biases, HF's fields, sliding-window fields ignored when unused", () => {
    const c = decode(qwen)
    assert.strictEqual(c.architecture, "qwen2")
    assert.isTrue(c.attentionBias)
    assert.isTrue(c.tieWordEmbeddings)
    assert.strictEqual(c.ropeTheta, 1000000)
    assert.strictEqual(c.headDim, 8)
    assert.isFalse(decode({ ...qwen, model_type: "llama" }).attentionBias)
  })
  it("refuses sliding windows, non-full layer types, rope scaling for qwen2, and other model types", () => {
    fails({ ...qwen, use_sliding_window: true }, "use_sliding_window", "sliding-window attention is not supported")
    fails({ ...qwen, layer_types: ["full_attention", "sliding_attention"] }, "layer_types.1", '"full_attention"')
    fails({ ...qwen, rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 } }, "rope_scaling.rope_type", "qwen2")
    fails({ ...qwen, model_type: "mistral" }, "model_type", 'must be one of "llama", "qwen2"')
    fails({ ...qwen, model_type: "llama", attention_bias: true }, "attention_bias", "Llama attention biases")
  })
  it("a Qwen2 directory loads with its bias vectors", () => {
    const config: LlamaConfig = { ...shapes.tiny, architecture: "qwen2", attentionBias: true }
    const dir = join(root, `qwen${n++}`)
    Effect.runSync(writeHfCheckpoint(dir, config, randomWeights(config, { seed: 1 })))
    const ckpt = Effect.runSync(loadCheckpoint(dir))
    assert.deepStrictEqual(ckpt.config, config)
    assert.deepStrictEqual(ckpt.weights.layers[1]!.kProjBias!.shape, [config.numKeyValueHeads * config.headDim])
    assert.strictEqual(ckpt.weights.layers[1]!.kProjBias!.name, "model.layers.1.self_attn.k_proj.bias")
  })
})

describe("HF chat template and special tokens", () => {
  const dirWith = (files: Record<string, string>) => {
    const dir = join(root, `chat${n++}`)
    mkdirSync(dir)
    Effect.runSync(writeHfCheckpoint(dir, shapes.tiny, randomWeights(shapes.tiny, { seed: 2 })))
    for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content)
    return dir
  }
  const load = (dir: string) => Effect.runSync(loadCheckpoint(dir))

  it("tokenizer_config.json's chat_template string, and bos/eos in string and AddedToken form", () => {
    const ckpt = load(dirWith({ "tokenizer_config.json": JSON.stringify({ chat_template: "{{ x }}", bos_token: "<s>", eos_token: { content: "</s>", special: true } }) }))
    assert.strictEqual(ckpt.chatTemplate, "{{ x }}")
    assert.deepStrictEqual(ckpt.specialTokens, { bos: "<s>", eos: "</s>" })
    assert.strictEqual(ckpt.path, ckpt.dir)
  })
  it("the named-list form picks the template named default", () => {
    const list = [
      { name: "tool_use", template: "tools" },
      { name: "default", template: "plain" }
    ]
    assert.strictEqual(load(dirWith({ "tokenizer_config.json": JSON.stringify({ chat_template: list }) })).chatTemplate, "plain")
  })
  it("chat_template.jinja wins over tokenizer_config.json", () => {
    const ckpt = load(dirWith({ "tokenizer_config.json": JSON.stringify({ chat_template: "old" }), "chat_template.jinja": "new {{ messages }}" }))
    assert.strictEqual(ckpt.chatTemplate, "new {{ messages }}")
  })
  it("no template: undefined; a malformed one: a ConfigError naming the field", () => {
    const none = load(dirWith({}))
    assert.isUndefined(none.chatTemplate)
    assert.deepStrictEqual(none.specialTokens, {})
    const dir = dirWith({ "tokenizer_config.json": JSON.stringify({ chat_template: 42 }) })
    const e = Effect.runSync(Effect.flip(loadCheckpoint(dir)))
    assert.strictEqual(e._tag, "ConfigError")
    assert.strictEqual((e as ConfigError).field, "chat_template")
  })
})
