/**
 * `sirius generate`: load a model, generate from a prompt in full, sparse or Sirius mode, and print the text
 * (corrected tokens marked) or one JSON object. Also the flags and settings `eval` and `serve` share.
 */
import { Effect, Stream } from "effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { type Checkpoint, loadCheckpoint } from "../src/Checkpoint.ts"
import * as Client from "../src/Client.ts"
import type * as Generation from "../src/Generation.ts"
import * as Model from "../src/Model.ts"
import * as Policy from "../src/Policy.ts"
import type { SamplingOptions } from "../src/Sampler.ts"
import type { Granularity, SparsityOptions } from "../src/Sparsity.ts"
import { type Flags, float, idList, int, oneOf, parse, UsageError } from "./args.ts"
import { type BackendName, backendLayer, backendNames, defaultBackend } from "./backends.ts"
import { loadProgressBar } from "./progress.ts"
import { defaultModelDir } from "./root.ts"

export const summary = "Generate text from a prompt in full, sparse or Sirius mode."
export const usage = `sirius generate [--model DIR] (--prompt TEXT [--chat] | --prompt-ids 1,2,3) [flags]`

/** The generation flags generate, eval and serve share (serve takes them as per-request defaults). */
export const generationFlags = {
  model: { type: "string", value: "DIR", help: "model directory (HF layout: config.json, model.safetensors) or .gguf file", default: "the bundled sirius-tiny-arith" },
  "max-tokens": { type: "string", value: "N", help: "most tokens to generate", default: "generation_config.json's max_new_tokens, else 128" },
  mode: { type: "string", value: "full|sparse|sirius", help: "full model, sparse model, or sparse drafts verified by the full model", default: "full" },
  sparsity: { type: "string", value: "coarse|fine|fine-threshold", help: "(sparse, sirius) which neurons the sparse MLP keeps", default: "coarse" },
  density: { type: "string", value: "ρ", help: "(sparse, sirius) fraction of MLP neurons kept, in (0, 1]", default: "0.5" },
  period: { type: "string", value: "k", help: "(sirius) tokens per verification window", default: "16" },
  threshold: { type: "string", value: "P", help: "(sirius, --acceptance threshold) least tempered full-model probability of a draft", default: "0.1" },
  "tree-width": { type: "string", value: "W", help: "(sirius) beam width of tree drafting", default: "1 (chain)" },
  acceptance: { type: "string", value: "threshold|greedy-exact|speculative", help: "(sirius) which drafts the full model accepts", default: "threshold" },
  temperature: { type: "string", value: "T", help: "sampling temperature; 0 is greedy", default: "0" },
  "top-k": { type: "string", value: "K", help: "(temperature > 0) keep the K most likely tokens; 0 = off", default: "0" },
  "top-p": { type: "string", value: "P", help: "(temperature > 0) nucleus sampling mass", default: "1" },
  "min-p": { type: "string", value: "P", help: "(temperature > 0) drop tokens below P × the most likely's probability", default: "0" },
  "repetition-penalty": { type: "string", value: "R", help: "penalty on tokens already in the context; 1 = off", default: "1" },
  seed: { type: "string", value: "S", help: "(temperature > 0) sampling seed", default: "0" },
  stop: { type: "string", multiple: true, value: "TEXT", help: "stop when the text contains TEXT" },
  backend: { type: "string", value: backendNames.join("|"), help: "compute backend", default: defaultBackend },
  threads: { type: "string", value: "N", help: "(simd) threads", default: "all cores" },
  quantize: { type: "string", value: "q8_0|q4_0", help: "quantize an HF checkpoint's float weight matrices at load time" },
  json: { type: "boolean", help: "print one JSON object: tokens, text, stopReason, stats" }
} as const satisfies Flags

export const flags = {
  ...generationFlags,
  prompt: { type: "string", value: "TEXT", help: "the prompt, as text (needs the model's tokenizer)" },
  "prompt-ids": { type: "string", value: "1,2,3", help: "the prompt, as token ids" },
  chat: { type: "boolean", help: "(--prompt) the prompt is one user message: render it with the model's chat template (its own, else the question/answer fallback) and print only the answer" }
} as const satisfies Flags

export type Mode = Generation.Mode

type GenerationValues = { readonly [K in keyof typeof generationFlags]?: (typeof generationFlags)[K]["type"] extends "boolean" ? boolean : K extends "stop" ? Array<string> : string }

/** The request settings parsed from the shared flags (validated; the checkpoint is not read yet). */
export interface RunSettings {
  readonly dir: string
  readonly mode: Mode
  readonly maxTokens: number | undefined
  readonly sampling: SamplingOptions
  readonly granularity: Granularity
  readonly density: number
  readonly correctionPeriod: number
  readonly treeWidth: number
  readonly policy: Policy.CorrectionPolicy
  readonly stopStrings: ReadonlyArray<string>
  readonly backend: BackendName
  readonly threads: number | undefined
  /** Quantize the float weight matrices at load time (`--quantize q8_0|q4_0`). */
  readonly quantize: "Q8_0" | "Q4_0" | undefined
  readonly json: boolean
}

/** Flags that only some modes read: giving one to another mode is an error, not silently ignored. */
const modeFlags: ReadonlyArray<readonly [keyof typeof generationFlags, ReadonlyArray<Mode>]> = [
  ["sparsity", ["sparse", "sirius"]],
  ["density", ["sparse", "sirius"]],
  ["period", ["sirius"]],
  ["threshold", ["sirius"]],
  ["tree-width", ["sirius"]],
  ["acceptance", ["sirius"]]
]

/**
 * Parse and check the shared flags. `perRequestDefaults` (serve) accepts every flag whatever the mode,
 * since each request may choose its own mode.
 */
export const settings = (v: GenerationValues, options: { readonly perRequestDefaults?: boolean } = {}): RunSettings => {
  const mode = oneOf("mode", v.mode, ["full", "sparse", "sirius"] as const) ?? "full"
  const temperature = float("temperature", v.temperature, 0, 100, "a number in [0, 100]") ?? 0
  const backend = oneOf("backend", v.backend, backendNames) ?? defaultBackend
  const acceptance = oneOf("acceptance", v.acceptance, ["threshold", "greedy-exact", "speculative"] as const) ?? "threshold"
  if (options.perRequestDefaults !== true) {
    for (const [flag, modes] of modeFlags)
      if (v[flag] !== undefined && !modes.includes(mode))
        throw new UsageError(`--${flag} applies to --mode ${modes.join(" or ")}, not ${mode}`)
    for (const flag of ["top-k", "top-p", "min-p", "seed"] as const)
      if (v[flag] !== undefined && temperature === 0) throw new UsageError(`--${flag} applies only when sampling (--temperature > 0); at temperature 0 decoding is greedy`)
    if (v.threshold !== undefined && acceptance !== "threshold") throw new UsageError(`--threshold applies to --acceptance threshold, not ${acceptance}`)
    if (v.threads !== undefined && backend !== "simd") throw new UsageError(`--threads applies to --backend simd, not ${backend}`)
  }
  const treeWidth = int("tree-width", v["tree-width"], 1, 64) ?? 1
  const threshold = float("threshold", v.threshold, 0, 1) ?? 0.1
  const quantize = oneOf("quantize", v.quantize, ["q8_0", "q4_0"] as const)
  const policy = Policy.byName(acceptance, threshold)
  if (treeWidth > 1 && policy.draft !== undefined && options.perRequestDefaults !== true)
    throw new UsageError(`--acceptance ${acceptance} samples its own drafts, which tree drafting cannot honour: use --tree-width 1, or --acceptance greedy-exact or threshold`)
  return {
    dir: v.model ?? defaultModelDir(),
    mode,
    maxTokens: int("max-tokens", v["max-tokens"], 1),
    sampling: {
      temperature,
      topK: int("top-k", v["top-k"], 0) ?? 0,
      topP: float("top-p", v["top-p"], Number.MIN_VALUE, 1, "a number in (0, 1]") ?? 1,
      minP: float("min-p", v["min-p"], 0, 1) ?? 0,
      repetitionPenalty: float("repetition-penalty", v["repetition-penalty"], Number.MIN_VALUE, 100, "a number in (0, 100]") ?? 1,
      seed: int("seed", v.seed, 0) ?? 0
    },
    granularity: oneOf("sparsity", v.sparsity, ["fine", "fine-threshold", "coarse"] as const) ?? "coarse",
    density: float("density", v.density, Number.MIN_VALUE, 1, "a number in (0, 1]") ?? 0.5,
    correctionPeriod: int("period", v.period, 1, 256) ?? 16,
    treeWidth,
    policy,
    stopStrings: v.stop ?? [],
    backend,
    threads: int("threads", v.threads, 1, 1024),
    quantize: quantize === undefined ? undefined : quantize === "q8_0" ? "Q8_0" : "Q4_0",
    json: v.json === true
  }
}

/** Per-layer thresholds written by `sirius calibrate` next to the model. */
export const thresholdsFile = (dir: string, density: number) => join(dir, `sparsity-thresholds-${density}.json`)

const sparsityOf = (s: RunSettings, checkpoint: Checkpoint) =>
  Effect.try({
    try: (): SparsityOptions => {
      if (s.granularity !== "fine-threshold") return { granularity: s.granularity, density: s.density }
      const file = thresholdsFile(checkpoint.dir, s.density)
      const json = JSON.parse(readFileSync(file, "utf8")) as { thresholds?: unknown }
      if (!Array.isArray(json.thresholds) || json.thresholds.length !== checkpoint.config.numHiddenLayers || json.thresholds.some((t) => typeof t !== "number"))
        throw new Error(`${file}: expected {"thresholds": [${checkpoint.config.numHiddenLayers} numbers]}`)
      return { granularity: "fine-threshold", density: s.density, thresholds: json.thresholds as Array<number> }
    },
    catch: (e) => new UsageError(`--sparsity fine-threshold: ${(e as Error).message} (run sirius calibrate --density ${s.density} first)`)
  })

/** The Client request the settings describe (Client.requestStream maps it to a stream: the one place). */
export const clientRequest = (s: RunSettings, checkpoint: Checkpoint, input: Client.RequestInput) =>
  Effect.map(sparsityOf(s, checkpoint), (sparsity): Client.Request => {
    const common = {
      ...input,
      ...(s.maxTokens !== undefined ? { maxNewTokens: s.maxTokens } : {}),
      sampling: s.sampling,
      stopStrings: s.stopStrings
    }
    if (s.mode === "full") return { ...common, mode: "full" }
    if (s.mode === "sparse") return { ...common, mode: "sparse", sparsity }
    // the tree/draft combination was checked with the flags
    return { ...common, mode: "sirius", sparsity, correctionPeriod: s.correctionPeriod, treeWidth: s.treeWidth, policy: s.policy } as Client.Request
  })

/** The event stream of one request in the chosen mode. */
export const requestStream = (s: RunSettings, checkpoint: Checkpoint, model: Model.Model, input: Client.RequestInput) =>
  Effect.map(clientRequest(s, checkpoint, input), (request) => Client.requestStream(checkpoint, model, request))

export type FinishedEvent = Client.Completion

/** Load the checkpoint and the model (with the transposed down_proj when fine sparsity needs it), with a progress bar on a TTY. */
export const loadModel = (s: RunSettings, io: { err: (s: string) => void; errIsTTY?: boolean }) =>
  Effect.gen(function* () {
    const bar = loadProgressBar(io)
    // a GGUF file too large for the backend is refused from its header, before its tensors are read
    yield* Model.admitFile(s.dir, { sparse: s.mode !== "full" && s.granularity !== "coarse" })
    const checkpoint = yield* loadCheckpoint(s.dir, { ...(bar === undefined ? {} : { onProgress: bar }), ...(s.quantize === undefined ? {} : { quantize: s.quantize }) })
    const model = yield* Model.fromCheckpoint(checkpoint, {
      sparse: s.mode !== "full" && s.granularity !== "coarse",
      ...(bar === undefined ? {} : { onProgress: bar })
    })
    bar?.done()
    return { checkpoint, model }
  })

export interface Io {
  readonly out: (s: string) => void
  readonly err: (s: string) => void
  readonly isTTY?: boolean
  readonly errIsTTY?: boolean
}

export const run = (argv: ReadonlyArray<string>, io: Io) => {
  const v = parse(argv, flags)
  if ((v.prompt === undefined) === (v["prompt-ids"] === undefined)) throw new UsageError("give exactly one of --prompt or --prompt-ids")
  if (v.chat === true && v.prompt === undefined) throw new UsageError("--chat applies to --prompt (a user message as text), not --prompt-ids")
  const s = settings(v)
  const promptIds = v["prompt-ids"] === undefined ? undefined : idList("prompt-ids", v["prompt-ids"])
  const mark = io.isTTY === true ? (t: string) => `\x1b[33m${t}\x1b[0m` : (t: string) => (t === "" ? t : `[${t}]`)

  return Effect.gen(function* () {
    const { checkpoint, model } = yield* loadModel(s, io)
    const tokenizer = checkpoint.tokenizer
    if (promptIds === undefined && tokenizer === undefined)
      return yield* Effect.fail(new UsageError(`--prompt needs the model's tokenizer, and ${s.dir} has no tokenizer.json: use --prompt-ids`))
    let finished: FinishedEvent | undefined
    const input: Client.RequestInput =
      promptIds !== undefined ? { prompt: promptIds } : v.chat === true ? { messages: [{ role: "user", content: v.prompt! }] } : { prompt: v.prompt! }
    const stream = yield* requestStream(s, checkpoint, model, input)
    yield* stream.pipe(
      Stream.runForEach((event) =>
        Effect.sync(() => {
          if (event._tag === "Finished") finished = event
          // the prompt is echoed once the request is accepted (after validation), then the tokens as they commit;
          // a chat prints only the answer (the rendered template is the model's business, not the reader's)
          else if (event._tag === "Prefilled" && !s.json && v.prompt !== undefined && v.chat !== true) io.out(v.prompt)
          else if (event._tag === "Committed" && !s.json) {
            const text = tokenizer === undefined ? `${event.token} ` : event.text
            io.out(event.source === "correction" ? mark(text) : text)
          }
        })
      )
    )
    const f = finished!
    if (s.json) io.out(JSON.stringify({ tokens: f.tokens, text: f.text, stopReason: f.reason, stats: f.stats }) + "\n")
    else {
      io.out("\n")
      const st = f.stats
      const sirius = "aal" in st ? `, AAL ${st.aal.toFixed(2)}/${st.correctionPeriod}, effective density ${st.effectiveDensity.toFixed(3)}, ${st.rollbacks} rollbacks (corrected tokens marked)` : ""
      io.err(
        `[${f.reason}] ${st.generatedTokens} tokens, ${st.tokensPerSecond.toFixed(1)} tok/s, prefill ${st.promptTokens} tokens in ${st.prefillMs.toFixed(0)} ms, parameter density ${st.parameterDensity.toFixed(3)}${sirius}, backend ${st.backend}\n`
      )
    }
  }).pipe(Effect.provide(backendLayer(s.backend, s.threads)))
}
