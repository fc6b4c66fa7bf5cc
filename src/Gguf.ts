/**
 * Gguf: the GGUF file format (v2 and v3), read and write (docs/formats.md, docs/gguf.md; the spec is
 * ggml's `docs/gguf.md`, the reference reader ggml's `gguf.cpp`).
 *
 * Layout: magic "GGUF", u32 version, u64 tensor count, u64 metadata count; metadata key/value pairs
 * (u64-length strings, u32 value types 0..12, arrays as element type + u64 count + elements); one info
 * per tensor (name, u32 n_dims, u64 dims innermost first, u32 ggml type, u64 offset); zero padding to
 * `general.alignment` (default 32); the data section, each tensor at its offset from the section start.
 *
 * **Reading** is our own parser rather than `@huggingface/gguf` (0.4.6): that package parses headers
 * only, trusts counts and lengths from the file (it allocates what a damaged header asks for), and its
 * errors do not name the key or tensor at fault. Here every count, length and offset is bounded by the
 * file size before anything is allocated (a string cannot be longer than the bytes left, an array of n
 * u32 needs 4n bytes left, ...), the header is read through a bounded window of positional reads, and
 * every tensor's bytes are read straight into their own buffer: the file is never held twice in memory.
 * Validation: magic, version (1 and big-endian files are refused by name), value and tensor types,
 * UTF-8 of every string, unique keys and tensor names, `general.alignment` (u32 power of two), dims
 * (≤ 4, innermost a multiple of the type's block size, no overflow), offsets (multiple of the alignment,
 * extent inside the file, no overlaps). A damaged file is a `GgufError` naming the file and the field,
 * key or tensor, never a throw, a hang or a huge allocation. Metadata accessors (`metaUint`, ...) give
 * typed errors naming the key.
 *
 * **Writing** hands llama.cpp the weights sirius-ts runs (the oracle of properties/llamaCpp*.test.ts),
 * and backs `sirius quantize`: architecture metadata for `llama` and `qwen2`, a SentencePiece-style
 * (`llama`) or byte-level BPE (`gpt2`) vocabulary or tokenizer metadata copied verbatim, the chat
 * template, and tensors under their GGUF names (Weights.ts's table) in F32/F16/BF16 or quantized
 * (Q8_0, Q4_0, Q4_K, Q6_K, per tensor), with the HF→GGUF Q/K row permutation for `llama` (§3) and
 * ggml's innermost-first dims. Tensors are streamed to the file one at a time.
 *
 * The mapping from a GGUF's metadata and tensors to a LlamaConfig and ModelWeights (un-permuting Q/K)
 * lives in GgufCheckpoint.ts; tokenizers in GgufTokenizer.ts. This module knows the format only.
 */
import { Effect, Schema } from "effect"
import { closeSync, fstatSync, openSync, readSync, writeSync } from "node:fs"
import type { LlamaConfig } from "./Config.ts"
import type { DType, RawTensor } from "./Tensor.ts"
import { convertTensor, fitsBlocks, rowBytes, tensorBytes } from "./Tensor.ts"
import type { ModelWeights } from "./Weights.ts"
import { hfToGgufName, layerRows, layerTensorName, modelTable } from "./Weights.ts"

// ---------------------------------------------------------------------------------------------------
// ggml tensor types

interface GgmlType {
  readonly id: number
  readonly name: string
  readonly blockSize: number
  readonly blockBytes: number
}

/**
 * Every ggml tensor type a GGUF may name (ggml.c `type_traits`): enough to size any tensor, so a file
 * with types sirius-ts cannot run still parses and lists, and loading names the tensor and its type.
 */
export const ggmlTypes: ReadonlyArray<GgmlType> = [
  { id: 0, name: "F32", blockSize: 1, blockBytes: 4 },
  { id: 1, name: "F16", blockSize: 1, blockBytes: 2 },
  { id: 2, name: "Q4_0", blockSize: 32, blockBytes: 18 },
  { id: 3, name: "Q4_1", blockSize: 32, blockBytes: 20 },
  { id: 6, name: "Q5_0", blockSize: 32, blockBytes: 22 },
  { id: 7, name: "Q5_1", blockSize: 32, blockBytes: 24 },
  { id: 8, name: "Q8_0", blockSize: 32, blockBytes: 34 },
  { id: 9, name: "Q8_1", blockSize: 32, blockBytes: 36 },
  { id: 10, name: "Q2_K", blockSize: 256, blockBytes: 84 },
  { id: 11, name: "Q3_K", blockSize: 256, blockBytes: 110 },
  { id: 12, name: "Q4_K", blockSize: 256, blockBytes: 144 },
  { id: 13, name: "Q5_K", blockSize: 256, blockBytes: 176 },
  { id: 14, name: "Q6_K", blockSize: 256, blockBytes: 210 },
  { id: 15, name: "Q8_K", blockSize: 256, blockBytes: 292 },
  { id: 16, name: "IQ2_XXS", blockSize: 256, blockBytes: 66 },
  { id: 17, name: "IQ2_XS", blockSize: 256, blockBytes: 74 },
  { id: 18, name: "IQ3_XXS", blockSize: 256, blockBytes: 98 },
  { id: 19, name: "IQ1_S", blockSize: 256, blockBytes: 50 },
  { id: 20, name: "IQ4_NL", blockSize: 32, blockBytes: 18 },
  { id: 21, name: "IQ3_S", blockSize: 256, blockBytes: 110 },
  { id: 22, name: "IQ2_S", blockSize: 256, blockBytes: 82 },
  { id: 23, name: "IQ4_XS", blockSize: 256, blockBytes: 136 },
  { id: 24, name: "I8", blockSize: 1, blockBytes: 1 },
  { id: 25, name: "I16", blockSize: 1, blockBytes: 2 },
  { id: 26, name: "I32", blockSize: 1, blockBytes: 4 },
  { id: 27, name: "I64", blockSize: 1, blockBytes: 8 },
  { id: 28, name: "F64", blockSize: 1, blockBytes: 8 },
  { id: 29, name: "IQ1_M", blockSize: 256, blockBytes: 56 },
  { id: 30, name: "BF16", blockSize: 1, blockBytes: 2 },
  { id: 34, name: "TQ1_0", blockSize: 256, blockBytes: 54 },
  { id: 35, name: "TQ2_0", blockSize: 256, blockBytes: 66 },
  { id: 39, name: "MXFP4", blockSize: 32, blockBytes: 17 }
]
const ggmlTypeById = new Map(ggmlTypes.map((t) => [t.id, t]))

/** The ggml type id of each dtype sirius-ts loads. */
export const ggmlTypeId: { readonly [D in DType]: number } = { F32: 0, F16: 1, BF16: 30, Q8_0: 8, Q4_0: 2, Q4_K: 12, Q6_K: 14 }
const dtypeByGgmlId = new Map<number, DType>(Object.entries(ggmlTypeId).map(([d, id]) => [id, d as DType]))

// ---------------------------------------------------------------------------------------------------
// Values, header, errors

/** A metadata value type (GGUF value type codes 0..12, arrays excluded). */
export type GgufScalarType = "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "f32" | "bool" | "string" | "u64" | "i64" | "f64"

/** One metadata value. 64-bit integers are bigints; every other number is a JS number. */
export type GgufValue =
  | { readonly type: "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "f32" | "f64"; readonly value: number }
  | { readonly type: "u64" | "i64"; readonly value: bigint }
  | { readonly type: "bool"; readonly value: boolean }
  | { readonly type: "string"; readonly value: string }
  | {
      readonly type: "array"
      readonly elementType: GgufScalarType
      readonly value: ReadonlyArray<number> | ReadonlyArray<bigint> | ReadonlyArray<boolean> | ReadonlyArray<string>
    }

/** Constructors for metadata values (writers and tests). */
export const gv = {
  u32: (value: number): GgufValue => ({ type: "u32", value }),
  i32: (value: number): GgufValue => ({ type: "i32", value }),
  f32: (value: number): GgufValue => ({ type: "f32", value }),
  u64: (value: bigint): GgufValue => ({ type: "u64", value }),
  bool: (value: boolean): GgufValue => ({ type: "bool", value }),
  string: (value: string): GgufValue => ({ type: "string", value }),
  strings: (value: ReadonlyArray<string>): GgufValue => ({ type: "array", elementType: "string", value }),
  f32s: (value: ReadonlyArray<number>): GgufValue => ({ type: "array", elementType: "f32", value }),
  i32s: (value: ReadonlyArray<number>): GgufValue => ({ type: "array", elementType: "i32", value })
} as const

const typeCodes: ReadonlyArray<GgufScalarType | "array"> = ["u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"]
const scalarBytes: { readonly [T in GgufScalarType]: number } = { u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, bool: 1, string: 8, u64: 8, i64: 8, f64: 8 }

/**
 * A GGUF file is missing, damaged or not what sirius-ts can load.
 *
 * `field` names the header field or metadata key at fault (`"version"`, `"tensor_count"`,
 * `"llama.block_count"`, `"tensor_infos[3].dims"`), `tensor` the tensor; either is `""` when it does
 * not apply. `message` starts with the file name.
 */
export class GgufError extends Schema.TaggedError<GgufError>()("GgufError", {
  file: Schema.String,
  field: Schema.String,
  tensor: Schema.String,
  message: Schema.String
}) {}

export const ggufError = (file: string, field: string, tensor: string, message: string): GgufError =>
  new GgufError({ file, field, tensor, message: `${file}: ${field !== "" ? `${field}: ` : tensor !== "" ? `tensor "${tensor}": ` : ""}${message}` })

/** One tensor as the header describes it. */
export interface GgufTensorInfo {
  readonly name: string
  /** ggml type id and name (any ggml type, loadable or not). */
  readonly ggmlType: number
  readonly typeName: string
  /** The dtype sirius-ts loads it as; undefined for types it cannot run (Q5_K, IQ*, ...). */
  readonly dtype: DType | undefined
  /** ggml dims, innermost first, as stored. */
  readonly dims: ReadonlyArray<number>
  /** Row-major shape (dims reversed): an HF `[out, in]` matrix. */
  readonly shape: ReadonlyArray<number>
  /** Offset from the start of the data section. */
  readonly offset: number
  readonly byteLength: number
}

/** A validated header: every tensor's bytes lie inside the file and overlap no other tensor. */
export interface GgufHeader {
  readonly file: string
  readonly fileSize: number
  readonly version: 2 | 3
  readonly alignment: number
  /** In file order. */
  readonly metadata: ReadonlyMap<string, GgufValue>
  /** In file order. */
  readonly tensors: ReadonlyArray<GgufTensorInfo>
  /** Absolute file offset of the data section. */
  readonly dataOffset: number
}

export const GGUF_MAGIC = 0x46554747 // "GGUF" read as a little-endian u32
const DEFAULT_ALIGNMENT = 32
/** ggml's GGML_MAX_NAME: tensor names are at most 63 bytes. */
const MAX_NAME_BYTES = 63
const MAX_DIMS = 4

// ---------------------------------------------------------------------------------------------------
// Reading

/** Thrown inside the synchronous parser only; turned into a GgufError at its boundary. */
class ParseFailure {
  constructor(
    readonly field: string,
    readonly tensor: string,
    readonly message: string
  ) {}
}

const errorText = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/** Header bytes through a bounded window of positional reads. */
class Cursor {
  private buf = new Uint8Array(0)
  private view = new DataView(this.buf.buffer)
  private bufStart = 0
  pos = 0
  private static readonly CHUNK = 1 << 20
  private readonly decoder = new TextDecoder("utf-8", { fatal: true })

  constructor(
    private readonly fd: number,
    readonly size: number
  ) {}

  get remaining(): number {
    return this.size - this.pos
  }

  /** Make n bytes at the cursor available; returns their offset in `buf` and advances. */
  private take(n: number, field: string, tensor: string): number {
    if (n > this.remaining)
      throw new ParseFailure(field, tensor, `file ends after ${this.size} bytes, ${n} more needed at offset ${this.pos} (truncated?)`)
    if (this.pos < this.bufStart || this.pos + n > this.bufStart + this.buf.length) {
      // n ≤ remaining: never more than the rest of the file.
      const length = Math.min(this.remaining, Math.max(n, Cursor.CHUNK))
      const buf = new Uint8Array(length)
      let done = 0
      while (done < length) {
        let read: number
        try {
          read = readSync(this.fd, buf, done, length - done, this.pos + done)
        } catch (cause) {
          throw new ParseFailure(field, tensor, `cannot read at offset ${this.pos + done} (${errorText(cause)})`)
        }
        if (read === 0) throw new ParseFailure(field, tensor, `unexpected end of file at offset ${this.pos + done}`)
        done += read
      }
      this.buf = buf
      this.view = new DataView(buf.buffer)
      this.bufStart = this.pos
    }
    const at = this.pos - this.bufStart
    this.pos += n
    return at
  }

  // take() may replace the window: call it before reading this.buf / this.view.
  private at = (n: number, f: string, t: string): number => this.take(n, f, t)
  u8 = (f: string, t = ""): number => {
    const at = this.at(1, f, t)
    return this.buf[at]!
  }
  i8 = (f: string, t = ""): number => {
    const at = this.at(1, f, t)
    return this.view.getInt8(at)
  }
  u16 = (f: string, t = ""): number => {
    const at = this.at(2, f, t)
    return this.view.getUint16(at, true)
  }
  i16 = (f: string, t = ""): number => {
    const at = this.at(2, f, t)
    return this.view.getInt16(at, true)
  }
  u32 = (f: string, t = ""): number => {
    const at = this.at(4, f, t)
    return this.view.getUint32(at, true)
  }
  i32 = (f: string, t = ""): number => {
    const at = this.at(4, f, t)
    return this.view.getInt32(at, true)
  }
  f32 = (f: string, t = ""): number => {
    const at = this.at(4, f, t)
    return this.view.getFloat32(at, true)
  }
  f64 = (f: string, t = ""): number => {
    const at = this.at(8, f, t)
    return this.view.getFloat64(at, true)
  }
  u64 = (f: string, t = ""): bigint => {
    const at = this.at(8, f, t)
    return this.view.getBigUint64(at, true)
  }
  i64 = (f: string, t = ""): bigint => {
    const at = this.at(8, f, t)
    return this.view.getBigInt64(at, true)
  }

  /** A u64 count/size/offset as a number, failing when beyond `max` (checked on the bigint). */
  bounded(f: string, t: string, max: number, what: (n: bigint) => string): number {
    const n = this.u64(f, t)
    if (n > BigInt(max)) throw new ParseFailure(f, t, what(n))
    return Number(n)
  }

  string(f: string, t = ""): string {
    const length = this.bounded(f, t, this.remaining - 8, (n) => `string length ${n} exceeds the ${Math.max(0, this.remaining - 8)} bytes left in the file (truncated?)`)
    const at = this.take(length, f, t)
    try {
      return this.decoder.decode(this.buf.subarray(at, at + length))
    } catch {
      throw new ParseFailure(f, t, `string of ${length} bytes is not valid UTF-8`)
    }
  }

  bool(f: string, t = ""): boolean {
    const b = this.u8(f, t)
    if (b > 1) throw new ParseFailure(f, t, `bool must be 0 or 1 (got ${b})`)
    return b === 1
  }
}

const readScalar = (c: Cursor, type: GgufScalarType, field: string): number | bigint | boolean | string => {
  switch (type) {
    case "u8":
      return c.u8(field)
    case "i8":
      return c.i8(field)
    case "u16":
      return c.u16(field)
    case "i16":
      return c.i16(field)
    case "u32":
      return c.u32(field)
    case "i32":
      return c.i32(field)
    case "f32":
      return c.f32(field)
    case "f64":
      return c.f64(field)
    case "u64":
      return c.u64(field)
    case "i64":
      return c.i64(field)
    case "bool":
      return c.bool(field)
    case "string":
      return c.string(field)
  }
}

const valueType = (c: Cursor, field: string): GgufScalarType | "array" => {
  const code = c.u32(field)
  const type = typeCodes[code]
  if (type === undefined) throw new ParseFailure(field, "", `unknown value type ${code} (known: 0..12)`)
  return type
}

const readValue = (c: Cursor, key: string): GgufValue => {
  const type = valueType(c, key)
  if (type !== "array") return { type, value: readScalar(c, type, key) } as GgufValue
  const elementType = valueType(c, key)
  if (elementType === "array") throw new ParseFailure(key, "", "arrays of arrays are not supported")
  // Each element needs at least scalarBytes bytes (a string its 8-byte length): bound n by the file.
  const min = scalarBytes[elementType]
  const count = c.bounded(key, "", Math.floor(c.remaining / min), (n) => `array of ${n} ${elementType} needs at least ${n * BigInt(min)} bytes, the file has ${c.remaining} left (truncated?)`)
  const value: Array<number | bigint | boolean | string> = new Array(count)
  for (let i = 0; i < count; i++) value[i] = readScalar(c, elementType, key)
  return { type: "array", elementType, value } as GgufValue
}

const isPowerOfTwo = (n: number): boolean => n > 0 && (n & (n - 1)) === 0

const parseHeader = (fd: number, file: string, fileSize: number): GgufHeader => {
  const c = new Cursor(fd, fileSize)
  const magic = c.u32("magic")
  if (magic !== GGUF_MAGIC) {
    const text = [0, 8, 16, 24].map((s) => (magic >>> s) & 0xff)
    const printable = text.every((b) => b >= 0x20 && b < 0x7f) ? ` ("${String.fromCharCode(...text)}")` : ""
    throw new ParseFailure("magic", "", `not a GGUF file: magic 0x${magic.toString(16).padStart(8, "0")}${printable}, expected "GGUF"`)
  }
  const rawVersion = c.u32("version")
  const swapped = ((rawVersion & 0xff) << 24) | ((rawVersion & 0xff00) << 8) | ((rawVersion >>> 8) & 0xff00) | (rawVersion >>> 24)
  if (rawVersion === 1) throw new ParseFailure("version", "", "GGUF version 1 is not supported (versions 2 and 3 are)")
  if (rawVersion !== 2 && rawVersion !== 3)
    throw new ParseFailure(
      "version",
      "",
      swapped >= 1 && swapped <= 3 ? `big-endian GGUF (version ${swapped} byte-swapped) is not supported` : `unknown GGUF version ${rawVersion} (supported: 2, 3)`
    )
  const version = rawVersion
  // Bounds from the smallest possible entries: a tensor info is ≥ 25 bytes (8-byte name length,
  // ≥ 1 name byte, n_dims, type, offset), a metadata pair ≥ 14 (key length, ≥ 1 key byte, type, ≥ 1 byte).
  const tensorCount = c.bounded("tensor_count", "", Math.floor(Math.max(0, c.remaining - 8) / 25), (n) => `${n} tensors cannot fit in a ${fileSize}-byte file (truncated?)`)
  const kvCount = c.bounded("metadata_kv_count", "", Math.floor(c.remaining / 14), (n) => `${n} metadata pairs cannot fit in a ${fileSize}-byte file (truncated?)`)

  const metadata = new Map<string, GgufValue>()
  for (let i = 0; i < kvCount; i++) {
    const key = c.string(`metadata[${i}].key`)
    if (key.length === 0) throw new ParseFailure(`metadata[${i}].key`, "", "empty key")
    if (metadata.has(key)) throw new ParseFailure(key, "", "duplicate metadata key")
    metadata.set(key, readValue(c, key))
  }

  let alignment = DEFAULT_ALIGNMENT
  const align = metadata.get("general.alignment")
  if (align !== undefined) {
    if (align.type !== "u32") throw new ParseFailure("general.alignment", "", `must be a u32 (got ${align.type})`)
    if (!isPowerOfTwo(align.value)) throw new ParseFailure("general.alignment", "", `must be a power of two (got ${align.value})`)
    alignment = align.value
  }

  const names = new Set<string>()
  const infos: Array<Omit<GgufTensorInfo, "byteLength"> & { readonly bytes: bigint }> = []
  for (let i = 0; i < tensorCount; i++) {
    const at = `tensor_infos[${i}]`
    const name = c.string(`${at}.name`)
    if (name.length === 0) throw new ParseFailure(`${at}.name`, "", "empty tensor name")
    const nameBytes = new TextEncoder().encode(name).length
    if (nameBytes > MAX_NAME_BYTES) throw new ParseFailure(`${at}.name`, name, `name is ${nameBytes} bytes, ggml allows at most ${MAX_NAME_BYTES}`)
    if (names.has(name)) throw new ParseFailure(`${at}.name`, name, "duplicate tensor name")
    names.add(name)
    const nDims = c.u32(`${at}.n_dims`, name)
    if (nDims > MAX_DIMS) throw new ParseFailure(`${at}.n_dims`, name, `${nDims} dimensions, ggml allows at most ${MAX_DIMS}`)
    const dims: Array<number> = []
    let count = 1n
    for (let d = 0; d < nDims; d++) {
      const dim = c.u64(`${at}.dims`, name)
      if (dim > BigInt(Number.MAX_SAFE_INTEGER)) throw new ParseFailure(`${at}.dims`, name, `dimension ${d} is ${dim}`)
      count *= dim
      dims.push(Number(dim))
    }
    const typeId = c.u32(`${at}.type`, name)
    const type = ggmlTypeById.get(typeId)
    if (type === undefined) throw new ParseFailure(`${at}.type`, name, `unknown ggml type ${typeId}`)
    const inner = dims[0] ?? 1
    if (inner % type.blockSize !== 0)
      throw new ParseFailure(`${at}.dims`, name, `innermost dimension ${inner} is not a multiple of ${type.name}'s block size ${type.blockSize}`)
    const offset = c.bounded(`${at}.offset`, name, fileSize, (n) => `offset ${n} lies beyond the ${fileSize}-byte file`)
    if (offset % alignment !== 0) throw new ParseFailure(`${at}.offset`, name, `offset ${offset} is not a multiple of the alignment ${alignment}`)
    infos.push({
      name,
      ggmlType: typeId,
      typeName: type.name,
      dtype: dtypeByGgmlId.get(typeId),
      dims,
      shape: [...dims].reverse(),
      offset,
      bytes: (count / BigInt(type.blockSize)) * BigInt(type.blockBytes)
    })
  }

  const dataOffset = Math.ceil(c.pos / alignment) * alignment
  const tensors: Array<GgufTensorInfo> = []
  for (const info of infos) {
    const end = BigInt(dataOffset) + BigInt(info.offset) + info.bytes
    if (end > BigInt(fileSize))
      throw new ParseFailure(
        "",
        info.name,
        `${info.typeName} [${info.dims.join(", ")}] needs ${info.bytes} bytes at data offset ${info.offset}, ending at ${end}, beyond the ${fileSize}-byte file (truncated?)`
      )
    const { bytes, ...rest } = info
    tensors.push({ ...rest, byteLength: Number(bytes) })
  }
  const byOffset = tensors.filter((t) => t.byteLength > 0).sort((a, b) => a.offset - b.offset)
  for (let i = 1; i < byOffset.length; i++) {
    const prev = byOffset[i - 1]!
    const cur = byOffset[i]!
    if (cur.offset < prev.offset + prev.byteLength)
      throw new ParseFailure("", cur.name, `data [${cur.offset}, ${cur.offset + cur.byteLength}) overlaps tensor "${prev.name}" [${prev.offset}, ${prev.offset + prev.byteLength})`)
  }
  return { file, fileSize, version, alignment, metadata, tensors, dataOffset }
}

const withFile = <A>(file: string, use: (fd: number, size: number) => Effect.Effect<A, GgufError>): Effect.Effect<A, GgufError> =>
  Effect.acquireUseRelease(
    Effect.try({
      try: () => {
        const fd = openSync(file, "r")
        try {
          const stat = fstatSync(fd)
          if (!stat.isFile()) throw new Error("not a regular file")
          return { fd, size: stat.size }
        } catch (error) {
          closeSync(fd)
          throw error
        }
      },
      catch: (cause) => ggufError(file, "", "", `cannot open (${errorText(cause)})`)
    }),
    ({ fd, size }) => use(fd, size),
    ({ fd }) => Effect.sync(() => closeSync(fd))
  )

/** Run the synchronous parser: its ParseFailures become GgufErrors; anything else stays a defect. */
const parse = (fd: number, file: string, size: number): Effect.Effect<GgufHeader, GgufError> =>
  Effect.suspend(() => {
    try {
      return Effect.succeed(parseHeader(fd, file, size))
    } catch (e) {
      if (e instanceof ParseFailure) return Effect.fail(ggufError(file, e.field, e.tensor, e.message))
      throw e
    }
  })

/**
 * Read and validate a GGUF header (metadata and tensor infos) without reading tensor data.
 *
 * **When to use**: inspecting a file, or before loading it (GgufCheckpoint reads the header first).
 *
 * @category reading
 */
export const readGgufHeader = (file: string): Effect.Effect<GgufHeader, GgufError> => withFile(file, (fd, size) => parse(fd, file, size))

const readTensor = (fd: number, header: GgufHeader, info: GgufTensorInfo): Effect.Effect<RawTensor, GgufError> => {
  const { file } = header
  const dtype = info.dtype
  if (dtype === undefined)
    return Effect.fail(ggufError(file, "", info.name, `type ${info.typeName} is not supported (sirius-ts loads F32, F16, BF16, Q8_0, Q4_0, Q4_K and Q6_K)`))
  return Effect.try({
    try: () => {
      const data = new Uint8Array(info.byteLength)
      const at = header.dataOffset + info.offset
      let done = 0
      while (done < data.length) {
        const n = readSync(fd, data, done, Math.min(data.length - done, 1 << 30), at + done)
        if (n === 0) throw new Error(`unexpected end of file at offset ${at + done}`)
        done += n
      }
      return { name: info.name, dtype, shape: info.shape, data } satisfies RawTensor
    },
    catch: (cause) => ggufError(file, "", info.name, `cannot read ${info.byteLength} bytes (${errorText(cause)})`)
  })
}

/**
 * Read a GGUF file's header and the tensors `wanted` selects (default: all), each into its own buffer
 * with one positional read. Tensors are named as in the file and shaped row-major (ggml dims reversed);
 * their bytes are untouched (no Q/K un-permutation: GgufCheckpoint does that).
 *
 * **Details**: a wanted tensor of a type sirius-ts cannot run (Q5_K, IQ4_XS, ...) is a GgufError naming
 * it; unwanted ones are never read.
 *
 * @category reading
 */
export const readGguf = (
  file: string,
  wanted: (name: string) => boolean = () => true
): Effect.Effect<{ readonly header: GgufHeader; readonly tensors: ReadonlyMap<string, RawTensor> }, GgufError> =>
  withFile(file, (fd, size) =>
    Effect.gen(function* () {
      const header = yield* parse(fd, file, size)
      const tensors = new Map<string, RawTensor>()
      for (const info of header.tensors) if (wanted(info.name)) tensors.set(info.name, yield* readTensor(fd, header, info))
      return { header, tensors: tensors as ReadonlyMap<string, RawTensor> }
    })
  )

/**
 * Read the tensors `wanted` selects from a file whose header was read already (readGgufHeader), each
 * into its own buffer (`onTensor` sees each, for progress). Fails with a GgufError if the file changed size since, or for a wanted tensor of
 * a type sirius-ts cannot run.
 *
 * @category reading
 */
export const readGgufTensors = (
  header: GgufHeader,
  wanted: (name: string) => boolean,
  onTensor?: (tensor: RawTensor) => void
): Effect.Effect<ReadonlyMap<string, RawTensor>, GgufError> =>
  withFile(header.file, (fd, size) =>
    Effect.gen(function* () {
      if (size !== header.fileSize) return yield* ggufError(header.file, "", "", `file changed size since its header was read (${header.fileSize} → ${size} bytes)`)
      const tensors = new Map<string, RawTensor>()
      for (const info of header.tensors) {
        if (!wanted(info.name)) continue
        const tensor = yield* readTensor(fd, header, info)
        tensors.set(info.name, tensor)
        onTensor?.(tensor)
      }
      return tensors as ReadonlyMap<string, RawTensor>
    })
  )

// ---------------------------------------------------------------------------------------------------
// Typed metadata access (errors name the key)

const describeValue = (v: GgufValue): string => (v.type === "array" ? `array of ${v.value.length} ${v.elementType}` : v.type)

/**
 * A non-negative integer key (any integer type: the spec's counts are u32 "by convention", writers
 * differ), at most `max`. `undefined` when absent.
 *
 * @category metadata
 */
export const metaUint = (header: GgufHeader, key: string, max = Number.MAX_SAFE_INTEGER): Effect.Effect<number | undefined, GgufError> => {
  const v = header.metadata.get(key)
  if (v === undefined) return Effect.succeed(undefined)
  const fail = (message: string) => Effect.fail(ggufError(header.file, key, "", message))
  if (v.type === "u64" || v.type === "i64") return v.value < 0n || v.value > BigInt(max) ? fail(`must be an integer in [0, ${max}] (got ${v.value})`) : Effect.succeed(Number(v.value))
  if (v.type === "u8" || v.type === "i8" || v.type === "u16" || v.type === "i16" || v.type === "u32" || v.type === "i32")
    return v.value < 0 || v.value > max ? fail(`must be an integer in [0, ${max}] (got ${v.value})`) : Effect.succeed(v.value)
  return fail(`must be an unsigned integer (got ${describeValue(v)})`)
}

/** A float key (f32 or f64; integers accepted too). `undefined` when absent. @category metadata */
export const metaFloat = (header: GgufHeader, key: string): Effect.Effect<number | undefined, GgufError> => {
  const v = header.metadata.get(key)
  if (v === undefined) return Effect.succeed(undefined)
  if (v.type === "f32" || v.type === "f64" || v.type === "u8" || v.type === "i8" || v.type === "u16" || v.type === "i16" || v.type === "u32" || v.type === "i32")
    return Number.isFinite(v.value) ? Effect.succeed(v.value) : Effect.fail(ggufError(header.file, key, "", `must be finite (got ${v.value})`))
  return Effect.fail(ggufError(header.file, key, "", `must be a number (got ${describeValue(v)})`))
}

/** A string key. `undefined` when absent. @category metadata */
export const metaString = (header: GgufHeader, key: string): Effect.Effect<string | undefined, GgufError> => {
  const v = header.metadata.get(key)
  if (v === undefined) return Effect.succeed(undefined)
  return v.type === "string" ? Effect.succeed(v.value) : Effect.fail(ggufError(header.file, key, "", `must be a string (got ${describeValue(v)})`))
}

/** A bool key. `undefined` when absent. @category metadata */
export const metaBool = (header: GgufHeader, key: string): Effect.Effect<boolean | undefined, GgufError> => {
  const v = header.metadata.get(key)
  if (v === undefined) return Effect.succeed(undefined)
  return v.type === "bool" ? Effect.succeed(v.value) : Effect.fail(ggufError(header.file, key, "", `must be a bool (got ${describeValue(v)})`))
}

/** A string-array key. `undefined` when absent. @category metadata */
export const metaStrings = (header: GgufHeader, key: string): Effect.Effect<ReadonlyArray<string> | undefined, GgufError> => {
  const v = header.metadata.get(key)
  if (v === undefined) return Effect.succeed(undefined)
  return v.type === "array" && v.elementType === "string"
    ? Effect.succeed(v.value as ReadonlyArray<string>)
    : Effect.fail(ggufError(header.file, key, "", `must be an array of strings (got ${describeValue(v)})`))
}

/** A numeric-array key (any non-64-bit number type). `undefined` when absent. @category metadata */
export const metaNumbers = (header: GgufHeader, key: string): Effect.Effect<ReadonlyArray<number> | undefined, GgufError> => {
  const v = header.metadata.get(key)
  if (v === undefined) return Effect.succeed(undefined)
  return v.type === "array" && v.elementType !== "string" && v.elementType !== "bool" && v.elementType !== "u64" && v.elementType !== "i64"
    ? Effect.succeed(v.value as ReadonlyArray<number>)
    : Effect.fail(ggufError(header.file, key, "", `must be an array of numbers (got ${describeValue(v)})`))
}

// ---------------------------------------------------------------------------------------------------
// Writing: vocabularies

/** A SentencePiece-style (`tokenizer.ggml.model = "llama"`) vocabulary, §6.3. */
export interface GgufVocab {
  readonly model?: "llama"
  readonly tokens: ReadonlyArray<string>
  readonly scores: ReadonlyArray<number>
  /** 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte. */
  readonly tokenTypes: ReadonlyArray<number>
  readonly bosTokenId: number
  readonly eosTokenId: number
  readonly unknownTokenId: number
  readonly eotTokenId?: number
  readonly addBosToken: boolean
  readonly addEosToken: boolean
  /** `tokenizer.ggml.add_space_prefix` (llama.cpp's default when absent: true). */
  readonly addSpacePrefix?: boolean
}

/** A byte-level BPE (`tokenizer.ggml.model = "gpt2"`) vocabulary: Llama 3, Qwen2. */
export interface GgufBpeVocab {
  readonly model: "gpt2"
  /** `tokenizer.ggml.pre`: the pre-tokenizer, e.g. "llama-bpe" (Llama 3) or "qwen2". */
  readonly pre: string
  /** Byte-level tokens (GPT-2's byte→unicode mapping), special tokens included. */
  readonly tokens: ReadonlyArray<string>
  /** 1 normal, 3 control, 4 user-defined. */
  readonly tokenTypes: ReadonlyArray<number>
  /** "left right" pairs in rank order. */
  readonly merges: ReadonlyArray<string>
  readonly bosTokenId?: number
  readonly eosTokenId: number
  readonly eotTokenId?: number
  readonly paddingTokenId?: number
  readonly addBosToken: boolean
  readonly addEosToken: boolean
}

/**
 * The vocabulary for random models: `<unk>` (0), `<s>` (1), `</s>` (2), the byte tokens
 * `<0x00>`..`<0xFF>` (ids 3..258, type 6), then normal filler tokens `▁t259`, `▁t260`, … up to
 * `vocabSize`. Scores are −id for normal tokens and 0 otherwise (§7.1).
 *
 * Details: needs `vocabSize` ≥ 259 (3 specials + 256 bytes). With a truncated byte table (vocab 64 or
 * 200) llama.cpp loads the file and then aborts the whole process (`std::out_of_range` from a byte-token
 * lookup; measured with node-llama-cpp 3.21.1), so smaller sizes are refused here instead. Tests use
 * vocab ≥ 300; vocab 259 and 260 were checked to load and run.
 *
 * @category constructors
 */
export const defaultVocab = (vocabSize: number): GgufVocab => {
  if (!Number.isInteger(vocabSize) || vocabSize < 259) {
    throw new GgufWriteError(`defaultVocab: vocabSize ${vocabSize} < 259 cannot hold <unk>, <s>, </s> and the 256 byte tokens llama.cpp needs`)
  }
  const tokens: Array<string> = ["<unk>", "<s>", "</s>"]
  const tokenTypes: Array<number> = [2, 3, 3]
  const scores: Array<number> = [0, 0, 0]
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`)
    tokenTypes.push(6)
    scores.push(0)
  }
  while (tokens.length < vocabSize) {
    const id = tokens.length
    tokens.push(`\u2581t${id}`)
    tokenTypes.push(1)
    scores.push(-id)
  }
  return { tokens, scores, tokenTypes, bosTokenId: 1, eosTokenId: 2, unknownTokenId: 0, addBosToken: true, addEosToken: false }
}

const vocabMetadata = (vocab: GgufVocab | GgufBpeVocab): Array<readonly [string, GgufValue]> => {
  const optional = (key: string, id: number | undefined): Array<readonly [string, GgufValue]> => (id === undefined ? [] : [[key, gv.u32(id)]])
  if (vocab.model === "gpt2")
    return [
      ["tokenizer.ggml.model", gv.string("gpt2")],
      ["tokenizer.ggml.pre", gv.string(vocab.pre)],
      ["tokenizer.ggml.tokens", gv.strings(vocab.tokens)],
      ["tokenizer.ggml.token_type", gv.i32s(vocab.tokenTypes)],
      ["tokenizer.ggml.merges", gv.strings(vocab.merges)],
      ...optional("tokenizer.ggml.bos_token_id", vocab.bosTokenId),
      ["tokenizer.ggml.eos_token_id", gv.u32(vocab.eosTokenId)],
      ...optional("tokenizer.ggml.eot_token_id", vocab.eotTokenId),
      ...optional("tokenizer.ggml.padding_token_id", vocab.paddingTokenId),
      ["tokenizer.ggml.add_bos_token", gv.bool(vocab.addBosToken)],
      ["tokenizer.ggml.add_eos_token", gv.bool(vocab.addEosToken)]
    ]
  return [
    ["tokenizer.ggml.model", gv.string("llama")],
    ["tokenizer.ggml.tokens", gv.strings(vocab.tokens)],
    ["tokenizer.ggml.scores", gv.f32s(vocab.scores)],
    ["tokenizer.ggml.token_type", gv.i32s(vocab.tokenTypes)],
    ["tokenizer.ggml.bos_token_id", gv.u32(vocab.bosTokenId)],
    ["tokenizer.ggml.eos_token_id", gv.u32(vocab.eosTokenId)],
    ["tokenizer.ggml.unknown_token_id", gv.u32(vocab.unknownTokenId)],
    ...optional("tokenizer.ggml.eot_token_id", vocab.eotTokenId),
    ["tokenizer.ggml.add_bos_token", gv.bool(vocab.addBosToken)],
    ["tokenizer.ggml.add_eos_token", gv.bool(vocab.addEosToken)],
    ...(vocab.addSpacePrefix === undefined ? [] : [["tokenizer.ggml.add_space_prefix", gv.bool(vocab.addSpacePrefix)] as const])
  ]
}

// ---------------------------------------------------------------------------------------------------
// Writing: names, permutation, rope factors

/** Thrown for inputs the writer cannot express (bad vocab size, unknown tensor name, I/O failure). */
export class GgufWriteError extends Error {
  override readonly name = "GgufWriteError"
}

/**
 * HF tensor name → GGUF tensor name (§6.4, the table in Weights.ts), e.g.
 * `model.layers.3.self_attn.o_proj.weight` → `blk.3.attn_output.weight`.
 *
 * @category conversions
 */
export const ggufTensorName = (hfName: string): string => {
  const name = hfToGgufName(hfName)
  if (name === undefined) throw new GgufWriteError(`no GGUF name for tensor ${hfName}`)
  return name
}

/**
 * The HF→GGUF Q/K row permutation (§3): `ggufRow[h·hd + 2j + t] = hfRow[h·hd + t·(hd/2) + j]`, for
 * `n` heads of `hd` rows each (n = num_attention_heads for Q, num_key_value_heads for K). Works on raw
 * row bytes, so any dtype, quantized ones included (a row is whole blocks): `rowBytes` =
 * Tensor.rowBytes(dtype, in).
 *
 * @category conversions
 */
export const permuteQkRows = (data: Uint8Array, nHeads: number, headDim: number, rowBytes: number): Uint8Array =>
  moveQkRows(data, nHeads, headDim, rowBytes, false)

/** The inverse of permuteQkRows (GGUF → HF): `hfRow[h·hd + t·(hd/2) + j] = ggufRow[h·hd + 2j + t]`. @category conversions */
export const unpermuteQkRows = (data: Uint8Array, nHeads: number, headDim: number, rowBytes: number): Uint8Array =>
  moveQkRows(data, nHeads, headDim, rowBytes, true)

const moveQkRows = (data: Uint8Array, nHeads: number, headDim: number, rowBytes: number, inverse: boolean): Uint8Array => {
  const out = new Uint8Array(nHeads * headDim * rowBytes)
  const half = headDim / 2
  for (let h = 0; h < nHeads; h++)
    for (let j = 0; j < half; j++)
      for (let t = 0; t < 2; t++) {
        const hf = (h * headDim + t * half + j) * rowBytes
        const gguf = (h * headDim + 2 * j + t) * rowBytes
        const [src, dst] = inverse ? [gguf, hf] : [hf, gguf]
        out.set(data.subarray(src, src + rowBytes), dst)
      }
  return out
}

/**
 * llama.cpp's `rope_freqs.weight` for Llama 3 RoPE scaling: per frequency i < head_dim/2, the divisor
 * invFreq_orig / invFreq_scaled, computed as llama.cpp's converter does (§1): 1 for wavelengths
 * below oldCtx/highFreqFactor, `factor` above oldCtx/lowFreqFactor, and 1/((1−smooth)/factor + smooth)
 * in between. The base frequencies are computed in f32, like the converter's torch code. Per-frequency
 * factors read from a GGUF are returned as they are. `undefined` when the config has no rope scaling.
 *
 * @category conversions
 */
export const ropeFreqFactors = (config: LlamaConfig): Float32Array | undefined => {
  const sc = config.ropeScaling
  if (sc === undefined) return undefined
  if (sc.ropeType === "freq_factors") return Float32Array.from(sc.factors)
  const d = config.headDim
  const lowWavelen = sc.originalMaxPositionEmbeddings / sc.lowFreqFactor
  const highWavelen = sc.originalMaxPositionEmbeddings / sc.highFreqFactor
  const out = new Float32Array(d / 2)
  for (let i = 0; i < d / 2; i++) {
    const freq = Math.fround(1 / Math.fround(Math.fround(config.ropeTheta) ** Math.fround((2 * i) / d)))
    const wavelen = (2 * Math.PI) / freq
    if (wavelen < highWavelen) out[i] = 1
    else if (wavelen > lowWavelen) out[i] = sc.factor
    else {
      const smooth = (sc.originalMaxPositionEmbeddings / wavelen - sc.lowFreqFactor) / (sc.highFreqFactor - sc.lowFreqFactor)
      out[i] = 1 / ((1 - smooth) / sc.factor + smooth)
    }
  }
  return out
}

// ---------------------------------------------------------------------------------------------------
// Writing: bytes

/** A growable little-endian byte buffer for the header (metadata and tensor infos). */
class ByteWriter {
  private buf = new Uint8Array(1 << 16)
  private view = new DataView(this.buf.buffer)
  length = 0
  private readonly encoder = new TextEncoder()
  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < this.length + n) size *= 2
    const next = new Uint8Array(size)
    next.set(this.buf.subarray(0, this.length))
    this.buf = next
    this.view = new DataView(next.buffer)
  }
  private put(n: number, write: (view: DataView, at: number) => void): void {
    this.ensure(n)
    write(this.view, this.length)
    this.length += n
  }
  u8 = (v: number) => this.put(1, (w, at) => w.setUint8(at, v))
  i8 = (v: number) => this.put(1, (w, at) => w.setInt8(at, v))
  u16 = (v: number) => this.put(2, (w, at) => w.setUint16(at, v, true))
  i16 = (v: number) => this.put(2, (w, at) => w.setInt16(at, v, true))
  u32 = (v: number) => this.put(4, (w, at) => w.setUint32(at, v, true))
  i32 = (v: number) => this.put(4, (w, at) => w.setInt32(at, v, true))
  f32 = (v: number) => this.put(4, (w, at) => w.setFloat32(at, v, true))
  f64 = (v: number) => this.put(8, (w, at) => w.setFloat64(at, v, true))
  u64 = (v: bigint | number) => this.put(8, (w, at) => w.setBigUint64(at, BigInt(v), true))
  i64 = (v: bigint) => this.put(8, (w, at) => w.setBigInt64(at, v, true))
  bool = (v: boolean) => this.u8(v ? 1 : 0)
  string(s: string): void {
    const bytes = this.encoder.encode(s)
    this.u64(bytes.length)
    this.ensure(bytes.length)
    this.buf.set(bytes, this.length)
    this.length += bytes.length
  }
  zeros(n: number): void {
    this.ensure(n)
    this.buf.fill(0, this.length, this.length + n)
    this.length += n
  }
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.length)
  }
}

const writeScalar = (w: ByteWriter, type: GgufScalarType, v: number | bigint | boolean | string): void => {
  switch (type) {
    case "u8":
    case "i8":
    case "u16":
    case "i16":
    case "u32":
    case "i32":
    case "f32":
    case "f64":
      return w[type](v as number)
    case "u64":
      return w.u64(v as bigint)
    case "i64":
      return w.i64(v as bigint)
    case "bool":
      return w.bool(v as boolean)
    case "string":
      return w.string(v as string)
  }
}

/** Encode one metadata pair (key, type code, value) as GGUF bytes. */
const writeMeta = (w: ByteWriter, key: string, v: GgufValue): void => {
  w.string(key)
  w.u32(typeCodes.indexOf(v.type))
  if (v.type !== "array") return writeScalar(w, v.type, v.value)
  w.u32(typeCodes.indexOf(v.elementType))
  w.u64(v.value.length)
  for (const x of v.value) writeScalar(w, v.elementType, x)
}

const roundUp = (n: number, a: number): number => Math.ceil(n / a) * a

const writeAll = (fd: number, bytes: Uint8Array): void => {
  let off = 0
  while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off)
}

/**
 * Write a GGUF v3 file from metadata and tensors, streaming each tensor's bytes (produced by its thunk,
 * written, then dropped). Tensor shapes are row-major (reversed to ggml order here); offsets are
 * aligned to `general.alignment` when present (default 32).
 *
 * **When to use**: tests that need hand-made or damaged files, and writers of other model kinds.
 * writeGguf builds the metadata and tensors of a model and calls it.
 *
 * @category writers
 */
export const writeGgufFile = (
  path: string,
  metadata: ReadonlyArray<readonly [string, GgufValue]>,
  tensors: ReadonlyArray<{ readonly name: string; readonly dtype: DType; readonly shape: ReadonlyArray<number>; readonly bytes: () => Uint8Array }>
): void => {
  const align = metadata.find(([k]) => k === "general.alignment")?.[1]
  const alignment = align?.type === "u32" ? align.value : DEFAULT_ALIGNMENT
  const w = new ByteWriter()
  w.u32(GGUF_MAGIC)
  w.u32(3)
  w.u64(tensors.length)
  w.u64(metadata.length)
  for (const [key, value] of metadata) writeMeta(w, key, value)
  let offset = 0
  for (const t of tensors) {
    w.string(t.name)
    w.u32(t.shape.length)
    for (let i = t.shape.length - 1; i >= 0; i--) w.u64(t.shape[i]!) // ggml order: innermost first
    w.u32(ggmlTypeId[t.dtype])
    w.u64(offset)
    offset += roundUp(tensorBytes(t.dtype, t.shape), alignment)
  }
  w.zeros(roundUp(w.length, alignment) - w.length)

  const fd = openSync(path, "w")
  try {
    writeAll(fd, w.bytes())
    const pad = new Uint8Array(alignment)
    for (const t of tensors) {
      const bytes = t.bytes()
      const expected = tensorBytes(t.dtype, t.shape)
      if (bytes.length !== expected) throw new GgufWriteError(`${t.name}: ${bytes.length} bytes, shape [${t.shape.join(", ")}] ${t.dtype} needs ${expected}`)
      writeAll(fd, bytes)
      const rest = roundUp(expected, alignment) - expected
      if (rest > 0) writeAll(fd, pad.subarray(0, rest))
    }
  } finally {
    closeSync(fd)
  }
}

// ---------------------------------------------------------------------------------------------------
// Writing: models

const ALIGNMENT = 32

/** llama_ftype of a file whose matrices are mostly `dtype` (informational for llama.cpp). */
const llamaFileType: { readonly [D in DType]: number } = { F32: 0, F16: 1, BF16: 32, Q4_0: 2, Q8_0: 7, Q4_K: 15, Q6_K: 18 }

export interface WriteGgufOptions {
  /**
   * Default: `defaultVocab(config.vocabSize)`. A Map writes those `tokenizer.*` keys verbatim (copying
   * another GGUF's tokenizer, e.g. in `sirius quantize`).
   */
  readonly vocab?: GgufVocab | GgufBpeVocab | ReadonlyMap<string, GgufValue>
  /**
   * Storage type of the 2-D tensors; norm weights, biases and `rope_freqs` are always F32. Default: the
   * dtype of `weights.embedTokens`. Tensors in another dtype are converted through f32 (exact when
   * widening; quantized types use Quant.quantize). A quantized type that a matrix's row length does not
   * fit falls back to Q8_0 (K-quants, rows of 32) or F16 (see the report).
   * Note that llama.cpp's CPU matmul rounds activations to the weight type's dot-product type (F16/BF16,
   * Q8_0, Q8_K), so an oracle that must match f32 arithmetic wants "F32" here, even for bf16 weights.
   */
  readonly fileType?: DType
  /** Per-tensor override of fileType (by GGUF name and row-major shape), e.g. Q6_K for attn_v in a Q4_K_M-like mix. */
  readonly tensorType?: (ggufName: string, shape: ReadonlyArray<number>) => DType | undefined
  /** `general.file_type` (llama_ftype). Default: from fileType (Q4_K → 15, "Q4_K_M"). */
  readonly llamaFileType?: number
  /** `tokenizer.chat_template`. */
  readonly chatTemplate?: string
  /** `general.name`. Default "sirius-ts". */
  readonly name?: string
}

export interface WriteGgufReport {
  /** Every tensor written, with its type and whether it fell back from the requested quantized type. */
  readonly tensors: ReadonlyArray<{ readonly name: string; readonly dtype: DType; readonly fallbackFrom?: DType }>
}

interface PlannedTensor {
  readonly name: string
  readonly shape: ReadonlyArray<number>
  readonly dtype: DType
  readonly fallbackFrom?: DType
  readonly bytes: () => Uint8Array
}

/** The type a matrix is stored in: the requested one, or a fallback its rows fit. */
const storageType = (wanted: DType, shape: ReadonlyArray<number>): { readonly dtype: DType; readonly fallbackFrom?: DType } => {
  if (fitsBlocks(wanted, shape)) return { dtype: wanted }
  const q8 = (wanted === "Q4_K" || wanted === "Q6_K") && fitsBlocks("Q8_0", shape)
  return { dtype: q8 ? "Q8_0" : "F16", fallbackFrom: wanted }
}

const planTensors = (config: LlamaConfig, weights: ModelWeights, options: WriteGgufOptions): Array<PlannedTensor> => {
  const fileType = options.fileType ?? weights.embedTokens.dtype
  const plan: Array<PlannedTensor> = []
  const factors = config.architecture === "llama" ? ropeFreqFactors(config) : undefined
  if (factors !== undefined) plan.push({ name: "rope_freqs.weight", shape: [factors.length], dtype: "F32", bytes: () => new Uint8Array(factors.buffer) })
  const vector = (t: RawTensor, name: string, permuteHeads?: number) =>
    plan.push({
      name,
      shape: t.shape,
      dtype: "F32",
      bytes: () => {
        const data = convertTensor(t, "F32").data
        // A bias is a column of Q/K rows: it is permuted like them (one 4-byte "row" per element).
        return permuteHeads === undefined ? data : permuteQkRows(data, permuteHeads, config.headDim, 4)
      }
    })
  const matrix = (t: RawTensor, name: string, permuteHeads?: number) => {
    const { dtype, fallbackFrom } = storageType(options.tensorType?.(name, t.shape) ?? fileType, t.shape)
    plan.push({
      name,
      shape: t.shape,
      dtype,
      ...(fallbackFrom === undefined ? {} : { fallbackFrom }),
      bytes: () => {
        const data = convertTensor(t, dtype).data
        if (permuteHeads === undefined) return data
        return permuteQkRows(data, permuteHeads, config.headDim, rowBytes(dtype, t.shape[1]!))
      }
    })
  }
  // llama.cpp's `llama` graph rotates adjacent pairs, so its converter interleaves Q/K rows (§3);
  // `qwen2` uses NEOX RoPE (HF's half split) and takes the rows as they are.
  const permute = config.architecture === "llama"
  matrix(weights.embedTokens, modelTable.embedTokens[2])
  weights.layers.forEach((layer, i) => {
    for (const [field, suffix, , gguf] of layerRows(config)) {
      const t = layer[field]
      if (t === undefined) throw new GgufWriteError(`layer ${i} has no ${layerTensorName(i, suffix)}`)
      const name = `blk.${i}.${gguf}`
      const heads = !permute ? undefined : field === "qProj" || field === "qProjBias" ? config.numAttentionHeads : field === "kProj" || field === "kProjBias" ? config.numKeyValueHeads : undefined
      if (t.shape.length === 1) vector(t, name, heads)
      else matrix(t, name, heads)
    }
  })
  vector(weights.norm, modelTable.norm[2])
  // Tied embeddings: no output.weight; llama.cpp then projects with token_embd (§7.2).
  if (!config.tieWordEmbeddings && weights.lmHead !== weights.embedTokens) matrix(weights.lmHead, modelTable.lmHead[2])
  return plan
}

/**
 * Write `weights` (HF names and layout) as a GGUF v3 file at `path` for llama.cpp: architecture
 * `config.architecture` (`llama` or `qwen2`).
 *
 * When to use: to give llama.cpp the very weights sirius-ts runs (oracle tests), to make benchmark
 * files, and in `sirius quantize`.
 *
 * Details: metadata per §6.2 under the architecture's prefix, plus `<arch>.attention.key_length` /
 * `value_length` = head_dim (llama.cpp otherwise assumes hidden/heads, wrong when head_dim is explicit),
 * then the tokenizer keys (§6.3, or a gpt2 vocabulary with merges and pre-tokenizer, or keys copied
 * verbatim) and `tokenizer.chat_template`. Tensors follow §7.2's order (Qwen2's q/k/v biases after
 * each layer's matrices), with `rope_freqs.weight` first when a `llama` config has rope scaling. Q/K
 * rows are permuted for `llama` (§3), dims are written innermost first, alignment is 32. Each tensor's
 * bytes are produced (converted or quantized), written and dropped before the next one. Throws a
 * GgufWriteError for what it cannot express.
 *
 * @example
 * writeGguf("/tmp/m.gguf", shapes.tiny, randomWeights(shapes.tiny, { seed: 1 }), { fileType: "Q8_0" })
 *
 * @category writers
 */
export const writeGguf = (path: string, config: LlamaConfig, weights: ModelWeights, options: WriteGgufOptions = {}): WriteGgufReport => {
  const vocab = options.vocab ?? defaultVocab(config.vocabSize)
  const fileType = options.fileType ?? weights.embedTokens.dtype
  if (!(vocab instanceof Map)) {
    const tokens = (vocab as GgufVocab | GgufBpeVocab).tokens
    if (tokens.length !== config.vocabSize) throw new GgufWriteError(`vocab has ${tokens.length} tokens, config.vocabSize is ${config.vocabSize}`)
  }
  if (config.headDim % 2 !== 0) throw new GgufWriteError(`head_dim ${config.headDim} is odd; RoPE needs pairs`)
  if (config.architecture === "qwen2" && config.ropeScaling !== undefined)
    throw new GgufWriteError("qwen2 with rope scaling: llama.cpp's qwen2 graph has no frequency factors")
  const plan = planTensors(config, weights, options)

  const a = config.architecture
  const vocabMeta: Array<readonly [string, GgufValue]> = vocab instanceof Map ? [...vocab.entries()] : vocabMetadata(vocab as GgufVocab | GgufBpeVocab)
  const meta: Array<readonly [string, GgufValue]> = [
    ["general.architecture", gv.string(a)],
    ["general.name", gv.string(options.name ?? "sirius-ts")],
    ["general.alignment", gv.u32(ALIGNMENT)],
    ["general.file_type", gv.u32(options.llamaFileType ?? llamaFileType[fileType])],
    [`${a}.block_count`, gv.u32(config.numHiddenLayers)],
    [`${a}.context_length`, gv.u32(config.maxPositionEmbeddings)],
    [`${a}.embedding_length`, gv.u32(config.hiddenSize)],
    [`${a}.feed_forward_length`, gv.u32(config.intermediateSize)],
    [`${a}.attention.head_count`, gv.u32(config.numAttentionHeads)],
    [`${a}.attention.head_count_kv`, gv.u32(config.numKeyValueHeads)],
    [`${a}.rope.freq_base`, gv.f32(config.ropeTheta)],
    [`${a}.attention.layer_norm_rms_epsilon`, gv.f32(config.rmsNormEps)],
    [`${a}.rope.dimension_count`, gv.u32(config.headDim)],
    [`${a}.attention.key_length`, gv.u32(config.headDim)],
    [`${a}.attention.value_length`, gv.u32(config.headDim)],
    [`${a}.vocab_size`, gv.u32(config.vocabSize)],
    ...vocabMeta,
    ...(options.chatTemplate === undefined ? [] : [["tokenizer.chat_template", gv.string(options.chatTemplate)] as const])
  ]
  const keys = new Set<string>()
  for (const [key] of meta) {
    if (keys.has(key)) throw new GgufWriteError(`duplicate metadata key ${key}`)
    keys.add(key)
  }
  writeGgufFile(path, meta, plan)
  return { tensors: plan.map(({ name, dtype, fallbackFrom }) => (fallbackFrom === undefined ? { name, dtype } : { name, dtype, fallbackFrom })) }
}

