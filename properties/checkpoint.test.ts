/**
 * Safetensors, Weights, Tokenizer and Checkpoint loading: round trips on small random checkpoints written
 * into a temp dir, and one test per kind of damage asserting the typed error and what it names.
 */
import { Effect } from "effect"
import fc from "fast-check"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, assert, describe, it } from "vitest"
import { loadCheckpoint } from "../src/Checkpoint.ts"
import type { Checkpoint } from "../src/Checkpoint.ts"
import { decodeConfig } from "../src/Config.ts"
import type { LlamaConfig } from "../src/Config.ts"
import { CheckpointError, encodeSafetensorsHeader, maxHeaderBytes, readSafetensors, readSafetensorsHeader, writeSafetensors } from "../src/Safetensors.ts"
import { fromFloat32, numel, toFloat32 } from "../src/Tensor.ts"
import type { DType, RawTensor } from "../src/Tensor.ts"
import { loadTokenizer } from "../src/Tokenizer.ts"
import { assembleWeights, expectedTensors, weightEntries } from "../src/Weights.ts"
import type { ModelWeights } from "../src/Weights.ts"

const root = mkdtempSync(join(tmpdir(), "sirius-checkpoint-"))
afterAll(() => rmSync(root, { recursive: true, force: true }))
let counter = 0
const freshDir = (): string => {
  const dir = join(root, `d${counter++}`)
  mkdirSync(dir)
  return dir
}

const run = <A, E>(effect: Effect.Effect<A, E>): A => Effect.runSync(effect)
const flip = <A, E>(effect: Effect.Effect<A, E>): E => Effect.runSync(Effect.flip(effect))

/** mulberry32: seeded weights, so failures reproduce. */
const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

/** A tiny config.json: hidden 8, 2 heads of head_dim 6 (so q_proj [12, 8] is not square), 1 KV head. */
const configJson = (patch: Record<string, unknown> = {}) => ({
  model_type: "llama",
  vocab_size: 11,
  hidden_size: 8,
  intermediate_size: 10,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  head_dim: 6,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  bos_token_id: 1,
  eos_token_id: 2,
  tie_word_embeddings: false,
  ...patch
})
const toConfig = (json: unknown): LlamaConfig => run(decodeConfig(json, "config.json"))

/** Random tensors for every weight of `config`, in HF order, plus an ignored extra tensor. */
const randomTensors = (config: LlamaConfig, seed: number, dtype: DType = "F32"): Array<RawTensor> => {
  const rand = prng(seed)
  const out = expectedTensors(config).map(({ name, shape }) =>
    fromFloat32(name, dtype, shape, Float32Array.from({ length: numel(shape) }, () => rand() * 2 - 1))
  )
  out.push(fromFloat32("model.layers.0.self_attn.rotary_emb.inv_freq", "F32", [3], new Float32Array([1, 0.1, 0.01])))
  return out
}

/** A complete single-file checkpoint directory. */
const writeCheckpoint = (opts: { patch?: Record<string, unknown>; dtype?: DType; tensors?: (ts: Array<RawTensor>) => Array<RawTensor> } = {}) => {
  const dir = freshDir()
  const json = configJson(opts.patch)
  writeFileSync(join(dir, "config.json"), JSON.stringify(json))
  const config = toConfig(json)
  let tensors = randomTensors(config, 42, opts.dtype)
  if (opts.tensors) tensors = opts.tensors(tensors)
  run(writeSafetensors(join(dir, "model.safetensors"), tensors, { format: "pt" }))
  return { dir, config, tensors }
}

/** A raw safetensors file from a hand-written header object and data bytes. */
const writeRaw = (file: string, header: unknown, data: Uint8Array = new Uint8Array(0), headerLength?: bigint) => {
  const json = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header))
  const out = new Uint8Array(8 + json.byteLength + data.byteLength)
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(json.byteLength), true)
  out.set(json, 8)
  out.set(data, 8 + json.byteLength)
  writeFileSync(file, out)
  return file
}

const expectCheckpointError = (error: unknown, file: string, tensor: string, text: string): CheckpointError => {
  assert.instanceOf(error, CheckpointError)
  const e = error as CheckpointError
  assert.strictEqual(e._tag, "CheckpointError")
  assert.strictEqual(e.file, file)
  assert.strictEqual(e.tensor, tensor)
  assert.include(e.message, text)
  return e
}

const sameBytes = (a: RawTensor, b: RawTensor) => {
  assert.strictEqual(a.dtype, b.dtype)
  assert.deepStrictEqual([...a.shape], [...b.shape])
  assert.deepStrictEqual(a.data, b.data)
}
const sameWeights = (a: ModelWeights, b: ModelWeights) => {
  sameBytes(a.embedTokens, b.embedTokens)
  sameBytes(a.norm, b.norm)
  sameBytes(a.lmHead, b.lmHead)
  assert.strictEqual(a.layers.length, b.layers.length)
  a.layers.forEach((layer, i) => {
    for (const key of Object.keys(layer) as Array<keyof typeof layer>) sameBytes(layer[key]!, b.layers[i]![key]!)
  })
}

// ---------------------------------------------------------------------------------------------------

describe("Safetensors round trip", () => {
  it("F32, F16 and BF16 tensors read back with the same bytes and values", () => {
    const values = new Float32Array([1, -2, 0.5, 0.25, 3, -0.125])
    const tensors = (["F32", "F16", "BF16"] as const).map((dtype) => fromFloat32(`t.${dtype}`, dtype, [2, 3], values))
    const empty: RawTensor = { name: "empty", dtype: "F32", shape: [0, 4], data: new Uint8Array(0) }
    const scalar = fromFloat32("scalar", "BF16", [], new Float32Array([7]))
    const file = join(freshDir(), "rt.safetensors")
    run(writeSafetensors(file, [...tensors, empty, scalar], { format: "pt" }))
    const header = run(readSafetensorsHeader(file))
    assert.deepStrictEqual(header.metadata, { format: "pt" })
    assert.strictEqual((header.dataStart - 8) % 8, 0, "header padded to a multiple of 8")
    const read = run(readSafetensors(file))
    assert.strictEqual(read.size, 5)
    for (const t of tensors) {
      const back = read.get(t.name)!
      sameBytes(back, t)
      assert.deepStrictEqual(toFloat32(back), values) // all values exactly representable in f16/bf16
    }
    sameBytes(read.get("empty")!, empty)
    assert.deepStrictEqual([...toFloat32(read.get("scalar")!)], [7])
  })

  it("F16/BF16 widen from known bit patterns", () => {
    const u16 = (name: string, dtype: DType, bits: ReadonlyArray<number>): RawTensor => {
      const data = new Uint8Array(bits.length * 2)
      bits.forEach((b, i) => new DataView(data.buffer).setUint16(2 * i, b, true))
      return { name, dtype, shape: [bits.length], data }
    }
    const file = join(freshDir(), "bits.safetensors")
    run(writeSafetensors(file, [u16("h", "F16", [0x3c00, 0x0001, 0x7c00, 0xfc00, 0xc000, 0x3555]), u16("b", "BF16", [0x3f80, 0xc000, 0x7f80, 0x0001])]))
    const read = run(readSafetensors(file))
    const h = toFloat32(read.get("h")!)
    assert.strictEqual(h[0], 1)
    assert.strictEqual(h[1], 2 ** -24) // subnormal
    assert.strictEqual(h[2], Infinity)
    assert.strictEqual(h[3], -Infinity)
    assert.strictEqual(h[4], -2)
    assert.strictEqual(h[5], Math.fround(0.333251953125))
    const b = toFloat32(read.get("b")!)
    assert.strictEqual(b[0], 1)
    assert.strictEqual(b[1], -2)
    assert.strictEqual(b[2], Infinity)
    assert.strictEqual(b[3], Math.fround(2 ** -133)) // 0x00010000 as f32 bits: a subnormal f32
  })

  it("reads only the requested tensors", () => {
    const file = join(freshDir(), "some.safetensors")
    run(writeSafetensors(file, [fromFloat32("a", "F32", [2], new Float32Array([1, 2])), fromFloat32("b", "F32", [1], new Float32Array([3]))]))
    assert.deepStrictEqual([...run(readSafetensors(file, new Set(["b", "zzz"]))).keys()], ["b"])
    assert.deepStrictEqual([...run(readSafetensors(file, (n) => n === "a")).keys()], ["a"])
  })

  it("property: any tensors round-trip byte for byte", () => {
    const dir = freshDir()
    const arbTensor = fc.record({
      dtype: fc.constantFrom<DType>("F32", "F16", "BF16"),
      shape: fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 3 }),
      seed: fc.integer()
    })
    let n = 0
    fc.assert(
      fc.property(fc.uniqueArray(arbTensor, { maxLength: 5 }), (specs) => {
        const tensors = specs.map(({ dtype, shape, seed }, i) => {
          const rand = prng(seed)
          return fromFloat32(`t${i}`, dtype, shape, Float32Array.from({ length: numel(shape) }, () => (rand() - 0.5) * 100))
        })
        const file = join(dir, `p${n++}.safetensors`)
        run(writeSafetensors(file, tensors))
        const read = run(readSafetensors(file))
        assert.strictEqual(read.size, tensors.length)
        for (const t of tensors) sameBytes(read.get(t.name)!, t)
      }),
      { numRuns: 40 }
    )
  })

  it("the writer rejects a tensor whose bytes disagree with its shape", () => {
    const file = join(freshDir(), "w.safetensors")
    const bad: RawTensor = { name: "bad", dtype: "F16", shape: [3], data: new Uint8Array(4) }
    expectCheckpointError(flip(writeSafetensors(file, [bad])), file, "bad", "expected 6")
  })
})

describe("Safetensors damage", () => {
  const dir = freshDir()
  const valid = () => {
    const file = join(dir, `valid${counter++}.safetensors`)
    run(writeSafetensors(file, [fromFloat32("a", "F32", [2, 2], new Float32Array(4)), fromFloat32("b", "BF16", [3], new Float32Array(3))]))
    return file
  }
  const data = new Uint8Array(64)
  const entry = (dtype: string, shape: ReadonlyArray<number>, begin: number, end: number) => ({ dtype, shape, data_offsets: [begin, end] })

  it("file shorter than 8 bytes", () => {
    const file = join(dir, "tiny.safetensors")
    writeFileSync(file, new Uint8Array([1, 2, 3]))
    expectCheckpointError(flip(readSafetensors(file)), file, "", "shorter than the 8-byte")
  })

  it("truncated in the data region: the last tensor is named", () => {
    const file = valid()
    truncateSync(file, readFileSync(file).byteLength - 1)
    expectCheckpointError(flip(readSafetensors(file)), file, "b", "beyond")
  })

  it("truncated in the header", () => {
    const file = valid()
    truncateSync(file, 20)
    expectCheckpointError(flip(readSafetensors(file)), file, "", "header length")
  })

  it("header length larger than the file", () => {
    const file = writeRaw(join(dir, "long.safetensors"), { a: entry("F32", [1], 0, 4) }, new Uint8Array(4), 1000n)
    expectCheckpointError(flip(readSafetensorsHeader(file)), file, "", "exceeds")
  })

  it("header length beyond 100 MB is rejected before anything is allocated", () => {
    const file = writeRaw(join(dir, "huge.safetensors"), "{}", new Uint8Array(0), BigInt(maxHeaderBytes) + 1n)
    const before = process.memoryUsage().arrayBuffers
    expectCheckpointError(flip(readSafetensors(file)), file, "", `${maxHeaderBytes}-byte limit`)
    assert.isBelow(process.memoryUsage().arrayBuffers - before, 50_000_000)
    const max = writeRaw(join(dir, "max.safetensors"), "{}", new Uint8Array(0), 0xffffffffffffffffn)
    expectCheckpointError(flip(readSafetensors(max)), max, "", "limit")
  })

  it("invalid JSON header", () => {
    const file = writeRaw(join(dir, "json.safetensors"), '{"a": {"dtype": ', data)
    expectCheckpointError(flip(readSafetensors(file)), file, "", "not valid UTF-8 JSON")
  })

  it("header that is not UTF-8", () => {
    const file = join(dir, "utf8.safetensors")
    const bytes = new Uint8Array([4, 0, 0, 0, 0, 0, 0, 0, 0x22, 0xff, 0xfe, 0x22])
    writeFileSync(file, bytes)
    expectCheckpointError(flip(readSafetensors(file)), file, "", "not valid UTF-8 JSON")
  })

  it("header that is not an object", () => {
    const file = writeRaw(join(dir, "array.safetensors"), [1, 2], data)
    expectCheckpointError(flip(readSafetensors(file)), file, "", "must be a JSON object")
  })

  it("out-of-range data_offsets", () => {
    const file = writeRaw(join(dir, "range.safetensors"), { a: entry("F32", [4], 0, 16), b: entry("F32", [4], 56, 72) }, data)
    expectCheckpointError(flip(readSafetensors(file)), file, "b", "beyond the 64-byte data region")
  })

  it("begin > end", () => {
    const file = writeRaw(join(dir, "order.safetensors"), { a: entry("F32", [0], 8, 4) }, data)
    expectCheckpointError(flip(readSafetensors(file)), file, "a", "begin > end")
  })

  it("offsets and shape disagree on the byte count", () => {
    const file = writeRaw(join(dir, "count.safetensors"), { a: entry("F16", [3, 2], 0, 16) }, data)
    expectCheckpointError(flip(readSafetensors(file)), file, "a", "needs 12 bytes")
  })

  it("a shape whose element count overflows is a mismatch, not a crash", () => {
    const file = writeRaw(join(dir, "overflow.safetensors"), { a: entry("F32", [2 ** 40, 2 ** 40], 0, 16) }, data)
    expectCheckpointError(flip(readSafetensors(file)), file, "a", "span 16")
  })

  it("overlapping tensors", () => {
    const file = writeRaw(join(dir, "overlap.safetensors"), { a: entry("F32", [4], 0, 16), b: entry("F32", [4], 12, 28) }, data)
    expectCheckpointError(flip(readSafetensors(file)), file, "b", "overlaps tensor \"a\"")
  })

  it("unsupported dtype names the tensor", () => {
    const file = writeRaw(join(dir, "i64.safetensors"), { ok: entry("F32", [1], 0, 4), ids: entry("I64", [2], 8, 24) }, data)
    expectCheckpointError(flip(readSafetensors(file)), file, "ids", 'unsupported dtype "I64"')
    const unknown = writeRaw(join(dir, "q8.safetensors"), { x: entry("Q8", [2], 0, 2) }, data)
    expectCheckpointError(flip(readSafetensors(unknown)), unknown, "x", "unknown dtype")
  })

  it("malformed entries name the tensor and field", () => {
    const neg = writeRaw(join(dir, "neg.safetensors"), { a: entry("F32", [-1], 0, 4) }, data)
    expectCheckpointError(flip(readSafetensors(neg)), neg, "a", 'field "shape.0"')
    const noOffsets = writeRaw(join(dir, "nooff.safetensors"), { a: { dtype: "F32", shape: [1] } }, data)
    expectCheckpointError(flip(readSafetensors(noOffsets)), noOffsets, "a", 'field "data_offsets"')
    const badMeta = writeRaw(join(dir, "meta.safetensors"), { __metadata__: { n: 1 } }, data)
    expectCheckpointError(flip(readSafetensors(badMeta)), badMeta, "", "__metadata__")
  })

  it("a missing file", () => {
    const file = join(dir, "absent.safetensors")
    expectCheckpointError(flip(readSafetensors(file)), file, "", "cannot open")
  })

  it("the header encoder pads with spaces to a multiple of 8", () => {
    let padded = 0
    for (const name of ["a", "ab", "abc", "abcd", "abcde", "abcdef", "abcdefg", "abcdefgh"]) {
      const bytes = encodeSafetensorsHeader([fromFloat32(name, "F32", [1], new Float32Array(1))])
      const n = Number(new DataView(bytes.buffer).getBigUint64(0, true))
      assert.strictEqual(n % 8, 0)
      assert.strictEqual(bytes.byteLength, 8 + n)
      const close = bytes.lastIndexOf(0x7d) // '}'
      assert.isTrue(bytes.subarray(close + 1).every((b) => b === 0x20))
      if (close + 1 < bytes.byteLength) padded++
      assert.deepStrictEqual(Object.keys(JSON.parse(new TextDecoder().decode(bytes.subarray(8)))), [name])
    }
    assert.isAbove(padded, 0)
  })
})

// ---------------------------------------------------------------------------------------------------

describe("assembleWeights", () => {
  const config = toConfig(configJson())
  const tensors = randomTensors(config, 7)
  const asMap = (ts: ReadonlyArray<RawTensor>) => new Map(ts.map((t) => [t.name, t]))

  it("maps HF names to fields and ignores unknown tensors", () => {
    const w = run(assembleWeights(config, asMap(tensors), "m.safetensors"))
    const byName = asMap(tensors)
    assert.strictEqual(w.embedTokens, byName.get("model.embed_tokens.weight"))
    assert.strictEqual(w.layers[1]!.qProj, byName.get("model.layers.1.self_attn.q_proj.weight"))
    assert.strictEqual(w.layers[0]!.downProj, byName.get("model.layers.0.mlp.down_proj.weight"))
    assert.strictEqual(w.layers[1]!.postAttentionLayernorm, byName.get("model.layers.1.post_attention_layernorm.weight"))
    assert.strictEqual(w.norm, byName.get("model.norm.weight"))
    assert.strictEqual(w.lmHead, byName.get("lm_head.weight"))
    assert.deepStrictEqual([...w.layers[0]!.kProj.shape], [6, 8])
  })

  it("weightEntries is the inverse, in HF order", () => {
    const w = run(assembleWeights(config, asMap(tensors), ""))
    const entries = weightEntries(config, w)
    assert.deepStrictEqual(
      entries.map((t) => t.name),
      tensors.map((t) => t.name).filter((n) => !n.includes("inv_freq"))
    )
    assert.deepStrictEqual(entries.slice(1, 10).map((t) => t.name.split(".").slice(3).join(".")), [
      "input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
      "post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"
    ])
  })

  it("tied embeddings: lmHead IS embedTokens, a present lm_head is ignored, weightEntries omits it", () => {
    const tied = toConfig(configJson({ tie_word_embeddings: true }))
    const w = run(assembleWeights(tied, asMap(tensors), ""))
    assert.strictEqual(w.lmHead, w.embedTokens)
    const without = run(assembleWeights(tied, asMap(tensors.filter((t) => t.name !== "lm_head.weight")), ""))
    assert.strictEqual(without.lmHead, without.embedTokens)
    assert.notInclude(weightEntries(tied, w).map((t) => t.name), "lm_head.weight")
  })

  it("a transposed q_proj names the tensor and both shapes", () => {
    const name = "model.layers.0.self_attn.q_proj.weight"
    const bad = tensors.map((t) => (t.name === name ? { ...t, shape: [8, 12] } : t))
    const e = expectCheckpointError(flip(assembleWeights(config, asMap(bad), "m.safetensors")), "m.safetensors", name, "[8, 12]")
    assert.include(e.message, "expected [12, 8]")
  })

  it("a missing tensor names it; the file function is consulted", () => {
    const name = "model.layers.1.mlp.up_proj.weight"
    const e = flip(assembleWeights(config, asMap(tensors.filter((t) => t.name !== name)), (n) => `file-of-${n}`))
    expectCheckpointError(e, `file-of-${name}`, name, "missing tensor")
  })

  it("a missing lm_head when not tied", () => {
    const e = flip(assembleWeights(config, asMap(tensors.filter((t) => t.name !== "lm_head.weight")), "m"))
    expectCheckpointError(e, "m", "lm_head.weight", "missing tensor")
  })
})

// ---------------------------------------------------------------------------------------------------

/** A hand-written tokenizer.json: Whitespace pre-tokenizer, BPE, TemplateProcessing adding <s>. */
const tokenizerJson = {
  version: "1.0",
  truncation: null,
  padding: null,
  added_tokens: ["<unk>", "<s>", "</s>"].map((content, id) => ({
    id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true
  })),
  normalizer: null,
  pre_tokenizer: { type: "Whitespace" },
  post_processor: {
    type: "TemplateProcessing",
    single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
    pair: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } }],
    special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } }
  },
  decoder: null,
  model: {
    type: "BPE",
    dropout: null,
    unk_token: "<unk>",
    continuing_subword_prefix: null,
    end_of_word_suffix: null,
    fuse_unk: false,
    byte_fallback: false,
    vocab: { "<unk>": 0, "<s>": 1, "</s>": 2, a: 3, b: 4, c: 5, ab: 6, abc: 7, ca: 8 },
    merges: ["a b", "ab c", "c a"]
  }
}
const tokenizerConfig = { bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>" }

describe("Tokenizer", () => {
  it("encodes with <s> and decodes skipping special tokens", () => {
    const dir = freshDir()
    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tokenizerJson))
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(tokenizerConfig))
    const tok = run(loadTokenizer(dir))
    assert.deepStrictEqual(tok.encode("abc ab c"), [1, 7, 6, 5])
    assert.deepStrictEqual(tok.encode("ca b"), [1, 8, 4])
    assert.strictEqual(tok.decode([1, 7, 6, 5]), "abc ab c")
    assert.strictEqual(tok.decode([1, 7, 2]), "abc")
  })

  it("tokenizer_config.json is optional", () => {
    const dir = freshDir()
    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tokenizerJson))
    assert.deepStrictEqual(run(loadTokenizer(dir)).encode("abc"), [1, 7])
  })

  it("malformed tokenizer files name the file", () => {
    const dir = freshDir()
    const file = join(dir, "tokenizer.json")
    writeFileSync(file, "{ not json")
    expectCheckpointError(flip(loadTokenizer(dir)), file, "", "cannot read JSON")
    writeFileSync(file, JSON.stringify(tokenizerJson))
    const configFile = join(dir, "tokenizer_config.json")
    writeFileSync(configFile, "[1,")
    expectCheckpointError(flip(loadTokenizer(dir)), configFile, "", "cannot read JSON")
  })
})

// ---------------------------------------------------------------------------------------------------

describe("loadCheckpoint", () => {
  const load = (dir: string): Checkpoint => run(loadCheckpoint(dir))

  it("loads a single-file checkpoint (F32, F16, BF16)", () => {
    for (const dtype of ["F32", "F16", "BF16"] as const) {
      const { dir, config, tensors } = writeCheckpoint({ dtype })
      const ckpt = load(dir)
      assert.deepStrictEqual(ckpt.config, config)
      assert.strictEqual(ckpt.dir, dir)
      assert.strictEqual(ckpt.tokenizer, undefined)
      assert.deepStrictEqual(ckpt.eosTokenIds, [2])
      assert.deepStrictEqual(ckpt.generation, {})
      const expected = run(assembleWeights(config, new Map(tensors.map((t) => [t.name, t]))))
      sameWeights(ckpt.weights, expected)
      assert.strictEqual(ckpt.weights.layers[0]!.qProj.dtype, dtype)
    }
  })

  it("a sharded checkpoint (index + 2 shards) loads to the same weights", () => {
    const single = writeCheckpoint()
    const dir = freshDir()
    writeFileSync(join(dir, "config.json"), JSON.stringify(configJson()))
    const half = Math.ceil(single.tensors.length / 2)
    const shards = [single.tensors.slice(0, half), single.tensors.slice(half)]
    const weightMap: Record<string, string> = {}
    shards.forEach((ts, i) => {
      const shard = `model-0000${i + 1}-of-00002.safetensors`
      run(writeSafetensors(join(dir, shard), ts))
      for (const t of ts) weightMap[t.name] = shard
    })
    writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }))
    sameWeights(load(dir).weights, load(single.dir).weights)
  })

  const sharded = (edit: (weightMap: Record<string, string>) => void) => {
    const { dir, tensors } = writeCheckpoint()
    rmSync(join(dir, "model.safetensors"))
    run(writeSafetensors(join(dir, "shard-a.safetensors"), tensors))
    const weightMap: Record<string, string> = Object.fromEntries(tensors.map((t) => [t.name, "shard-a.safetensors"]))
    edit(weightMap)
    const index = join(dir, "model.safetensors.index.json")
    writeFileSync(index, JSON.stringify({ weight_map: weightMap }))
    return { dir, index }
  }

  it("a missing shard names the shard file", () => {
    const { dir } = sharded((m) => (m["model.norm.weight"] = "shard-b.safetensors"))
    expectCheckpointError(flip(loadCheckpoint(dir)), join(dir, "shard-b.safetensors"), "", "does not exist")
  })

  it("shard paths may not escape the directory", () => {
    for (const shard of ["../shard-a.safetensors", "/etc/passwd", "sub/../../x.safetensors"]) {
      const { dir, index } = sharded((m) => (m["model.norm.weight"] = shard))
      expectCheckpointError(flip(loadCheckpoint(dir)), index, "model.norm.weight", "escapes the checkpoint directory")
    }
  })

  it("a tensor listed in the index but absent from its shard names both", () => {
    const { dir } = sharded((m) => (m["model.layers.9.extra.weight"] = "shard-a.safetensors"))
    assert.strictEqual(load(dir).weights.layers.length, 2) // tensors the model does not need are not read
    const name = "model.layers.1.mlp.up_proj.weight"
    const { dir: dir2 } = sharded((m) => (m[name] = "shard-b.safetensors"))
    run(writeSafetensors(join(dir2, "shard-b.safetensors"), [fromFloat32("other", "F32", [1], new Float32Array(1))]))
    expectCheckpointError(flip(loadCheckpoint(dir2)), join(dir2, "shard-b.safetensors"), name, "model.safetensors.index.json")
  })

  it("a tensor missing from the index is named", () => {
    const name = "model.layers.1.mlp.up_proj.weight"
    const { dir, index } = sharded((m) => delete m[name])
    expectCheckpointError(flip(loadCheckpoint(dir)), index, name, "missing tensor")
  })

  it("a malformed index names the index file", () => {
    const { dir, index } = sharded(() => {})
    writeFileSync(index, JSON.stringify({ weight_map: { "model.norm.weight": 3 } }))
    expectCheckpointError(flip(loadCheckpoint(dir)), index, "", "weight_map.model.norm.weight")
    writeFileSync(index, "{")
    expectCheckpointError(flip(loadCheckpoint(dir)), index, "", "cannot read JSON")
  })

  it("damage inside the weights file surfaces from loadCheckpoint", () => {
    const name = "model.layers.1.mlp.up_proj.weight"
    const missing = writeCheckpoint({ tensors: (ts) => ts.filter((t) => t.name !== name) })
    expectCheckpointError(flip(loadCheckpoint(missing.dir)), join(missing.dir, "model.safetensors"), name, "missing tensor")
    const q = "model.layers.0.self_attn.q_proj.weight"
    const transposed = writeCheckpoint({ tensors: (ts) => ts.map((t) => (t.name === q ? { ...t, shape: [8, 12] } : t)) })
    expectCheckpointError(flip(loadCheckpoint(transposed.dir)), join(transposed.dir, "model.safetensors"), q, "expected [12, 8]")
    const noHead = writeCheckpoint({ tensors: (ts) => ts.filter((t) => t.name !== "lm_head.weight") })
    expectCheckpointError(flip(loadCheckpoint(noHead.dir)), join(noHead.dir, "model.safetensors"), "lm_head.weight", "missing tensor")
    const tied = writeCheckpoint({ patch: { tie_word_embeddings: true }, tensors: (ts) => ts.filter((t) => t.name !== "lm_head.weight") })
    const w = load(tied.dir).weights
    assert.strictEqual(w.lmHead, w.embedTokens)
    const truncated = writeCheckpoint()
    const file = join(truncated.dir, "model.safetensors")
    truncateSync(file, readFileSync(file).byteLength - 4)
    assert.strictEqual(flip(loadCheckpoint(truncated.dir))._tag, "CheckpointError")
  })

  it("bad config fields are ConfigErrors naming the field", () => {
    const cases: ReadonlyArray<readonly [Record<string, unknown>, string]> = [
      [{ hidden_size: "abc" }, "hidden_size"],
      [{ num_key_value_heads: 3, num_attention_heads: 2 }, "num_key_value_heads"],
      [{ hidden_act: "gelu" }, "hidden_act"],
      [{ rope_scaling: { rope_type: "yarn", factor: 4 } }, "rope_scaling.rope_type"],
      [{ vocab_size: -11 }, "vocab_size"]
    ]
    for (const [patch, field] of cases) {
      const dir = freshDir()
      writeFileSync(join(dir, "config.json"), JSON.stringify(configJson(patch)))
      const e = flip(loadCheckpoint(dir))
      assert.strictEqual(e._tag, "ConfigError")
      if (e._tag === "ConfigError") {
        assert.strictEqual(e.field, field)
        assert.strictEqual(e.file, join(dir, "config.json"))
      }
    }
  })

  it("missing or invalid config.json, missing directory, no weights", () => {
    const dir = freshDir()
    expectCheckpointError(flip(loadCheckpoint(dir)), dir, "", "a directory without config.json, not a model; expected a model directory")
    writeFileSync(join(dir, "config.json"), "{ oops")
    const invalid = flip(loadCheckpoint(dir))
    assert.strictEqual(invalid._tag, "ConfigError")
    assert.include(invalid.message, "invalid JSON")
    writeFileSync(join(dir, "config.json"), JSON.stringify(configJson()))
    expectCheckpointError(flip(loadCheckpoint(dir)), join(dir, "model.safetensors"), "", "no weights")
    const absent = join(root, "no-such-dir")
    expectCheckpointError(flip(loadCheckpoint(absent)), absent, "", "no such file or directory; expected a model directory")
    const file = join(dir, "config.json")
    expectCheckpointError(flip(loadCheckpoint(file)), file, "", ": a file of")
  })

  it("tokenizer and generation_config.json", () => {
    const { dir } = writeCheckpoint({ patch: { eos_token_id: [2, 3] } })
    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tokenizerJson))
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(tokenizerConfig))
    writeFileSync(join(dir, "generation_config.json"), JSON.stringify({ eos_token_id: [3, 9], max_new_tokens: 17, do_sample: true }))
    const ckpt = load(dir)
    assert.deepStrictEqual(ckpt.eosTokenIds, [2, 3, 9])
    assert.deepStrictEqual(ckpt.config.eosTokenIds, [2, 3])
    assert.deepStrictEqual(ckpt.generation, { maxNewTokens: 17 })
    assert.deepStrictEqual(ckpt.tokenizer?.encode("abc ab c"), [1, 7, 6, 5])

    writeFileSync(join(dir, "generation_config.json"), JSON.stringify({ eos_token_id: 11 }))
    const e = flip(loadCheckpoint(dir))
    assert.strictEqual(e._tag, "ConfigError")
    if (e._tag === "ConfigError") {
      assert.strictEqual(e.field, "eos_token_id")
      assert.strictEqual(e.file, join(dir, "generation_config.json"))
    }
    writeFileSync(join(dir, "generation_config.json"), JSON.stringify({ max_new_tokens: "many" }))
    const e2 = flip(loadCheckpoint(dir))
    assert.strictEqual(e2._tag === "ConfigError" ? e2.field : "", "max_new_tokens")

    writeFileSync(join(dir, "generation_config.json"), "{}")
    writeFileSync(join(dir, "tokenizer.json"), "nope")
    expectCheckpointError(flip(loadCheckpoint(dir)), join(dir, "tokenizer.json"), "", "tokenizer.json")
  })

  it("weightEntries → writeSafetensors → loadCheckpoint round-trips a ModelWeights", () => {
    const a = writeCheckpoint({ dtype: "BF16" })
    const weights = load(a.dir).weights
    const dir = freshDir()
    writeFileSync(join(dir, "config.json"), JSON.stringify(configJson()))
    run(writeSafetensors(join(dir, "model.safetensors"), weightEntries(a.config, weights)))
    sameWeights(load(dir).weights, weights)
  })
})
