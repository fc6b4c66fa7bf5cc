/**
 * The wire format between a Node test and the page (browser/entry.ts): plain JSON values only, so it
 * crosses playwright's `page.evaluate` (and any other JSON channel) unchanged.
 *
 * Float32 values travel as JSON numbers: every f32 is a double, and JSON prints doubles exactly, so
 * arrays round-trip bit for bit (NaN and ±Infinity aside, which the kernel checks do not send).
 *
 * Backend handles (matrices, activations, selections, inputs, KV stores) never leave the page: the wire
 * carries their id and their public shape fields (rows, cols, T, capacity, ...), so a Node-side proxy
 * (browser/remote.ts) implements the whole Kernels interface over them.
 */
import type { RawTensor } from "../src/Tensor.ts"

export type Wire =
  | { readonly f32: ReadonlyArray<number> }
  | { readonly i32: ReadonlyArray<number> }
  | { readonly u8: ReadonlyArray<number> }
  | { readonly handle: number; readonly shape?: Readonly<Record<string, number>> }
  | { readonly tensor: { readonly name: string; readonly dtype: RawTensor["dtype"]; readonly shape: ReadonlyArray<number>; readonly bytes: string } }
  | { readonly json: unknown }
  | { readonly undef: true }

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

/** The Kernels ops whose result is a handle that lives in a scope (the caller names the scope). */
export const scopedOps = new Set([
  "gather",
  "input",
  "upload",
  "selection",
  "embedding",
  "slice",
  "rmsnorm",
  "matmul",
  "matmulRows",
  "matmulTransposedRows",
  "rope",
  "attention",
  "swiglu",
  "swigluRows",
  "selectNeurons",
  "neuronStatistic",
  "kvStore"
])

/** What a request generates in the page (`SiriusPage.generate`): Generation.generate's options, on the wire. */
export interface GenerationWire {
  readonly mode: "full" | "sparse" | "sirius"
  readonly granularity?: "fine" | "coarse"
  readonly density?: number
  readonly correctionPeriod?: number
  readonly treeWidth?: number
  readonly acceptance?: "threshold" | "greedy-exact"
}

/** One forward pass's transfers (gpu/Traffic.ts's ForwardTraffic). */
export interface ForwardTrafficWire {
  readonly tokens: number
  readonly inputUploads: number
  readonly inputBytes: number
  readonly residentUploads: number
  readonly residentBytes: number
  readonly readbacks: number
  readonly readbackBytes: number
  readonly dispatches: number
}

/** Page-side API installed as `globalThis.sirius` by the bundle. */
export interface SiriusPage {
  /** Why each gpu.js backend cannot run in this page (null: it can). */
  readonly backends: () => Promise<Record<string, string | null>>
  /** Build a GpuKernels backend in the page (`pipeline` as GpuOptions'); its id names it in later calls. */
  readonly open: (mode: string, pipeline?: boolean) => Promise<{ readonly id: number; readonly name: string } | WireError>
  /** A scope in the page for scoped ops (activations, inputs, KV stores), closed by `closeScope`. */
  readonly openScope: (id: number) => Promise<number | WireError>
  readonly closeScope: (id: number, scope: number) => Promise<void>
  /** Run one Kernels op on an open backend; handles travel as ids (`scope` for the ops in `scopedOps`). */
  readonly call: (id: number, op: string, args: ReadonlyArray<Wire>, scope?: number) => Promise<Wire | WireError>
  /** Force the open backend's device loss (WebGPU: destroy the device; GL: WEBGL_lose_context). */
  readonly loseDevice: (id: number) => Promise<void>
  readonly close: (id: number) => Promise<void>
  /** Load config.json + model.safetensors from `base` (same origin) and generate with Generation.generate. */
  readonly generate: (request: GenerateRequest) => Promise<GenerateResult | WireError>
}

export interface GenerateRequest {
  /** A gpu.js backend ("webgpu", "webgl2", ...); `pipeline` as in GpuOptions. */
  readonly mode: string
  readonly pipeline?: boolean
  /** URL of the model directory, e.g. "/model/". */
  readonly base: string
  readonly prompt: ReadonlyArray<number>
  readonly maxNewTokens: number
  /** Full greedy decoding when absent. */
  readonly generation?: GenerationWire
}

export interface GenerateResult {
  readonly backend: string
  readonly tokens: ReadonlyArray<number>
  /** Logits after the prompt (the first token's distribution), for a deviation report. */
  readonly prefillLogits: ReadonlyArray<number>
  readonly tokensPerSecond: number
  readonly loadMs: number
  readonly generateMs: number
  /** The generation's forward passes, in order (the prefill first): the pipeline's records. */
  readonly forwards: ReadonlyArray<ForwardTrafficWire>
  /** Everything the generation moved (both paths: the host path counts each op's uploads and readback). */
  readonly total: Omit<ForwardTrafficWire, "tokens">
  /** Sirius: verifications and drafts committed. */
  readonly verifications?: number
}
