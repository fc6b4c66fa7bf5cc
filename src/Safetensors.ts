/**
 * Safetensors: read and write the HF safetensors format (docs/formats.md).
 *
 * Layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON describing each tensor
 * (`dtype`, `shape`, `data_offsets` relative to the data region), then the data region.
 *
 * Reading validates the whole header against the file size BEFORE allocating anything large: a header
 * length beyond 100 MB or beyond the file, offsets outside the data region, byte counts that disagree with
 * the shape, overlapping tensors and unsupported dtypes are all CheckpointErrors. Each tensor is then read
 * with `fs.readSync` at its own offset into its own Uint8Array, so a multi-GB shard is never held in one
 * Buffer and tensors that are not asked for are never read.
 *
 * This module knows nothing about Llama: the mapping of names to weights lives in Weights.ts.
 */
import { Effect, Schema } from "effect"
import { closeSync, fstatSync, openSync, readSync, writeSync } from "node:fs"
import { describeSchemaError, errorText, quote } from "./Config.ts"
import { bytesPerElement, numel } from "./Tensor.ts"
import type { DType, RawTensor } from "./Tensor.ts"

/**
 * A checkpoint file (safetensors, index, tokenizer, ...) is missing, damaged or does not match the model.
 *
 * `tensor` names the tensor at fault, or is `""` when the problem is not tensor-specific.
 */
export class CheckpointError extends Schema.TaggedError<CheckpointError>()("CheckpointError", {
  file: Schema.String,
  tensor: Schema.String,
  message: Schema.String
}) {}

/** The safetensors specification's limit on the JSON header. */
export const maxHeaderBytes = 100_000_000

/** Every dtype the safetensors format defines; only F32, F16 and BF16 are loaded. */
const knownDtypes = new Set([
  "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64",
  "F4", "F6_E2M3", "F6_E3M2", "C64"
])
const isSupportedDtype = (dtype: string): dtype is DType => dtype === "F32" || dtype === "F16" || dtype === "BF16"

/** One tensor as the header describes it. `begin`/`end` are byte offsets into the data region (end exclusive). */
export interface SafetensorsEntry {
  readonly name: string
  readonly dtype: DType
  readonly shape: ReadonlyArray<number>
  readonly begin: number
  readonly end: number
}

/** A validated header: every entry lies inside the data region, matches its shape and overlaps no other. */
export interface SafetensorsHeader {
  readonly file: string
  readonly fileSize: number
  /** Absolute file offset of the data region (8 + N). */
  readonly dataStart: number
  /** Entries in header order. */
  readonly entries: ReadonlyArray<SafetensorsEntry>
  readonly metadata: Readonly<Record<string, string>>
}

const Offset = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
const RawEntry = Schema.Struct({
  dtype: Schema.String,
  shape: Schema.Array(Offset),
  data_offsets: Schema.Tuple([Offset, Offset])
})
const Metadata = Schema.Record(Schema.String, Schema.String)

const fileError = (file: string, message: string, tensor = "") => new CheckpointError({ file, tensor, message: `${file}: ${message}` })

/** Read exactly `length` bytes at `position` (readSync may return short counts, and caps one call near 2 GB). */
const readExactly = (fd: number, file: string, tensor: string, length: number, position: number): Effect.Effect<Uint8Array, CheckpointError> =>
  Effect.try({
    try: () => {
      const out = new Uint8Array(length)
      let done = 0
      while (done < length) {
        const n = readSync(fd, out, done, Math.min(length - done, 1 << 30), position + done)
        if (n === 0) throw new Error(`unexpected end of file after ${position + done} bytes`)
        done += n
      }
      return out
    },
    catch: (cause) => fileError(file, `cannot read ${length} bytes at offset ${position} (${errorText(cause)})`, tensor)
  })

const withFile = <A, E>(file: string, use: (fd: number, fileSize: number) => Effect.Effect<A, E>): Effect.Effect<A, E | CheckpointError> =>
  Effect.acquireUseRelease(
    Effect.try({
      try: () => {
        const fd = openSync(file, "r")
        try {
          return { fd, size: fstatSync(fd).size }
        } catch (error) {
          closeSync(fd)
          throw error
        }
      },
      catch: (cause) => fileError(file, `cannot open (${errorText(cause)})`)
    }),
    ({ fd, size }) => use(fd, size),
    ({ fd }) => Effect.sync(() => closeSync(fd))
  )

const parseHeader = Effect.fnUntraced(function* (fd: number, file: string, fileSize: number) {
  if (fileSize < 8) return yield* fileError(file, `file is ${fileSize} bytes, shorter than the 8-byte header length`)
  const lengthBytes = yield* readExactly(fd, file, "", 8, 0)
  const headerLength = new DataView(lengthBytes.buffer).getBigUint64(0, true)
  if (headerLength > BigInt(maxHeaderBytes))
    return yield* fileError(file, `header length ${headerLength} exceeds the ${maxHeaderBytes}-byte limit`)
  const n = Number(headerLength)
  if (n > fileSize - 8) return yield* fileError(file, `header length ${n} exceeds the ${fileSize - 8} bytes after the length field (truncated file?)`)
  const headerBytes = yield* readExactly(fd, file, "", n, 8)
  const json = yield* Effect.try({
    try: (): unknown => JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(headerBytes)),
    catch: (cause) => fileError(file, `header is not valid UTF-8 JSON (${errorText(cause)})`)
  })
  if (typeof json !== "object" || json === null || Array.isArray(json))
    return yield* fileError(file, `header must be a JSON object (got ${quote(json)})`)

  const dataStart = 8 + n
  const dataSize = fileSize - dataStart
  const entries: Array<SafetensorsEntry> = []
  let metadata: Readonly<Record<string, string>> = {}
  for (const [name, value] of Object.entries(json)) {
    if (name === "__metadata__") {
      metadata = yield* Schema.decodeUnknownEffect(Metadata)(value).pipe(
        Effect.mapError((error) => fileError(file, `__metadata__ must map strings to strings: ${describeSchemaError(error, value).message}`))
      )
      continue
    }
    const raw = yield* Schema.decodeUnknownEffect(RawEntry)(value).pipe(
      Effect.mapError((error) => {
        const { field, message } = describeSchemaError(error, value)
        return fileError(file, `tensor "${name}": ${field === "" ? "" : `field "${field}" `}${message}`, name)
      })
    )
    if (!isSupportedDtype(raw.dtype))
      return yield* fileError(
        file,
        knownDtypes.has(raw.dtype)
          ? `tensor "${name}": unsupported dtype "${raw.dtype}" (sirius-ts loads F32, F16 and BF16)`
          : `tensor "${name}": unknown dtype ${quote(raw.dtype)}`,
        name
      )
    const [begin, end] = raw.data_offsets
    if (begin > end) return yield* fileError(file, `tensor "${name}": data_offsets [${begin}, ${end}] has begin > end`, name)
    if (end > dataSize)
      return yield* fileError(file, `tensor "${name}": data_offsets end ${end} lies beyond the ${dataSize}-byte data region (truncated file?)`, name)
    // BigInt: a hostile shape's element count may exceed 2^53.
    const expected = raw.shape.reduce((a, d) => a * BigInt(d), 1n) * BigInt(bytesPerElement[raw.dtype])
    if (expected !== BigInt(end - begin))
      return yield* fileError(
        file,
        `tensor "${name}": shape [${raw.shape.join(", ")}] ${raw.dtype} needs ${expected} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`,
        name
      )
    entries.push({ name, dtype: raw.dtype, shape: raw.shape, begin, end })
  }
  const byOffset = entries.filter((e) => e.end > e.begin).sort((a, b) => a.begin - b.begin)
  for (let i = 1; i < byOffset.length; i++) {
    const prev = byOffset[i - 1]!
    const cur = byOffset[i]!
    if (cur.begin < prev.end)
      return yield* fileError(
        file,
        `tensor "${cur.name}" [${cur.begin}, ${cur.end}) overlaps tensor "${prev.name}" [${prev.begin}, ${prev.end})`,
        cur.name
      )
  }
  const header: SafetensorsHeader = { file, fileSize, dataStart, entries, metadata }
  return header
})

/**
 * Read and validate a safetensors header without reading any tensor data.
 *
 * **When to use**: listing a file's tensors, or checking a file before loading it.
 *
 * @category reading
 */
export const readSafetensorsHeader = (file: string): Effect.Effect<SafetensorsHeader, CheckpointError> =>
  withFile(file, (fd, size) => parseHeader(fd, file, size))

/**
 * Read tensors from a safetensors file, each into its own Uint8Array.
 *
 * **When to use**: loading weights; pass `names` to read only the tensors you need (others are skipped,
 * not read); `onTensor` sees each tensor as it is read (progress). A requested name that is absent is simply not in the result: the caller decides whether that
 * is an error (Weights.assembleWeights does).
 *
 * **Example**
 * ```ts
 * const tensors = yield* readSafetensors("model.safetensors", (name) => !name.endsWith("inv_freq"))
 * tensors.get("model.norm.weight")?.shape // => [hidden]
 * ```
 *
 * @category reading
 */
export const readSafetensors = (
  file: string,
  names?: ReadonlySet<string> | ((name: string) => boolean),
  onTensor?: (tensor: RawTensor) => void
): Effect.Effect<ReadonlyMap<string, RawTensor>, CheckpointError> => {
  const wanted = names === undefined ? () => true : typeof names === "function" ? names : (name: string) => names.has(name)
  return withFile(file, (fd, size) =>
    Effect.gen(function* () {
      const header = yield* parseHeader(fd, file, size)
      const out = new Map<string, RawTensor>()
      for (const e of header.entries) {
        if (!wanted(e.name)) continue
        const data = yield* readExactly(fd, file, e.name, e.end - e.begin, header.dataStart + e.begin)
        const tensor: RawTensor = { name: e.name, dtype: e.dtype, shape: e.shape, data }
        out.set(e.name, tensor)
        onTensor?.(tensor)
      }
      return out as ReadonlyMap<string, RawTensor>
    })
  )
}

/**
 * The serialized header (8-byte length + JSON padded with spaces to a multiple of 8) for tensors laid out
 * back to back in the given order.
 *
 * @category writing
 */
export const encodeSafetensorsHeader = (
  tensors: ReadonlyArray<RawTensor>,
  metadata?: Readonly<Record<string, string>>
): Uint8Array => {
  const header: Record<string, unknown> = {}
  if (metadata !== undefined) header["__metadata__"] = metadata
  let offset = 0
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] }
    offset += t.data.byteLength
  }
  const json = new TextEncoder().encode(JSON.stringify(header))
  const padded = Math.ceil(json.byteLength / 8) * 8
  const out = new Uint8Array(8 + padded).fill(0x20)
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true)
  out.set(json, 8)
  return out
}

/**
 * Write tensors to a safetensors file, in the given order, streaming each tensor's bytes.
 *
 * **When to use**: tests, the llama.cpp differential test and benchmark scripts that emit checkpoints
 * (see Weights.weightEntries for the HF order of a ModelWeights).
 *
 * **Details**: fails with a CheckpointError naming the tensor when a tensor's byte length disagrees with
 * its shape and dtype, or when two tensors share a name.
 *
 * @category writing
 */
export const writeSafetensors = (
  file: string,
  tensors: ReadonlyArray<RawTensor>,
  metadata?: Readonly<Record<string, string>>
): Effect.Effect<void, CheckpointError> =>
  Effect.gen(function* () {
    const seen = new Set<string>()
    for (const t of tensors) {
      if (seen.has(t.name)) return yield* fileError(file, `duplicate tensor name "${t.name}"`, t.name)
      seen.add(t.name)
      const expected = numel(t.shape) * bytesPerElement[t.dtype]
      if (t.data.byteLength !== expected)
        return yield* fileError(file, `tensor "${t.name}": ${t.data.byteLength} bytes for shape [${t.shape.join(", ")}] ${t.dtype} (expected ${expected})`, t.name)
    }
    const header = encodeSafetensorsHeader(tensors, metadata)
    const attempt = <A>(thunk: () => A) => Effect.try({ try: thunk, catch: (cause) => fileError(file, `cannot write (${errorText(cause)})`) })
    yield* Effect.acquireUseRelease(
      attempt(() => openSync(file, "w")),
      (fd) =>
        attempt(() => {
          writeAll(fd, header)
          for (const t of tensors) writeAll(fd, t.data)
        }),
      (fd) => Effect.sync(() => closeSync(fd))
    )
  })

const writeAll = (fd: number, bytes: Uint8Array): void => {
  let done = 0
  while (done < bytes.byteLength) done += writeSync(fd, bytes, done, Math.min(bytes.byteLength - done, 1 << 30))
}
