/**
 * `sirius calibrate`: per-layer CATS thresholds for `--sparsity fine-threshold`, from a calibration text,
 * written beside the model as sparsity-thresholds-<density>.json.
 */
import { Effect } from "effect"
import { readFileSync, writeFileSync } from "node:fs"
import { calibrate } from "../src/Calibration.ts"
import { loadCheckpoint } from "../src/Checkpoint.ts"
import * as Model from "../src/Model.ts"
import { type Flags, float, int, oneOf, parse, UsageError } from "./args.ts"
import { backendLayer, backendNames } from "./backends.ts"
import { thresholdsFile } from "./generate.ts"
import { defaultModelDir } from "./root.ts"

export const summary = "Per-layer CATS thresholds for --sparsity fine-threshold, from a calibration text."
export const usage = `sirius calibrate [--model DIR] --data TEXTFILE [flags]`

export const flags = {
  model: { type: "string", value: "DIR", help: "model directory", default: "the bundled sirius-tiny-arith" },
  data: { type: "string", value: "TEXTFILE", help: "calibration text (required)" },
  density: { type: "string", value: "ρ", help: "target fraction of MLP neurons kept", default: "0.5" },
  chunk: { type: "string", value: "N", help: "tokens per calibration sequence", default: "128" },
  "max-tokens": { type: "string", value: "N", help: "calibration tokens used at most", default: "65536" },
  backend: { type: "string", value: backendNames.join("|"), help: "compute backend", default: "simd" },
  threads: { type: "string", value: "N", help: "(simd) threads", default: "all cores" },
  json: { type: "boolean", help: "print one JSON object" }
} as const satisfies Flags

export const run = (argv: ReadonlyArray<string>, io: { out: (s: string) => void; err: (s: string) => void }) => {
  const v = parse(argv, flags)
  if (v.data === undefined) throw new UsageError("--data TEXTFILE is required")
  const density = float("density", v.density, Number.MIN_VALUE, 1, "a number in (0, 1]") ?? 0.5
  const chunk = int("chunk", v.chunk, 1) ?? 128
  const maxTokens = int("max-tokens", v["max-tokens"], 1) ?? 65536
  const backend = oneOf("backend", v.backend, backendNames) ?? "simd"
  const dir = v.model ?? defaultModelDir()
  const dataFile = v.data

  return Effect.gen(function* () {
    const text = yield* Effect.try({ try: () => readFileSync(dataFile, "utf8"), catch: (e) => new UsageError(`--data ${dataFile}: ${(e as Error).message}`) })
    const checkpoint = yield* loadCheckpoint(dir)
    if (checkpoint.tokenizer === undefined) return yield* Effect.fail(new UsageError(`${dir} has no tokenizer.json to read the calibration text`))
    const ids = checkpoint.tokenizer.encode(text).slice(0, maxTokens)
    const size = Math.min(chunk, checkpoint.config.maxPositionEmbeddings)
    const sequences = Array.from({ length: Math.ceil(ids.length / size) }, (_, i) => ids.slice(i * size, (i + 1) * size))
    const model = yield* Model.fromCheckpoint(checkpoint)
    const result = yield* calibrate(model, sequences, density)
    const file = thresholdsFile(checkpoint.dir, density)
    yield* Effect.try({
      try: () => writeFileSync(file, JSON.stringify({ density, tokens: result.tokens, thresholds: result.thresholds, keptFraction: result.keptFraction }, null, 2) + "\n"),
      catch: (e) => new UsageError(`cannot write ${file}: ${(e as Error).message}`)
    })
    if (v.json === true) io.out(JSON.stringify({ file, ...result }) + "\n")
    else io.err(`wrote ${file}: ${result.tokens} tokens, kept fraction per layer ${result.keptFraction.map((f) => f.toFixed(3)).join(" ")}\n`)
  }).pipe(Effect.provide(backendLayer(backend, int("threads", v.threads, 1))))
}
