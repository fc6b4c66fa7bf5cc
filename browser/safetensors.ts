/**
 * Safetensors from an ArrayBuffer: the browser's loader (src/Safetensors.ts reads files with node:fs).
 *
 * Same format and the same checks as the Node reader, in the same order: 8-byte little-endian header
 * length N (≤ 100 MB and within the buffer), N bytes of UTF-8 JSON object, each tensor's dtype (F32, F16,
 * BF16 loaded; other known dtypes named as unsupported), `data_offsets` inside the data region and
 * agreeing with shape × dtype size, no two tensors overlapping. Failures are CheckpointErrors naming the
 * file and tensor. Tensors are views into the one buffer (no copies).
 *
 * properties/browser.test.ts checks it against the Node reader on the same files.
 */
import { Effect } from "effect"
import { CheckpointError } from "../src/Safetensors.ts"
import { bytesPerElement, type DType, type RawTensor } from "../src/Tensor.ts"

const maxHeaderBytes = 100_000_000
const knownDtypes = new Set([
  "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64",
  "F4", "F6_E2M3", "F6_E3M2", "C64"
])
const isSupported = (dtype: string): dtype is DType => dtype === "F32" || dtype === "F16" || dtype === "BF16"
const isOffset = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0

/**
 * Parse a whole safetensors file held in memory into tensors keyed by name (header order).
 *
 * @example
 * const bytes = await (await fetch("model.safetensors")).arrayBuffer()
 * const tensors = yield* parseSafetensors(bytes, "model.safetensors")
 */
export const parseSafetensors = (buffer: ArrayBuffer, file: string): Effect.Effect<ReadonlyMap<string, RawTensor>, CheckpointError> =>
  Effect.gen(function* () {
    const fail = (message: string, tensor = "") => new CheckpointError({ file, tensor, message: `${file}: ${message}` })
    const size = buffer.byteLength
    if (size < 8) return yield* fail(`file is ${size} bytes, shorter than the 8-byte header length`)
    const headerLength = new DataView(buffer).getBigUint64(0, true)
    if (headerLength > BigInt(maxHeaderBytes)) return yield* fail(`header length ${headerLength} exceeds the ${maxHeaderBytes}-byte limit`)
    const n = Number(headerLength)
    if (n > size - 8) return yield* fail(`header length ${n} exceeds the ${size - 8} bytes after the length field (truncated file?)`)
    const json = yield* Effect.try({
      try: (): unknown => JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array(buffer, 8, n))),
      catch: (cause) => fail(`header is not valid UTF-8 JSON (${cause instanceof Error ? cause.message : String(cause)})`)
    })
    if (typeof json !== "object" || json === null || Array.isArray(json)) return yield* fail("header must be a JSON object")

    const dataStart = 8 + n
    const dataSize = size - dataStart
    const out = new Map<string, RawTensor>()
    const spans: Array<{ name: string; begin: number; end: number }> = []
    for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
      if (name === "__metadata__") continue
      const entry = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown }
      if (typeof entry !== "object" || entry === null) return yield* fail(`tensor "${name}": expected an object`, name)
      const { dtype, shape, data_offsets: offsets } = entry
      if (typeof dtype !== "string") return yield* fail(`tensor "${name}": field "dtype" must be a string`, name)
      if (!Array.isArray(shape) || !shape.every(isOffset)) return yield* fail(`tensor "${name}": field "shape" must be a list of integers ≥ 0`, name)
      if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isOffset))
        return yield* fail(`tensor "${name}": field "data_offsets" must be two integers ≥ 0`, name)
      if (!isSupported(dtype))
        return yield* fail(
          knownDtypes.has(dtype) ? `tensor "${name}": unsupported dtype "${dtype}" (sirius-ts loads F32, F16 and BF16)` : `tensor "${name}": unknown dtype ${JSON.stringify(dtype)}`,
          name
        )
      const [begin, end] = offsets as [number, number]
      if (begin > end) return yield* fail(`tensor "${name}": data_offsets [${begin}, ${end}] has begin > end`, name)
      if (end > dataSize) return yield* fail(`tensor "${name}": data_offsets end ${end} lies beyond the ${dataSize}-byte data region (truncated file?)`, name)
      const expected = (shape as Array<number>).reduce((a, d) => a * BigInt(d), 1n) * BigInt(bytesPerElement[dtype])
      if (expected !== BigInt(end - begin))
        return yield* fail(`tensor "${name}": shape [${shape.join(", ")}] ${dtype} needs ${expected} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`, name)
      spans.push({ name, begin, end })
      out.set(name, { name, dtype, shape: shape as Array<number>, data: new Uint8Array(buffer, dataStart + begin, end - begin) })
    }
    const byOffset = spans.filter((s) => s.end > s.begin).sort((a, b) => a.begin - b.begin)
    for (let i = 1; i < byOffset.length; i++) {
      const prev = byOffset[i - 1]!
      const cur = byOffset[i]!
      if (cur.begin < prev.end)
        return yield* fail(`tensor "${cur.name}" [${cur.begin}, ${cur.end}) overlaps tensor "${prev.name}" [${prev.begin}, ${prev.end})`, cur.name)
    }
    return out as ReadonlyMap<string, RawTensor>
  })
