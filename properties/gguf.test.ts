/**
 * The GGUF reader and writer (src/Gguf.ts) and GGUF checkpoints (src/GgufCheckpoint.ts via
 * Checkpoint.loadCheckpoint): round trips of every metadata type and of random models in every weight
 * type and both architectures (the loaded weights must equal the written ones byte for byte, so the
 * Q/K un-permutation is exact), one test per kind of damage asserting the typed error and what it
 * names, and a fast-check fuzz of mutated headers (like the safetensors one) that may only ever give a
 * header or a GgufError — never a throw, a hang or a huge allocation.
 */
import { Effect, Exit, Layer } from "effect"
import fc from "fast-check"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, assert, describe, expect, it } from "vitest"
import { ggmlRoundingLayer } from "./ggmlActivations.ts"
import { SimdKernels } from "../simd/index.ts"
import { loadCheckpoint } from "../src/Checkpoint.ts"
import * as Forward from "../src/Forward.ts"
import type { Kernels } from "../src/Kernels.ts"
import * as KvCache from "../src/KvCache.ts"
import * as Model from "../src/Model.ts"
import type { LlamaConfig } from "../src/Config.ts"
import { GgufError, gv, permuteQkRows, readGguf, readGgufHeader, unpermuteQkRows, writeGguf, writeGgufFile } from "../src/Gguf.ts"
import type { GgufValue } from "../src/Gguf.ts"
import { randomWeights, shapes } from "../testing/RandomModel.ts"
import { fromFloat32, numel } from "../src/Tensor.ts"
import type { DType, RawTensor } from "../src/Tensor.ts"
import { quantizeWeights, weightEntries } from "../src/Weights.ts"

const root = mkdtempSync(join(tmpdir(), "sirius-gguf-"))
afterAll(() => rmSync(root, { recursive: true, force: true }))
let counter = 0
const fresh = (name = "m.gguf") => join(root, `${counter++}-${name}`)

const run = <A, E>(effect: Effect.Effect<A, E>): A => Effect.runSync(effect)
const flip = <A, E>(effect: Effect.Effect<A, E>): E => Effect.runSync(Effect.flip(effect))

const expectGgufError = (error: unknown, file: string, field: string, tensor: string, text: string | RegExp): GgufError => {
  assert.instanceOf(error, GgufError)
  const e = error as GgufError
  assert.strictEqual(e._tag, "GgufError")
  assert.strictEqual(e.file, file)
  assert.strictEqual(e.field, field, e.message)
  assert.strictEqual(e.tensor, tensor, e.message)
  if (typeof text === "string") assert.include(e.message, text)
  else assert.match(e.message, text)
  return e
}

/** Little-endian bytes by hand, for headers no writer would produce. */
class Bytes {
  private out: Array<number> = []
  u8 = (v: number) => (this.out.push(v & 0xff), this)
  u32 = (v: number) => {
    for (let i = 0; i < 4; i++) this.out.push((v >>> (8 * i)) & 0xff)
    return this
  }
  u64 = (v: bigint | number) => {
    const b = BigInt(v)
    for (let i = 0n; i < 8n; i++) this.out.push(Number((b >> (8n * i)) & 0xffn))
    return this
  }
  raw = (bytes: ArrayLike<number>) => (this.out.push(...Array.from(bytes)), this)
  str = (s: string) => {
    const b = new TextEncoder().encode(s)
    return this.u64(b.length).raw(b)
  }
  pad = (to: number) => {
    while (this.out.length % to !== 0) this.out.push(0)
    return this
  }
  get length() {
    return this.out.length
  }
  bytes = () => Uint8Array.from(this.out)
  write = (file = fresh()) => (writeFileSync(file, this.bytes()), file)
}
const header = (tensors: number, kvs: number, version = 3) => new Bytes().raw([0x47, 0x47, 0x55, 0x46]).u32(version).u64(tensors).u64(kvs)
/** One F32 tensor info (ggml dims innermost first). */
const tensorInfo = (b: Bytes, name: string, dims: ReadonlyArray<number | bigint>, type = 0, offset: number | bigint = 0) => {
  b.str(name).u32(dims.length)
  for (const d of dims) b.u64(d)
  return b.u32(type).u64(offset)
}

// ---------------------------------------------------------------------------------------------------

describe("metadata and tensor round trip", () => {
  const metadata: Array<readonly [string, GgufValue]> = [
    ["general.alignment", gv.u32(64)],
    ["t.u8", { type: "u8", value: 255 }],
    ["t.i8", { type: "i8", value: -128 }],
    ["t.u16", { type: "u16", value: 65535 }],
    ["t.i16", { type: "i16", value: -32768 }],
    ["t.u32", gv.u32(4294967295)],
    ["t.i32", gv.i32(-2147483648)],
    ["t.f32", gv.f32(0.1)],
    ["t.bool", gv.bool(true)],
    ["t.string", gv.string("héllo ▁ 世界 🙂")],
    ["t.u64", gv.u64(18446744073709551615n)],
    ["t.i64", { type: "i64", value: -9223372036854775808n }],
    ["t.f64", { type: "f64", value: Math.PI }],
    ["t.arr.u8", { type: "array", elementType: "u8", value: [0, 1, 255] }],
    ["t.arr.i16", { type: "array", elementType: "i16", value: [-1, 2] }],
    ["t.arr.f32", gv.f32s([1.5, -2.25])],
    ["t.arr.bool", { type: "array", elementType: "bool", value: [true, false] }],
    ["t.arr.string", gv.strings(["a", "", "ü"])],
    ["t.arr.u64", { type: "array", elementType: "u64", value: [1n, 2n ** 40n] }],
    ["t.arr.f64", { type: "array", elementType: "f64", value: [1e-300] }],
    ["t.arr.empty", gv.i32s([])]
  ]
  const values = (n: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i))
  const tensors = [
    fromFloat32("a", "F32", [3, 5], values(15)),
    fromFloat32("b", "F16", [7], values(7)),
    fromFloat32("c", "BF16", [2, 2, 2], values(8)),
    fromFloat32("d", "Q8_0", [3, 64], values(192)),
    fromFloat32("e", "Q4_0", [2, 32], values(64)),
    fromFloat32("f", "Q4_K", [2, 256], values(512)),
    fromFloat32("g", "Q6_K", [1, 256], values(256))
  ]
  const file = fresh()
  writeGgufFile(file, metadata, tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, bytes: () => t.data })))

  it("every value type, arrays included, reads back as written", () => {
    const h = run(readGgufHeader(file))
    assert.strictEqual(h.version, 3)
    assert.strictEqual(h.alignment, 64)
    assert.deepStrictEqual([...h.metadata.keys()], metadata.map(([k]) => k))
    for (const [key, value] of metadata) {
      const got = h.metadata.get(key)!
      if (value.type === "f32") assert.strictEqual(got.value, Math.fround(value.value))
      else if (value.type === "array" && value.elementType === "f32") assert.deepStrictEqual(got.value, (value.value as Array<number>).map(Math.fround))
      else assert.deepStrictEqual(got, value, key)
    }
  })

  it("tensor infos: ggml dims reversed to row-major shapes, aligned offsets, every dtype's bytes intact", () => {
    const { header: h, tensors: read } = run(readGguf(file))
    assert.strictEqual(h.dataOffset % 64, 0)
    for (const t of tensors) {
      const info = h.tensors.find((i) => i.name === t.name)!
      assert.deepStrictEqual(info.dims, [...t.shape].reverse())
      assert.deepStrictEqual(info.shape, t.shape)
      assert.strictEqual(info.dtype, t.dtype)
      assert.strictEqual(info.offset % 64, 0)
      assert.deepStrictEqual(read.get(t.name), t)
    }
    // Only wanted tensors are read.
    assert.deepStrictEqual([...run(readGguf(file, (n) => n === "f")).tensors.keys()], ["f"])
  })

  it("version 2 files read like version 3", () => {
    const bytes = readFileSync(file)
    bytes.writeUInt32LE(2, 4)
    const v2 = fresh()
    writeFileSync(v2, bytes)
    const h = run(readGgufHeader(v2))
    assert.strictEqual(h.version, 2)
    assert.strictEqual(h.tensors.length, tensors.length)
  })
})

describe("Q/K permutation", () => {
  it("unpermuteQkRows inverts permuteQkRows, for any heads, head dim and row size", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 9 }), (heads, half, rowBytes) => {
        const data = Uint8Array.from({ length: heads * 2 * half * rowBytes }, (_, i) => (i * 37) & 0xff)
        const p = permuteQkRows(data, heads, 2 * half, rowBytes)
        assert.deepStrictEqual(unpermuteQkRows(p, heads, 2 * half, rowBytes), data)
        if (half > 1) assert.notDeepEqual(p, data)
      })
    )
  })
  it("row h·hd + 2j + t of the GGUF is HF row h·hd + t·hd/2 + j", () => {
    const rows = Uint8Array.from({ length: 8 }, (_, i) => i) // 1 head, head_dim 8, 1-byte rows
    assert.deepStrictEqual([...permuteQkRows(rows, 1, 8, 1)], [0, 4, 1, 5, 2, 6, 3, 7])
  })
})

describe("GGUF checkpoints round trip", () => {
  const qwen: LlamaConfig = { ...shapes.tiny, architecture: "qwen2", attentionBias: true }
  const cases: ReadonlyArray<{ readonly label: string; readonly config: LlamaConfig; readonly dtype: DType }> = [
    { label: "llama F32", config: shapes.tiny, dtype: "F32" },
    { label: "llama BF16, tied", config: { ...shapes.tiny, tieWordEmbeddings: true }, dtype: "BF16" },
    { label: "llama F16, llama3 rope", config: { ...shapes.tiny, ropeScaling: { ropeType: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 } }, dtype: "F16" },
    { label: "llama Q8_0", config: shapes.tiny, dtype: "Q8_0" },
    { label: "qwen2 Q4_0", config: qwen, dtype: "Q4_0" },
    { label: "llama Q4_K (hidden 256)", config: { ...shapes.tiny, hiddenSize: 256, headDim: 64, intermediateSize: 256 }, dtype: "Q4_K" },
    { label: "qwen2 Q6_K (hidden 256)", config: { ...qwen, hiddenSize: 256, headDim: 64, intermediateSize: 512 }, dtype: "Q6_K" }
  ]
  for (const c of cases) {
    it(`${c.label}: loadCheckpoint(.gguf) gives the config and the very weight bytes written`, () => {
      const weights = randomWeights(c.config, { seed: 3 })
      const file = fresh()
      writeGguf(file, c.config, weights, { fileType: c.dtype, chatTemplate: "{{ messages }}" })
      const ckpt = run(loadCheckpoint(file))
      const expected = c.dtype === "F32" ? weights : quantizeOrCast(c.config, weights, c.dtype)
      const { ropeScaling, ...rest } = ckpt.config
      const { ropeScaling: wanted, ...wantedRest } = c.config
      assert.deepStrictEqual(rest, { ...wantedRest, bosTokenId: 1, eosTokenIds: [2], rmsNormEps: Math.fround(c.config.rmsNormEps) })
      if (wanted === undefined) assert.isUndefined(ropeScaling)
      else assert.strictEqual(ropeScaling?.ropeType, "freq_factors")
      const got = weightEntries(ckpt.config, ckpt.weights)
      const want = weightEntries(c.config, expected)
      assert.deepStrictEqual(got.map((t) => t.name), want.map((t) => t.name))
      got.forEach((t, i) => {
        const w = want[i]!
        // Norms and biases are F32 in the file; matrices in the file type.
        const wantBytes = t.shape.length === 1 ? fromFloat32(w.name, "F32", w.shape, toF32(w)).data : w.data
        assert.strictEqual(t.dtype, t.shape.length === 1 ? "F32" : c.dtype, t.name)
        assert.deepStrictEqual(t.data, wantBytes, t.name)
      })
      assert.strictEqual(ckpt.config.tieWordEmbeddings, c.config.tieWordEmbeddings)
      if (c.config.tieWordEmbeddings) assert.strictEqual(ckpt.weights.lmHead, ckpt.weights.embedTokens)
      assert.strictEqual(ckpt.chatTemplate, "{{ messages }}")
      assert.deepStrictEqual(ckpt.specialTokens, { bos: "<s>", eos: "</s>", unk: "<unk>" })
      assert.strictEqual(ckpt.path, file)
      assert.strictEqual(ckpt.tokenizer?.decode([1, 300, 2]), "t300")
    })
  }

  it("every backend runs a quantized GGUF: simd's integer kernels compute what the reference does with llama.cpp's activation rounding", async () => {
    const config: LlamaConfig = { ...shapes.tiny, architecture: "qwen2", attentionBias: true, hiddenSize: 256, headDim: 64, intermediateSize: 256 }
    const file = fresh()
    writeGguf(file, config, randomWeights(config, { seed: 6 }), { fileType: "Q4_K" })
    const logits = (layer: Layer.Layer<Kernels>) =>
      Effect.gen(function* () {
        const ckpt = yield* loadCheckpoint(file)
        const model = yield* Model.fromCheckpoint(ckpt)
        return yield* Forward.forward(model, yield* KvCache.make(model.kernels, ckpt.config, 16), Int32Array.of(1, 300, 301, 5), 0, "all")
      }).pipe(Effect.scoped, Effect.provide(layer))
    // simd quantizes each matmul's activations as llama.cpp does (Q8_K blocks for Q4_K weights); the
    // reference with properties/ggmlActivations.ts's emulation of that rounding computes the same values,
    // so they differ by f32 accumulation order only (properties/simdQuant.test.ts bounds it op by op)
    const ref = await Effect.runPromise(logits(ggmlRoundingLayer()))
    const simd = await Effect.runPromise(logits(Layer.orDie(SimdKernels.layer({ threads: 1 }))))
    let worst = 0
    for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(ref[i]! - simd[i]!))
    assert.isBelow(worst, 1e-3)
  })

  it("the load-time quantize option quantizes an HF checkpoint's float matrices, not norms", () => {
    const weights = randomWeights(shapes.tiny, { seed: 4 })
    const file = fresh()
    writeGguf(file, shapes.tiny, weights)
    const ckpt = run(loadCheckpoint(file, { quantize: "Q8_0" }))
    assert.strictEqual(ckpt.weights.layers[0]!.qProj.dtype, "Q8_0")
    assert.strictEqual(ckpt.weights.embedTokens.dtype, "Q8_0")
    assert.strictEqual(ckpt.weights.norm.dtype, "F32")
  })
})

const toF32 = (t: RawTensor) => Effect.runSync(Effect.sync(() => Float32Array.from(new Float32Array(fromFloat32(t.name, "F32", t.shape, decode(t)).data.buffer))))
const decode = (t: RawTensor): Float32Array => {
  // Float tensors only (norms and biases).
  const n = numel(t.shape)
  if (t.dtype === "F32") return new Float32Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + 4 * n))
  const out = new Float32Array(n)
  const view = new DataView(t.data.buffer, t.data.byteOffset)
  for (let i = 0; i < n; i++) {
    const h = view.getUint16(2 * i, true)
    out[i] = t.dtype === "BF16" ? new Float32Array(new Uint32Array([h << 16]).buffer)[0]! : f16(h)
  }
  return out
}
const f16 = (h: number) => {
  const e = (h >> 10) & 31
  const m = h & 1023
  const s = h & 0x8000 ? -1 : 1
  return e === 0 ? s * m * 2 ** -24 : s * (1 + m / 1024) * 2 ** (e - 15)
}
/** What the writer stores for `dtype`: matrices converted (quantized), norms untouched here. */
const quantizeOrCast = (config: LlamaConfig, weights: ReturnType<typeof randomWeights>, dtype: DType) => {
  if (dtype === "F16" || dtype === "BF16") {
    const cast = (t: RawTensor) => (t.shape.length === 2 ? fromFloat32(t.name, dtype, t.shape, decode(t)) : t)
    return {
      embedTokens: cast(weights.embedTokens),
      layers: weights.layers.map((l) => Object.fromEntries(Object.entries(l).map(([k, t]) => [k, cast(t)])) as unknown as (typeof weights.layers)[number]),
      norm: weights.norm,
      lmHead: cast(weights.lmHead)
    }
  }
  return quantizeWeights(config, weights, dtype as "Q8_0")
}

// ---------------------------------------------------------------------------------------------------

describe("GGUF damage", () => {
  it("not a GGUF file, version 1, big-endian, unknown version", () => {
    const text = fresh("x.gguf")
    writeFileSync(text, "hello world, not gguf")
    expectGgufError(flip(readGgufHeader(text)), text, "magic", "", 'not a GGUF file: magic 0x6c6c6568 ("hell")')
    const v1 = header(0, 0, 1).write()
    expectGgufError(flip(readGgufHeader(v1)), v1, "version", "", "version 1 is not supported")
    const be = header(0, 0, 0x03000000).write()
    expectGgufError(flip(readGgufHeader(be)), be, "version", "", "big-endian GGUF")
    const v9 = header(0, 0, 9).write()
    expectGgufError(flip(readGgufHeader(v9)), v9, "version", "", "unknown GGUF version 9")
    const empty = fresh()
    writeFileSync(empty, new Uint8Array(2))
    expectGgufError(flip(readGgufHeader(empty)), empty, "magic", "", "truncated")
  })

  it("counts that cannot fit in the file are refused before anything is allocated", () => {
    const before = process.memoryUsage().arrayBuffers
    const tensors = header(0, 0).write()
    const bytes = readFileSync(tensors)
    bytes.writeBigUInt64LE(2n ** 40n, 8)
    writeFileSync(tensors, bytes)
    expectGgufError(flip(readGgufHeader(tensors)), tensors, "tensor_count", "", "cannot fit")
    const kvs = header(0, 2n ** 63n as unknown as number).write()
    expectGgufError(flip(readGgufHeader(kvs)), kvs, "metadata_kv_count", "", "cannot fit")
    const str = header(0, 1).u64(2n ** 62n).write()
    expectGgufError(flip(readGgufHeader(str)), str, "metadata[0].key", "", "exceeds")
    const arr = header(0, 1).str("k").u32(9).u32(4).u64(2n ** 50n).write()
    expectGgufError(flip(readGgufHeader(arr)), arr, "k", "", "array of 1125899906842624 u32 needs at least")
    const strings = header(0, 1).str("k").u32(9).u32(8).u64(1000).u64(1).raw([0x41]).write()
    expectGgufError(flip(readGgufHeader(strings)), strings, "k", "", "array of 1000 string")
    assert.isBelow(process.memoryUsage().arrayBuffers - before, 20_000_000)
  })

  it("truncated anywhere in the header", () => {
    const ok = header(1, 1).str("general.alignment").u32(4).u32(32)
    tensorInfo(ok, "w", [4]).pad(32).raw(new Uint8Array(16))
    const full = ok.bytes()
    assert.strictEqual(run(readGgufHeader(new Bytes().raw(full).write())).tensors.length, 1)
    for (const cut of [4, 10, 30, 45, 60, 70, 80, full.length - 1]) {
      const file = new Bytes().raw(full.subarray(0, cut)).write()
      const e = flip(readGgufHeader(file))
      assert.instanceOf(e, GgufError)
      assert.match(e.message, /truncated/, `cut at ${cut}: ${e.message}`)
    }
  })

  it("bad value types, nested arrays, bad bools, invalid UTF-8, duplicate and empty keys", () => {
    const type = header(0, 1).str("k").u32(13).write()
    expectGgufError(flip(readGgufHeader(type)), type, "k", "", "unknown value type 13")
    const nested = header(0, 1).str("k").u32(9).u32(9).u64(0).write()
    expectGgufError(flip(readGgufHeader(nested)), nested, "k", "", "arrays of arrays")
    const bool = header(0, 1).str("k").u32(7).u8(2).write()
    expectGgufError(flip(readGgufHeader(bool)), bool, "k", "", "bool must be 0 or 1")
    const utf8 = header(0, 1).u64(2).raw([0xc3, 0x28]).u32(4).u32(1).write()
    expectGgufError(flip(readGgufHeader(utf8)), utf8, "metadata[0].key", "", "not valid UTF-8")
    const dup = header(0, 2).str("k").u32(4).u32(1).str("k").u32(4).u32(2).write()
    expectGgufError(flip(readGgufHeader(dup)), dup, "k", "", "duplicate metadata key")
    const empty = header(0, 1).str("").u32(4).u32(1).write()
    expectGgufError(flip(readGgufHeader(empty)), empty, "metadata[0].key", "", "empty key")
  })

  it("general.alignment must be a u32 power of two", () => {
    const type = header(0, 1).str("general.alignment").u32(10).u64(32).write()
    expectGgufError(flip(readGgufHeader(type)), type, "general.alignment", "", "must be a u32 (got u64)")
    const npot = header(0, 1).str("general.alignment").u32(4).u32(24).write()
    expectGgufError(flip(readGgufHeader(npot)), npot, "general.alignment", "", "power of two (got 24)")
    const zero = header(0, 1).str("general.alignment").u32(4).u32(0).write()
    expectGgufError(flip(readGgufHeader(zero)), zero, "general.alignment", "", "power of two (got 0)")
  })

  it("tensor infos: names, dims, types, offsets and extents are checked and the tensor named", () => {
    const withData = (b: Bytes, n = 64) => b.pad(32).raw(new Uint8Array(n)).write()
    const long = withData(tensorInfo(header(1, 0), "x".repeat(64), [4]))
    expectGgufError(flip(readGgufHeader(long)), long, "tensor_infos[0].name", "x".repeat(64), "at most 63")
    const dup = withData(tensorInfo(tensorInfo(header(2, 0), "w", [4]), "w", [4], 0, 32))
    expectGgufError(flip(readGgufHeader(dup)), dup, "tensor_infos[1].name", "w", "duplicate tensor name")
    const dims = withData(tensorInfo(header(1, 0), "w", [1, 1, 1, 1, 1]))
    expectGgufError(flip(readGgufHeader(dims)), dims, "tensor_infos[0].n_dims", "w", "at most 4")
    const type = withData(tensorInfo(header(1, 0), "w", [4], 33))
    expectGgufError(flip(readGgufHeader(type)), type, "tensor_infos[0].type", "w", "unknown ggml type 33")
    const block = withData(tensorInfo(header(1, 0), "w", [48, 2], 12), 4096)
    expectGgufError(flip(readGgufHeader(block)), block, "tensor_infos[0].dims", "w", "not a multiple of Q4_K's block size 256")
    const align = withData(tensorInfo(header(1, 0), "w", [4], 0, 8))
    expectGgufError(flip(readGgufHeader(align)), align, "tensor_infos[0].offset", "w", "not a multiple of the alignment 32")
    const beyond = withData(tensorInfo(header(1, 0), "w", [100]))
    expectGgufError(flip(readGgufHeader(beyond)), beyond, "", "w", "beyond the")
    const overflow = withData(tensorInfo(header(1, 0), "w", [2n ** 40n, 2n ** 40n]))
    expectGgufError(flip(readGgufHeader(overflow)), overflow, "", "w", "beyond the")
    const overlap = withData(tensorInfo(tensorInfo(header(2, 0), "a", [16]), "b", [16], 0, 32), 160)
    expectGgufError(flip(readGgufHeader(overlap)), overlap, "", "b", 'overlaps tensor "a"')
  })

  it("a tensor of a type sirius-ts cannot run parses, and loading it names the tensor and type", () => {
    const file = tensorInfo(header(1, 0), "w", [256], 13).pad(32).raw(new Uint8Array(176)).write()
    assert.strictEqual(run(readGgufHeader(file)).tensors[0]!.typeName, "Q5_K")
    expectGgufError(flip(readGguf(file)), file, "", "w", "type Q5_K is not supported")
  })

  it("a missing file, a directory, and a path that is neither model kind", () => {
    const missing = join(root, "absent.gguf")
    expectGgufError(flip(readGgufHeader(missing)), missing, "", "", "cannot open")
    expectGgufError(flip(readGgufHeader(root)), root, "", "", "cannot open")
    const text = fresh("notes.txt")
    writeFileSync(text, "not a model")
    const e = flip(loadCheckpoint(text))
    assert.strictEqual(e._tag, "CheckpointError")
    assert.include(e.message, "a file of 11 bytes, not a model")
    assert.include(e.message, "or a .gguf file")
    const e2 = flip(loadCheckpoint(join(root, "nothing-here")))
    assert.include(e2.message, "no such file or directory; expected a model directory")
  })
})

describe("GGUF checkpoint damage names the key or tensor", () => {
  const model = (edit: (meta: Array<readonly [string, GgufValue]>, tensors: Array<RawTensor>) => void) => {
    const source = fresh()
    writeGguf(source, shapes.tiny, randomWeights(shapes.tiny, { seed: 9 }))
    const { header: h, tensors } = run(readGguf(source))
    const meta = [...h.metadata.entries()] as Array<readonly [string, GgufValue]>
    const list = h.tensors.map((i) => tensors.get(i.name)!)
    edit(meta, list)
    const file = fresh()
    writeGgufFile(file, meta, list.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, bytes: () => t.data })))
    return file
  }
  const set = (meta: Array<readonly [string, GgufValue]>, key: string, value: GgufValue | undefined) => {
    const i = meta.findIndex(([k]) => k === key)
    if (value === undefined) meta.splice(i, 1)
    else if (i < 0) meta.push([key, value])
    else meta[i] = [key, value]
  }

  it("a missing required key", () => {
    const file = model((m) => set(m, "llama.block_count", undefined))
    expectGgufError(flip(loadCheckpoint(file)), file, "llama.block_count", "", "is required")
  })
  it("an unsupported architecture", () => {
    const file = model((m) => set(m, "general.architecture", gv.string("gemma3")))
    expectGgufError(flip(loadCheckpoint(file)), file, "general.architecture", "", 'architecture "gemma3" is not supported')
  })
  it("a key of the wrong type", () => {
    const file = model((m) => set(m, "llama.embedding_length", gv.string("64")))
    expectGgufError(flip(loadCheckpoint(file)), file, "llama.embedding_length", "", "must be an unsigned integer (got string)")
  })
  it("config relations are checked by decodeConfig and reported under the GGUF key", () => {
    const file = model((m) => set(m, "llama.attention.head_count_kv", gv.u32(3)))
    expectGgufError(flip(loadCheckpoint(file)), file, "llama.attention.head_count_kv", "", "must divide num_attention_heads")
  })
  it("unsupported features: rope scaling type, partial rotary", () => {
    const yarn = model((m) => set(m, "llama.rope.scaling.type", gv.string("yarn")))
    expectGgufError(flip(loadCheckpoint(yarn)), yarn, "llama.rope.scaling.type", "", 'rope scaling "yarn"')
    const rot = model((m) => set(m, "llama.rope.dimension_count", gv.u32(8)))
    expectGgufError(flip(loadCheckpoint(rot)), rot, "llama.rope.dimension_count", "", "partial rotary")
  })
  it("a missing tensor and a misshapen tensor name the GGUF tensor and its HF name", () => {
    const missing = model((_, t) => t.splice(t.findIndex((x) => x.name === "blk.1.ffn_up.weight"), 1))
    expectGgufError(flip(loadCheckpoint(missing)), missing, "", "blk.1.ffn_up.weight", '"blk.1.ffn_up.weight" (model.layers.1.mlp.up_proj.weight)')
    const shape = model((_, t) => {
      const i = t.findIndex((x) => x.name === "blk.0.ffn_down.weight")
      t[i] = { ...t[i]!, shape: [96, 64] }
    })
    expectGgufError(flip(loadCheckpoint(shape)), shape, "", "blk.0.ffn_down.weight", "has shape [96, 64], expected [64, 96]")
  })
  it("tokenizer metadata: ids outside the vocabulary, unsupported models", () => {
    const id = model((m) => set(m, "tokenizer.ggml.eot_token_id", gv.u32(5000)))
    expectGgufError(flip(loadCheckpoint(id)), id, "tokenizer.ggml.eot_token_id", "", "outside the 320-token vocabulary")
    const bert = model((m) => set(m, "tokenizer.ggml.model", gv.string("bert")))
    expectGgufError(flip(loadCheckpoint(bert)), bert, "tokenizer.ggml.model", "", 'tokenizer model "bert" is not supported')
    const pre = model((m) => {
      set(m, "tokenizer.ggml.model", gv.string("gpt2"))
      set(m, "tokenizer.ggml.pre", gv.string("smollm"))
      set(m, "tokenizer.ggml.merges", gv.strings([]))
    })
    expectGgufError(flip(loadCheckpoint(pre)), pre, "tokenizer.ggml.pre", "", 'pre-tokenizer "smollm" is not supported')
  })
})

// ---------------------------------------------------------------------------------------------------

describe("fuzz: mutated GGUF headers", () => {
  // A small but varied valid file: several value types, arrays, and tensors of four types.
  const base = fresh("fuzz-base.gguf")
  writeGgufFile(
    base,
    [
      ["general.architecture", gv.string("llama")],
      ["general.alignment", gv.u32(32)],
      ["a.u8", { type: "u8", value: 7 }],
      ["a.f32s", gv.f32s([1, 2, 3])],
      ["a.strings", gv.strings(["x", "yz"])],
      ["a.u64", gv.u64(5n)],
      ["a.bool", gv.bool(false)]
    ],
    [
      fromFloat32("t.f32", "F32", [2, 3], new Float32Array(6)),
      fromFloat32("t.q8", "Q8_0", [1, 32], new Float32Array(32)),
      fromFloat32("t.q4k", "Q4_K", [1, 256], new Float32Array(256)),
      fromFloat32("t.bf16", "BF16", [5], new Float32Array(5))
    ].map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, bytes: () => t.data }))
  )
  const original = readFileSync(base)
  const headerEnd = run(readGgufHeader(base)).dataOffset

  const interesting = fc.constantFrom(0n, 1n, 31n, 2n ** 31n, 2n ** 32n - 1n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n, BigInt(original.length))
  const mutation = fc.oneof(
    fc.record({ kind: fc.constant("bytes" as const), edits: fc.array(fc.tuple(fc.nat(headerEnd - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }) }),
    fc.record({ kind: fc.constant("u64" as const), at: fc.nat(headerEnd - 8), value: interesting }),
    fc.record({ kind: fc.constant("u32" as const), at: fc.nat(headerEnd - 4), value: fc.integer({ min: 0, max: 0xffffffff }) }),
    fc.record({ kind: fc.constant("truncate" as const), length: fc.nat(original.length) }),
    fc.record({ kind: fc.constant("splice" as const), at: fc.nat(headerEnd - 1), length: fc.integer({ min: 1, max: 16 }) })
  )

  it("property: a damaged header gives a header or a GgufError, never a defect, quickly and within memory", () => {
    const file = fresh("fuzz.gguf")
    let errors = 0
    fc.assert(
      fc.property(mutation, (m) => {
        let bytes = Buffer.from(original)
        if (m.kind === "bytes") for (const [at, v] of m.edits) bytes[at] = v
        else if (m.kind === "u64") bytes.writeBigUInt64LE(m.value, m.at)
        else if (m.kind === "u32") bytes.writeUInt32LE(m.value, m.at)
        else if (m.kind === "truncate") bytes = bytes.subarray(0, m.length)
        else bytes = Buffer.concat([bytes.subarray(0, m.at), bytes.subarray(m.at + m.length)])
        writeFileSync(file, bytes)
        const before = process.memoryUsage().arrayBuffers
        const started = performance.now()
        const exit = Effect.runSyncExit(readGguf(file))
        expect(performance.now() - started).toBeLessThan(1000)
        expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 1024 * 1024)
        if (Exit.isFailure(exit)) {
          const error = Effect.runSync(Effect.flip(Effect.suspend(() => exit)))
          expect(error).toBeInstanceOf(GgufError)
          expect(error.file).toBe(file)
          errors++
        }
      }),
      { numRuns: 400 }
    )
    expect(errors).toBeGreaterThan(100) // the mutations do damage
  })
})
