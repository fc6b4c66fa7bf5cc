/**
 * Config decoding: both RoPE layouts, defaults, and every rejection names its field.
 */
import { Effect } from "effect"
import fc from "fast-check"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, assert, describe, it } from "vitest"
import { ConfigError, decodeConfig, readConfigFile } from "../src/Config.ts"
import type { LlamaConfig } from "../src/Config.ts"

const base = {
  vocab_size: 64,
  hidden_size: 16,
  intermediate_size: 24,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 128,
  rms_norm_eps: 1e-5
}

const decode = (json: unknown): LlamaConfig => Effect.runSync(decodeConfig(json, "config.json"))
const fails = (json: unknown): ConfigError => {
  const error = Effect.runSync(Effect.flip(decodeConfig(json, "config.json")))
  assert.instanceOf(error, ConfigError)
  assert.strictEqual(error._tag, "ConfigError")
  assert.strictEqual(error.file, "config.json")
  return error
}

const llama3 = { factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 }

describe("decodeConfig", () => {
  it("applies HF defaults", () => {
    const c = decode({ vocab_size: 32, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2 })
    assert.deepStrictEqual(c, {
      architecture: "llama",
      vocabSize: 32,
      hiddenSize: 8,
      intermediateSize: 16,
      numHiddenLayers: 1,
      numAttentionHeads: 2,
      numKeyValueHeads: 2,
      headDim: 4,
      maxPositionEmbeddings: 2048,
      rmsNormEps: 1e-6,
      ropeTheta: 10000,
      ropeScaling: undefined,
      tieWordEmbeddings: false,
      attentionBias: false,
      bosTokenId: undefined,
      eosTokenIds: []
    })
  })

  it("decodes a Llama 3 config with top-level rope_theta + rope_scaling", () => {
    const c = decode({ ...base, model_type: "llama", hidden_act: "silu", rope_theta: 500000, rope_scaling: { rope_type: "llama3", ...llama3 } })
    assert.strictEqual(c.ropeTheta, 500000)
    assert.deepStrictEqual(c.ropeScaling, {
      ropeType: "llama3",
      factor: 8,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192
    })
    // the older `type` spelling
    assert.deepStrictEqual(decode({ ...base, rope_theta: 500000, rope_scaling: { type: "llama3", ...llama3 } }), c)
  })

  it("both rope layouts give the same LlamaConfig; rope_parameters wins when both exist", () => {
    const old = decode({ ...base, rope_theta: 500000, rope_scaling: { rope_type: "llama3", ...llama3 } })
    const v5 = decode({ ...base, rope_parameters: { rope_type: "llama3", rope_theta: 500000, ...llama3 } })
    assert.deepStrictEqual(v5, old)
    const both = decode({
      ...base,
      rope_theta: 10000,
      rope_scaling: { rope_type: "yarn", factor: 2 },
      rope_parameters: { rope_type: "llama3", rope_theta: 500000, ...llama3 }
    })
    assert.deepStrictEqual(both, old)
    const plainOld = decode({ ...base, rope_theta: 1e6, rope_scaling: null })
    const plainV5 = decode({ ...base, rope_parameters: { rope_type: "default", rope_theta: 1e6 } })
    assert.deepStrictEqual(plainV5, plainOld)
    assert.strictEqual(plainOld.ropeScaling, undefined)
    assert.strictEqual(plainOld.ropeTheta, 1e6)
  })

  it("explicit head_dim may differ from hidden/heads", () => {
    const c = decode({ ...base, head_dim: 6 })
    assert.strictEqual(c.headDim, 6)
    assert.notStrictEqual(c.headDim, c.hiddenSize / c.numAttentionHeads)
  })

  it("eos_token_id as int or list; bos optional; tie_word_embeddings", () => {
    assert.deepStrictEqual(decode({ ...base, eos_token_id: 2 }).eosTokenIds, [2])
    assert.deepStrictEqual(decode({ ...base, eos_token_id: [2, 5, 2] }).eosTokenIds, [2, 5])
    assert.deepStrictEqual(decode({ ...base, eos_token_id: null }).eosTokenIds, [])
    assert.strictEqual(decode({ ...base, bos_token_id: 1 }).bosTokenId, 1)
    assert.strictEqual(decode({ ...base, tie_word_embeddings: true }).tieWordEmbeddings, true)
    assert.strictEqual(decode(base).tieWordEmbeddings, false)
    assert.strictEqual(decode(base).numKeyValueHeads, 2)
  })

  it("ignores unknown fields", () => {
    assert.deepStrictEqual(decode({ ...base, architectures: ["LlamaForCausalLM"], torch_dtype: "bfloat16", pretraining_tp: 1 }), decode(base))
  })

  const rejections: ReadonlyArray<readonly [string, Record<string, unknown>, string]> = [
    ["hidden_size not a number", { hidden_size: "abc" }, "hidden_size"],
    ["negative vocab", { vocab_size: -5 }, "vocab_size"],
    ["zero layers", { num_hidden_layers: 0 }, "num_hidden_layers"],
    ["fractional intermediate", { intermediate_size: 2.5 }, "intermediate_size"],
    ["absurd hidden size", { hidden_size: 2 ** 21 }, "hidden_size"],
    ["absurd vocab", { vocab_size: 2 ** 23 }, "vocab_size"],
    ["kv heads not dividing heads", { num_key_value_heads: 3 }, "num_key_value_heads"],
    ["hidden_act gelu", { hidden_act: "gelu" }, "hidden_act"],
    ["rope_type yarn", { rope_scaling: { rope_type: "yarn", factor: 4 } }, "rope_scaling.rope_type"],
    ["rope type linear (old spelling)", { rope_scaling: { type: "linear", factor: 2 } }, "rope_scaling.type"],
    ["rope_parameters dynamic", { rope_parameters: { rope_type: "dynamic", rope_theta: 1e4, factor: 2 } }, "rope_parameters.rope_type"],
    ["llama3 without factor", { rope_scaling: { rope_type: "llama3", low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 } }, "rope_scaling.factor"],
    ["rope factor a string", { rope_scaling: { rope_type: "llama3", ...llama3, factor: "8" } }, "rope_scaling.factor"],
    ["odd head_dim", { head_dim: 5 }, "head_dim"],
    ["non-integer default head_dim", { hidden_size: 18 }, "head_dim"],
    ["attention_bias", { attention_bias: true }, "attention_bias"],
    ["mlp_bias", { mlp_bias: true }, "mlp_bias"],
    ["model_type mistral", { model_type: "mistral" }, "model_type"],
    ["eos beyond vocab", { eos_token_id: [2, 64] }, "eos_token_id"],
    ["eos not int", { eos_token_id: "2" }, "eos_token_id"],
    ["bos beyond vocab", { bos_token_id: 100 }, "bos_token_id"],
    ["non-positive rms_norm_eps", { rms_norm_eps: 0 }, "rms_norm_eps"],
    ["tie_word_embeddings a string", { tie_word_embeddings: "yes" }, "tie_word_embeddings"],
    ["missing hidden_size", { hidden_size: undefined }, "hidden_size"]
  ]
  for (const [what, patch, field] of rejections)
    it(`rejects ${what} naming field "${field}"`, () => {
      const json: Record<string, unknown> = { ...base, ...patch }
      for (const [k, v] of Object.entries(patch)) if (v === undefined) delete json[k]
      const error = fails(json)
      assert.strictEqual(error.field, field)
      assert.include(error.message, `"${field}"`)
    })

  it("names both counts when KV heads do not divide heads", () => {
    const error = fails({ ...base, num_attention_heads: 8, num_key_value_heads: 3 })
    assert.strictEqual(error.message, 'config.json: field "num_key_value_heads" must divide num_attention_heads (got 3 for 8)')
  })

  it("rejects a non-object", () => {
    for (const json of [null, 3, "x", [base]]) assert.strictEqual(fails(json).field, "")
  })

  it("property: KV heads divide heads and head_dim is even in every decoded config", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 16 }),
        fc.integer({ min: 1, max: 16 }),
        fc.integer({ min: 1, max: 64 }),
        fc.option(fc.integer({ min: 1, max: 64 }), { nil: undefined }),
        (heads, kv, hiddenPerHead, headDim) => {
          const json = { ...base, hidden_size: heads * hiddenPerHead, num_attention_heads: heads, num_key_value_heads: kv, ...(headDim === undefined ? {} : { head_dim: headDim }) }
          const result = Effect.runSync(Effect.result(decodeConfig(json, "config.json")))
          const hd = headDim ?? hiddenPerHead
          const valid = heads % kv === 0 && hd % 2 === 0
          assert.strictEqual(result._tag === "Success", valid)
          if (result._tag === "Success") {
            assert.strictEqual(result.success.headDim, hd)
            assert.strictEqual(result.success.numKeyValueHeads, kv)
          }
        }
      ),
      { numRuns: 200 }
    )
  })
})

describe("readConfigFile", () => {
  const dir = mkdtempSync(join(tmpdir(), "sirius-config-"))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it("reads a config.json", () => {
    const file = join(dir, "ok.json")
    writeFileSync(file, JSON.stringify(base))
    assert.deepStrictEqual(Effect.runSync(readConfigFile(file)), decode(base))
  })

  it("missing file → ConfigError with field \"\" naming the file", () => {
    const file = join(dir, "absent.json")
    const error = Effect.runSync(Effect.flip(readConfigFile(file)))
    assert.strictEqual(error._tag, "ConfigError")
    assert.strictEqual(error.file, file)
    assert.strictEqual(error.field, "")
    assert.include(error.message, "cannot read")
  })

  it("invalid JSON → ConfigError with field \"\"", () => {
    const file = join(dir, "bad.json")
    writeFileSync(file, "{ \"vocab_size\": 32, ")
    const error = Effect.runSync(Effect.flip(readConfigFile(file)))
    assert.strictEqual(error._tag, "ConfigError")
    assert.strictEqual(error.file, file)
    assert.strictEqual(error.field, "")
    assert.include(error.message, "invalid JSON")
  })
})
