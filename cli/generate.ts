/**
 * `sirius generate`: load a model directory, generate from a prompt in full, sparse or Sirius mode, and
 * print the text (corrected tokens marked) or one JSON object.
 */
import { Effect, Stream } from "effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { loadCheckpoint, type Checkpoint } from "../src/Checkpoint.ts"
import * as Generation from "../src/Generation.ts"
import * as Model from "../src/Model.ts"
import * as Policy from "../src/Policy.ts"
import type { SamplingOptions } from "../src/Sampler.ts"
import * as Sirius from "../src/Sirius.ts"
import type { Granularity, SparsityOptions } from "../src/Sparsity.ts"
import { float, idList, int, oneOf, parse, UsageError } from "./args.ts"
import { backendLayer, backendNames } from "./backends.ts"
import { defaultModelDir } from "./root.ts"

export const usage = `sirius generate [--model DIR] (--prompt TEXT | --prompt-ids 1,2,3) [--max-tokens N]
    [--mode full|sparse|sirius] [--sparsity fine|fine-threshold|coarse] [--density 0.5]
    [--period 16] [--threshold 0.1] [--tree-width 1] [--acceptance threshold|greedy-exact|speculative]
    [--temperature T] [--top-k K] [--top-p P] [--min-p P] [--repetition-penalty R] [--seed S]
    [--stop TEXT]... [--backend ${backendNames.join("|")}] [--threads N] [--quantize q8_0|q4_0] [--json]`

/** Flags shared by generate, eval and bench. */
export const generationFlags = {
  model: { type: "string" },
  "max-tokens": { type: "string" },
  mode: { type: "string" },
  sparsity: { type: "string" },
  density: { type: "string" },
  period: { type: "string" },
  threshold: { type: "string" },
  "tree-width": { type: "string" },
  acceptance: { type: "string" },
  temperature: { type: "string" },
  "top-k": { type: "string" },
  "top-p": { type: "string" },
  "min-p": { type: "string" },
  "repetition-penalty": { type: "string" },
  seed: { type: "string" },
  stop: { type: "string", multiple: true },
  backend: { type: "string" },
  threads: { type: "string" },
  quantize: { type: "string" },
  json: { type: "boolean" }
} as const

export type Mode = "full" | "sparse" | "sirius"

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
  readonly backend: (typeof backendNames)[number]
  readonly threads: number | undefined
  /** Quantize the float weight matrices at load time (`--quantize q8_0|q4_0`). */
  readonly quantize: "Q8_0" | "Q4_0" | undefined
  readonly json: boolean
}

export const settings = (v: { readonly [K in keyof typeof generationFlags]?: (typeof generationFlags)[K]["type"] extends "boolean" ? boolean : K extends "stop" ? Array<string> : string }): RunSettings => {
  const treeWidth = int("tree-width", v["tree-width"], 1) ?? 1
  if (treeWidth > 64) throw new UsageError(`--tree-width must be at most 64 (got ${treeWidth})`)
  const threshold = float("threshold", v.threshold, 0, 1) ?? 0.1
  const quantize = oneOf("quantize", v.quantize, ["q8_0", "q4_0"] as const)
  return {
    dir: v.model ?? defaultModelDir(),
    mode: oneOf("mode", v.mode, ["full", "sparse", "sirius"] as const) ?? "full",
    maxTokens: int("max-tokens", v["max-tokens"], 1),
    sampling: {
      temperature: float("temperature", v.temperature, 0, 100) ?? 0,
      topK: int("top-k", v["top-k"], 0) ?? 0,
      topP: float("top-p", v["top-p"], Number.MIN_VALUE, 1, "a number in (0, 1]") ?? 1,
      minP: float("min-p", v["min-p"], 0, 1) ?? 0,
      repetitionPenalty: float("repetition-penalty", v["repetition-penalty"], Number.MIN_VALUE, 100, "a number in (0, 100]") ?? 1,
      seed: int("seed", v.seed, 0) ?? 0
    },
    granularity: oneOf("sparsity", v.sparsity, ["fine", "fine-threshold", "coarse"] as const) ?? "coarse",
    density: float("density", v.density, Number.MIN_VALUE, 1, "a number in (0, 1]") ?? 0.5,
    correctionPeriod: int("period", v.period, 1) ?? 16,
    treeWidth,
    policy: Policy.byName(oneOf("acceptance", v.acceptance, ["threshold", "greedy-exact", "speculative"] as const) ?? "threshold", threshold),
    stopStrings: v.stop ?? [],
    backend: oneOf("backend", v.backend, backendNames) ?? "reference",
    threads: int("threads", v.threads, 1),
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

/** The unified event stream of one request in the chosen mode (full and sparse decoding emit no drafts). */
export const requestStream = (s: RunSettings, checkpoint: Checkpoint, model: Model.Model, prompt: ReadonlyArray<number>) =>
  Effect.map(sparsityOf(s, checkpoint), (sparsity) => {
    const base = {
      prompt,
      maxNewTokens: s.maxTokens ?? checkpoint.generation.maxNewTokens ?? 128,
      sampling: s.sampling,
      eosTokenIds: checkpoint.eosTokenIds,
      stopStrings: s.stopStrings,
      tokenizer: checkpoint.tokenizer
    }
    return s.mode === "sirius"
      ? Sirius.generate(model, { ...base, sparsity, correctionPeriod: s.correctionPeriod, treeWidth: s.treeWidth, policy: s.policy })
      : (Generation.generate(model, s.mode === "sparse" ? { ...base, sparsity } : base) as Stream.Stream<Sirius.SiriusEvent | Generation.GenerationEvent, Generation.GenerationError | import("../src/Kernels.ts").KernelError>)
  })

export type FinishedEvent = Extract<Sirius.SiriusEvent | Generation.GenerationEvent, { _tag: "Finished" }>

/** Load the checkpoint and the model (with the transposed down_proj when fine sparsity needs it). */
export const loadModel = (s: RunSettings) =>
  Effect.gen(function* () {
    const checkpoint = yield* loadCheckpoint(s.dir, s.quantize === undefined ? {} : { quantize: s.quantize })
    const model = yield* Model.fromCheckpoint(checkpoint, { sparse: s.mode !== "full" && s.granularity !== "coarse" })
    return { checkpoint, model }
  })

export const run = (argv: ReadonlyArray<string>, io: { out: (s: string) => void; err: (s: string) => void; isTTY?: boolean }) => {
  const v = parse(argv, { ...generationFlags, prompt: { type: "string" }, "prompt-ids": { type: "string" } })
  if ((v.prompt === undefined) === (v["prompt-ids"] === undefined)) throw new UsageError("give exactly one of --prompt or --prompt-ids")
  const s = settings(v)
  const promptIds = v["prompt-ids"] === undefined ? undefined : idList("prompt-ids", v["prompt-ids"])
  const mark = io.isTTY === true ? (t: string) => `\x1b[33m${t}\x1b[0m` : (t: string) => (t === "" ? t : `[${t}]`)

  return Effect.gen(function* () {
    const { checkpoint, model } = yield* loadModel(s)
    const tokenizer = checkpoint.tokenizer
    if (promptIds === undefined && tokenizer === undefined)
      return yield* Effect.fail(new UsageError(`${s.dir} has no tokenizer.json: use --prompt-ids`))
    const prompt = promptIds ?? tokenizer!.encode(v.prompt!)
    if (!s.json && v.prompt !== undefined) io.out(v.prompt)
    let finished: FinishedEvent | undefined
    const stream = yield* requestStream(s, checkpoint, model, prompt)
    yield* stream.pipe(
      Stream.runForEach((event) =>
        Effect.sync(() => {
          if (event._tag === "Finished") finished = event
          else if (event._tag === "Committed" && !s.json) {
            const text = tokenizer === undefined ? `${event.token} ` : event.text
            io.out("source" in event && event.source === "correction" ? mark(text) : text)
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
