/**
 * `sirius generate`: load a model directory, generate from a prompt, print the text (or one JSON object).
 */
import { Effect, Stream } from "effect"
import { loadCheckpoint } from "../src/Checkpoint.ts"
import * as Generation from "../src/Generation.ts"
import * as Model from "../src/Model.ts"
import type { SamplingOptions } from "../src/Sampler.ts"
import { float, idList, int, oneOf, parse, UsageError } from "./args.ts"
import { backendLayer, backendNames } from "./backends.ts"
import { defaultModelDir } from "./root.ts"

export const usage = `sirius generate [--model DIR] (--prompt TEXT | --prompt-ids 1,2,3) [--max-tokens N]
    [--temperature T] [--top-k K] [--top-p P] [--min-p P] [--repetition-penalty R] [--seed S]
    [--stop TEXT]... [--backend ${backendNames.join("|")}] [--threads N] [--json]`

export const run = (argv: ReadonlyArray<string>, io: { out: (s: string) => void; err: (s: string) => void }) => {
  const v = parse(argv, {
    model: { type: "string" },
    prompt: { type: "string" },
    "prompt-ids": { type: "string" },
    "max-tokens": { type: "string" },
    temperature: { type: "string" },
    "top-k": { type: "string" },
    "top-p": { type: "string" },
    "min-p": { type: "string" },
    "repetition-penalty": { type: "string" },
    seed: { type: "string" },
    stop: { type: "string", multiple: true },
    backend: { type: "string" },
    threads: { type: "string" },
    json: { type: "boolean" }
  })
  if ((v.prompt === undefined) === (v["prompt-ids"] === undefined)) throw new UsageError("give exactly one of --prompt or --prompt-ids")
  const sampling: SamplingOptions = {
    temperature: float("temperature", v.temperature, 0, 100) ?? 0,
    topK: int("top-k", v["top-k"], 0) ?? 0,
    topP: float("top-p", v["top-p"], Number.MIN_VALUE, 1, "a number in (0, 1]") ?? 1,
    minP: float("min-p", v["min-p"], 0, 1) ?? 0,
    repetitionPenalty: float("repetition-penalty", v["repetition-penalty"], Number.MIN_VALUE, 100, "a number in (0, 100]") ?? 1,
    seed: int("seed", v.seed, 0) ?? 0
  }
  const maxTokens = int("max-tokens", v["max-tokens"], 1)
  const promptIds = v["prompt-ids"] === undefined ? undefined : idList("prompt-ids", v["prompt-ids"])
  const backend = oneOf("backend", v.backend, backendNames) ?? "reference"
  const threads = int("threads", v.threads, 1)
  const dir = v.model ?? defaultModelDir()
  const json = v.json === true

  return Effect.gen(function* () {
    const checkpoint = yield* loadCheckpoint(dir)
    const tokenizer = checkpoint.tokenizer
    if (promptIds === undefined && tokenizer === undefined)
      return yield* Effect.fail(new UsageError(`${dir} has no tokenizer.json: use --prompt-ids`))
    const prompt = promptIds ?? tokenizer!.encode(v.prompt!)
    const model = yield* Model.fromCheckpoint(checkpoint)
    if (!json && v.prompt !== undefined) io.out(v.prompt)
    let finished: Extract<Generation.GenerationEvent, { _tag: "Finished" }> | undefined
    yield* Generation.generate(model, {
      prompt,
      maxNewTokens: maxTokens ?? checkpoint.generation.maxNewTokens ?? 128,
      sampling,
      eosTokenIds: checkpoint.eosTokenIds,
      stopStrings: v.stop ?? [],
      tokenizer
    }).pipe(
      Stream.runForEach((event) =>
        Effect.sync(() => {
          if (event._tag === "Finished") finished = event
          else if (event._tag === "Committed" && !json) io.out(tokenizer === undefined ? `${event.token} ` : event.text)
        })
      )
    )
    const f = finished!
    if (json) io.out(JSON.stringify({ tokens: f.tokens, text: f.text, stopReason: f.reason, stats: f.stats }) + "\n")
    else {
      io.out("\n")
      const s = f.stats
      io.err(
        `[${f.reason}] ${s.generatedTokens} tokens, ${s.tokensPerSecond.toFixed(1)} tok/s, prefill ${s.promptTokens} tokens in ${s.prefillMs.toFixed(0)} ms, backend ${s.backend}\n`
      )
    }
  }).pipe(Effect.provide(backendLayer(backend, threads)))
}
