/**
 * `sirius quantize IN OUT.gguf --type q8_0|q4_0|q4_k|q6_k|q4_k_m|f16|bf16|f32`: read an HF model
 * directory or a GGUF file and write a GGUF file llama.cpp loads, with the weight matrices in the
 * chosen type (Gguf.writeGguf; ggml's reference quantizers, Quant.ts).
 *
 * `q4_k_m` is llama-quantize's Q4_K_M-like mix: Q4_K, with Q6_K for attn_v, ffn_down and output. A
 * matrix whose rows do not fit the type's blocks falls back (K-quants to Q8_0, then F16) and is
 * reported. Norms and biases stay F32. The tokenizer goes along: a GGUF's `tokenizer.*` metadata is
 * copied as it is; an HF directory's tokenizer.json is converted when it is one of the forms sirius-ts
 * reads back (GgufTokenizer.ggufVocabFromTokenizerJson), and a directory without one gets the
 * id-only filler vocabulary (Gguf.defaultVocab). The chat template is kept.
 *
 * Not here: importance matrices (llama-quantize's --imatrix), other quantized types.
 */
import { Effect } from "effect"
import { existsSync, readFileSync, statSync } from "node:fs"
import { join } from "node:path"
import { loadCheckpoint } from "../src/Checkpoint.ts"
import { defaultVocab, GgufError, readGgufHeader, writeGguf } from "../src/Gguf.ts"
import type { GgufValue, WriteGgufOptions } from "../src/Gguf.ts"
import { ggufVocabFromTokenizerJson } from "../src/GgufTokenizer.ts"
import type { DType } from "../src/Tensor.ts"
import { type Flags, oneOf, parse, UsageError } from "./args.ts"

const types = ["q8_0", "q4_0", "q4_k", "q6_k", "q4_k_m", "f16", "bf16", "f32"] as const

export const summary = "Write an HF model directory or a GGUF file as a GGUF file with quantized (or f16/bf16/f32) weights."
export const usage = `sirius quantize IN OUT.gguf --type ${types.join("|")} [flags]`

export const flags = {
  type: { type: "string", value: types.join("|"), help: "storage of the weight matrices (q4_k_m: Q4_K, Q6_K for attn_v, ffn_down, output; required)" },
  json: { type: "boolean", help: "print one JSON object: output, type, bytes, seconds, tensors per type, fallbacks" }
} as const satisfies Flags
type TypeName = (typeof types)[number]

/** Writer options for a `--type`. */
export const typeOptions = (type: TypeName): Pick<WriteGgufOptions, "fileType" | "tensorType" | "llamaFileType"> => {
  if (type === "q4_k_m")
    return { fileType: "Q4_K", llamaFileType: 15, tensorType: (name) => (/\.attn_v\.|\.ffn_down\.|^output\./.test(name) ? "Q6_K" : undefined) }
  return { fileType: type.toUpperCase() as DType }
}

const readJson = (file: string): unknown => JSON.parse(readFileSync(file, "utf8"))

export const run = (argv: ReadonlyArray<string>, io: { out: (s: string) => void; err: (s: string) => void }) => {
  const positional = argv.filter((a, i) => !a.startsWith("--") && !(i > 0 && argv[i - 1] === "--type"))
  const rest = argv.filter((a) => !positional.includes(a))
  const v = parse(rest, flags)
  if (positional.length !== 2) throw new UsageError(`quantize takes IN and OUT.gguf (got ${positional.length} paths)`)
  const [input, output] = positional as [string, string]
  if (!output.endsWith(".gguf")) throw new UsageError(`OUT must end in .gguf (got "${output}")`)
  const type = oneOf("type", v.type, types)
  if (type === undefined) throw new UsageError(`--type is required (${types.join("|")})`)

  return Effect.gen(function* () {
    const started = performance.now()
    const checkpoint = yield* loadCheckpoint(input)
    const isGguf = checkpoint.path !== checkpoint.dir // a GGUF file's dir is the folder holding it
    let vocab: WriteGgufOptions["vocab"]
    if (isGguf) {
      const header = yield* readGgufHeader(input)
      const copied = new Map<string, GgufValue>([...header.metadata].filter(([k]) => k.startsWith("tokenizer.") && k !== "tokenizer.chat_template"))
      vocab = copied.size > 0 ? copied : undefined
    } else if (existsSync(join(input, "tokenizer.json"))) {
      const configFile = join(input, "tokenizer_config.json")
      const converted = yield* Effect.try({
        try: () => ggufVocabFromTokenizerJson(readJson(join(input, "tokenizer.json")), existsSync(configFile) ? readJson(configFile) : {}, checkpoint.config.vocabSize),
        catch: (e) => new UsageError(`${input}/tokenizer.json: ${(e as Error).message}`)
      })
      if ("unsupported" in converted) return yield* Effect.fail(new UsageError(`${input}/tokenizer.json cannot be written as a GGUF tokenizer: ${converted.unsupported}`))
      vocab = converted.vocab
    }
    if (vocab === undefined) {
      if (checkpoint.config.vocabSize < 259)
        return yield* Effect.fail(new UsageError(`${input} has no tokenizer and its vocabulary (${checkpoint.config.vocabSize}) is too small for the filler vocabulary llama.cpp needs (≥ 259)`))
      io.err(`sirius quantize: ${input} has no tokenizer; writing the id-only filler vocabulary\n`)
      vocab = defaultVocab(checkpoint.config.vocabSize)
    }
    const report = yield* Effect.try({
      try: () =>
        writeGguf(output, checkpoint.config, checkpoint.weights, {
          ...typeOptions(type),
          vocab,
          ...(checkpoint.chatTemplate === undefined ? {} : { chatTemplate: checkpoint.chatTemplate }),
          name: `sirius-ts ${type}`
        }),
      catch: (e) => new GgufError({ file: output, field: "", tensor: "", message: `${output}: cannot write (${(e as Error).message})` })
    })
    const byType: Record<string, number> = {}
    for (const t of report.tensors) byType[t.dtype] = (byType[t.dtype] ?? 0) + 1
    const fallbacks = report.tensors.filter((t) => t.fallbackFrom !== undefined).map((t) => `${t.name} (${t.fallbackFrom} → ${t.dtype})`)
    const bytes = statSync(output).size
    const seconds = (performance.now() - started) / 1000
    if (v.json === true) io.out(JSON.stringify({ output, type, bytes, seconds, tensors: byType, fallbacks }) + "\n")
    else
      io.err(
        `wrote ${output}: ${(bytes / 2 ** 20).toFixed(1)} MiB in ${seconds.toFixed(1)} s, tensors ${Object.entries(byType)
          .map(([t, n]) => `${n} ${t}`)
          .join(", ")}${fallbacks.length > 0 ? `; fell back: ${fallbacks.join(", ")}` : ""}\n`
      )
  })
}
