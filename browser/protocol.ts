/**
 * The wire format between a Node test and the page (browser/entry.ts): plain JSON values only, so it
 * crosses playwright's `page.evaluate` (and any other JSON channel) unchanged.
 *
 * Float32 values travel as JSON numbers: every f32 is a double, and JSON prints doubles exactly, so
 * arrays round-trip bit for bit (NaN and ±Infinity aside, which the kernel checks do not send).
 */
import type { RawTensor } from "../src/Tensor.ts"

export type Wire =
  | { readonly f32: ReadonlyArray<number> }
  | { readonly i32: ReadonlyArray<number> }
  | { readonly handle: number; readonly rows?: number; readonly cols?: number; readonly length?: number }
  | { readonly tensor: { readonly name: string; readonly dtype: RawTensor["dtype"]; readonly shape: ReadonlyArray<number>; readonly bytes: string } }
  | { readonly json: unknown }

/** A failure inside the page, with the Effect error's tag and fields. */
export interface WireError {
  readonly error: { readonly _tag: string; readonly message: string; readonly requested?: string; readonly reason?: string; readonly op?: string; readonly backend?: string }
}

export const isWireError = (v: unknown): v is WireError => typeof v === "object" && v !== null && "error" in v

const toBase64 = (bytes: Uint8Array): string => {
  let s = ""
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000))
  return btoa(s)
}
const fromBase64 = (text: string): Uint8Array => Uint8Array.from(atob(text), (c) => c.charCodeAt(0))

export const encodeTensor = (t: RawTensor): Wire => ({ tensor: { name: t.name, dtype: t.dtype, shape: [...t.shape], bytes: toBase64(t.data) } })
export const decodeTensor = (w: Extract<Wire, { tensor: unknown }>): RawTensor => ({
  name: w.tensor.name,
  dtype: w.tensor.dtype,
  shape: w.tensor.shape,
  data: fromBase64(w.tensor.bytes)
})

/** Page-side API installed as `globalThis.sirius` by the bundle. */
export interface SiriusPage {
  /** Why each gpu.js backend cannot run in this page (null: it can). */
  readonly backends: () => Promise<Record<string, string | null>>
  /** Build a GpuKernels backend in the page; its id names it in later calls. */
  readonly open: (mode: string) => Promise<{ readonly id: number; readonly name: string } | WireError>
  /** Run one Kernels op (`matrix`, `vector`, `matmul`, ...) on an open backend. */
  readonly call: (id: number, op: string, args: ReadonlyArray<Wire>) => Promise<Wire | WireError>
  readonly close: (id: number) => Promise<void>
  /** Load config.json + model.safetensors from `base` (same origin) and decode greedily with Generation.generate. */
  readonly generate: (request: GenerateRequest) => Promise<GenerateResult | WireError>
}

export interface GenerateRequest {
  readonly mode: string
  /** URL of the model directory, e.g. "/model/". */
  readonly base: string
  readonly prompt: ReadonlyArray<number>
  readonly maxNewTokens: number
}

export interface GenerateResult {
  readonly backend: string
  readonly tokens: ReadonlyArray<number>
  /** Logits after the prompt (the first token's distribution), for a deviation report. */
  readonly prefillLogits: ReadonlyArray<number>
  readonly tokensPerSecond: number
  readonly loadMs: number
  readonly generateMs: number
}
