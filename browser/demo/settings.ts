/**
 * The demo's settings: the page's controls, its URL contract and the Client request they make.
 *
 * URL contract (automated checks and links): `?prompt=…&backend=webgpu|webgl2|cpu&mode=full|sparse|sirius
 * &autorun=1`, plus any knob by the name below (`sparsity`, `density`, `period`, `threshold`, `tree`,
 * `acceptance`, `temperature`, `max`, `seed`). `prompt` is the model's raw prompt (not wrapped). A value
 * that does not parse is an error the page shows, never silently replaced by a default.
 *
 * Backends: `webgpu` and `webgl2` are the gpu pipeline (gpu/pipeline.ts) on gpu.js's WebGPU and WebGL2
 * modes; `cpu` is gpu.js's cpu mode (its kernels as JavaScript, on the host path: there is no device).
 * gpu.js's wasm mode is not offered: in chromium it runs out of wasm memory on the bundled model (it makes
 * one shared WebAssembly.Memory per weight's kernel).
 *
 * Not here: the DOM (page.ts, trace.ts), the engine (src/).
 */
import type * as Client from "../../src/Client.ts"
import type { GpuOptions } from "../../gpu/index.ts"
import * as Policy from "../../src/Policy.ts"
import * as Sampler from "../../src/Sampler.ts"

export const backends = ["webgpu", "webgl2", "cpu"] as const
export type DemoBackend = (typeof backends)[number]
export const modes = ["full", "sparse", "sirius"] as const
export const granularities = ["coarse", "fine"] as const
export const acceptances = ["threshold", "greedy-exact", "speculative"] as const

export interface DemoSettings {
  readonly prompt: string
  readonly backend: DemoBackend
  readonly mode: (typeof modes)[number]
  readonly sparsity: (typeof granularities)[number]
  /** Fraction of MLP neurons kept (sparse, sirius). */
  readonly density: number
  /** Sirius's correction period k. */
  readonly period: number
  /** The threshold policy's least tempered probability. */
  readonly threshold: number
  readonly treeWidth: number
  readonly acceptance: (typeof acceptances)[number]
  readonly temperature: number
  readonly maxTokens: number
  readonly seed: number
}

export const examplePrompt = "Q: Ann has 26 pens. She buys 13 more. She buys 2 more. How many pens now?\nA:"

export const defaults: DemoSettings = {
  prompt: examplePrompt,
  backend: "webgpu",
  mode: "sirius",
  sparsity: "coarse",
  density: 0.5,
  period: 16,
  threshold: 0.1,
  treeWidth: 1,
  acceptance: "threshold",
  temperature: 0,
  maxTokens: 80,
  seed: 0
}

/** The URL parameter of each setting. */
export const queryNames: Readonly<Record<keyof DemoSettings, string>> = {
  prompt: "prompt",
  backend: "backend",
  mode: "mode",
  sparsity: "sparsity",
  density: "density",
  period: "period",
  threshold: "threshold",
  treeWidth: "tree",
  acceptance: "acceptance",
  temperature: "temperature",
  maxTokens: "max",
  seed: "seed"
}

const oneOf = <A extends string>(name: string, value: string, allowed: ReadonlyArray<A>): A => {
  if (!(allowed as ReadonlyArray<string>).includes(value)) throw new Error(`${name}: expected one of ${allowed.join(", ")}, got ${JSON.stringify(value)}`)
  return value as A
}
const number = (name: string, value: string, min: number, max: number, integer: boolean): number => {
  const v = Number(value)
  if (value.trim() === "" || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v)))
    throw new Error(`${name}: expected ${integer ? "an integer" : "a number"} in [${min}, ${max}], got ${JSON.stringify(value)}`)
  return v
}

/** Parse one setting from its text (URL parameter or form field); throws with the setting's name. */
export const parseSetting = <K extends keyof DemoSettings>(key: K, value: string): DemoSettings[K] => {
  const name = queryNames[key]
  switch (key) {
    case "prompt":
      if (value.length === 0) throw new Error("prompt: empty")
      return value as DemoSettings[K]
    case "backend":
      return oneOf(name, value, backends) as DemoSettings[K]
    case "mode":
      return oneOf(name, value, modes) as DemoSettings[K]
    case "sparsity":
      return oneOf(name, value, granularities) as DemoSettings[K]
    case "acceptance":
      return oneOf(name, value, acceptances) as DemoSettings[K]
    case "density":
      return number(name, value, 0.01, 1, false) as DemoSettings[K]
    case "period":
      return number(name, value, 1, 64, true) as DemoSettings[K]
    case "threshold":
      return number(name, value, 0, 1, false) as DemoSettings[K]
    case "treeWidth":
      return number(name, value, 1, 8, true) as DemoSettings[K]
    case "temperature":
      return number(name, value, 0, 2, false) as DemoSettings[K]
    case "maxTokens":
      return number(name, value, 1, 160, true) as DemoSettings[K]
    default:
      return number(name, value, 0, 2 ** 31 - 1, true) as DemoSettings[K]
  }
}

/** Settings from a URL's query: the defaults overridden by each parameter given; errors name the parameter. */
export const fromQuery = (params: URLSearchParams): { readonly settings: DemoSettings; readonly autorun: boolean; readonly errors: ReadonlyArray<string> } => {
  const errors: Array<string> = []
  const settings: Record<string, unknown> = { ...defaults }
  for (const key of Object.keys(queryNames) as Array<keyof DemoSettings>) {
    const value = params.get(queryNames[key])
    if (value === null) continue
    try {
      settings[key] = parseSetting(key, value)
    } catch (e) {
      errors.push((e as Error).message)
    }
  }
  const known = new Set([...Object.values(queryNames), "autorun"])
  for (const name of params.keys()) if (!known.has(name)) errors.push(`${name}: unknown parameter (known: ${[...known].join(", ")})`)
  const autorun = params.get("autorun")
  if (autorun !== null && autorun !== "0" && autorun !== "1") errors.push(`autorun: expected 0 or 1, got ${JSON.stringify(autorun)}`)
  return { settings: settings as unknown as DemoSettings, autorun: autorun === "1", errors }
}

/** The query string that reproduces these settings (only what differs from the defaults, plus the prompt and backend). */
export const toQuery = (s: DemoSettings, autorun = false): string => {
  const params = new URLSearchParams()
  for (const key of Object.keys(queryNames) as Array<keyof DemoSettings>)
    if (key === "prompt" || key === "backend" || key === "mode" || s[key] !== defaults[key]) params.set(queryNames[key], String(s[key]))
  if (autorun) params.set("autorun", "1")
  return params.toString()
}

/** The gpu.js backend a demo backend runs on. */
export const gpuOptions = (backend: DemoBackend): GpuOptions =>
  backend === "cpu" ? { mode: "cpu", pipeline: false } : { mode: backend, pipeline: true }

/** Knobs that mean something for the settings' mode (the page disables the others, as the CLI refuses them). */
export const applies = (s: DemoSettings, key: keyof DemoSettings): boolean => {
  switch (key) {
    case "sparsity":
    case "density":
      return s.mode !== "full"
    case "period":
    case "treeWidth":
    case "acceptance":
      return s.mode === "sirius"
    case "threshold":
      return s.mode === "sirius" && s.acceptance === "threshold"
    case "seed":
      return s.temperature > 0
    default:
      return true
  }
}

/** The Client request the settings describe (Client.requestStream encodes the prompt and fills the defaults). */
export const request = (s: DemoSettings): Client.Request => {
  const common = { prompt: s.prompt, maxNewTokens: s.maxTokens, sampling: { ...Sampler.greedy, temperature: s.temperature, seed: s.seed } }
  const sparsity = { granularity: s.sparsity, density: s.density }
  if (s.mode === "full") return { ...common, mode: "full" }
  if (s.mode === "sparse") return { ...common, mode: "sparse", sparsity }
  const policy = Policy.byName(s.acceptance, s.threshold)
  if (s.treeWidth > 1 && policy.draft !== undefined)
    throw new Error(`acceptance: ${s.acceptance} samples its own drafts, which tree drafting cannot honour: use tree width 1, or greedy-exact or threshold`)
  return { ...common, mode: "sirius", sparsity, correctionPeriod: s.period, treeWidth: s.treeWidth, policy } as Client.Request
}
