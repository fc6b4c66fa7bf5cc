/**
 * `sirius bench`: decode speed against the machine's measured read bandwidth, verification cost, optionally
 * llama.cpp on the same weights, and with --sparsity the sparse decode speed-ups and the projected Sirius
 * speed at a given AAL. Figures are from one run: compare ratios, not absolute numbers across runs.
 */
import { Effect } from "effect"
import { formatReport, runBench } from "../bench/index.ts"
import { runSparseBench } from "../bench/sparse.ts"
import { type Flags, float, int, oneOf, parse, UsageError } from "./args.ts"
import { backendLayer, backendNames } from "./backends.ts"
import { defaultModelDir } from "./root.ts"

export const summary = "Decode speed against the machine's bandwidth, verification cost, sparse speed-ups, optionally llama.cpp."
export const usage = `sirius bench [--model DIR] [flags]`

export const flags = {
  model: { type: "string", value: "DIR", help: "model directory", default: "the bundled sirius-tiny-arith" },
  backend: { type: "string", value: backendNames.join("|"), help: "compute backend", default: "simd" },
  threads: { type: "string", value: "N", help: "threads (simd, and llama.cpp with --compare-llama-cpp)", default: "2" },
  tokens: { type: "string", value: "N", help: "decode steps timed", default: "depends on the model's size" },
  "compare-llama-cpp": { type: "boolean", help: "also time llama.cpp (node-llama-cpp) on the same weights: the .gguf itself, else written as GGUF" },
  prefill: { type: "string", value: "N", help: "also time the prefill of an N-token prompt (and llama.cpp's, with --compare-llama-cpp)" },
  sparsity: { type: "string", value: "coarse,fine", help: "also time sparse decoding at these granularities" },
  density: { type: "string", value: "ρ", help: "(--sparsity) fraction of MLP neurons kept", default: "0.5" },
  period: { type: "string", value: "k", help: "(--sparsity) verification window for the Sirius projection", default: "16" },
  aal: { type: "string", value: "X", help: "(--sparsity) average advance length for the Sirius projection", default: "k" },
  json: { type: "boolean", help: "print one JSON object" }
} as const satisfies Flags

export const run = (argv: ReadonlyArray<string>, io: { out: (s: string) => void; err: (s: string) => void }) => {
  const v = parse(argv, flags)
  for (const flag of ["density", "period", "aal"] as const)
    if (v[flag] !== undefined && v.sparsity === undefined) throw new UsageError(`--${flag} applies with --sparsity`)
  const backend = oneOf("backend", v.backend, backendNames) ?? "simd"
  const threads = int("threads", v.threads, 1) ?? 2
  const tokens = int("tokens", v.tokens, 1)
  const prefillTokens = int("prefill", v.prefill, 1)
  const granularities = (v.sparsity ?? "").split(",").filter((s) => s !== "")
  for (const g of granularities) if (g !== "fine" && g !== "coarse") throw new UsageError(`--sparsity takes coarse and/or fine, comma-separated (got "${g}")`)
  const density = float("density", v.density, Number.MIN_VALUE, 1, "a number in (0, 1]") ?? 0.5
  const period = int("period", v.period, 1) ?? 16
  const aal = float("aal", v.aal, 1, period, `a number in [1, ${period}]`)
  const modelDir = v.model ?? defaultModelDir()
  const kernels = backendLayer(backend, threads)

  return Effect.promise(async () => {
    const dense = await runBench({
      modelDir,
      backend: backend === "reference" || backend === "simd" ? backend : "gpu",
      threads,
      kernels,
      compareLlamaCpp: v["compare-llama-cpp"] === true,
      ...(prefillTokens !== undefined ? { prefillTokens } : {}),
      ...(tokens !== undefined ? { tokens } : {})
    })
    const sparse =
      granularities.length === 0
        ? undefined
        : await runSparseBench({
            modelDir,
            kernels,
            granularities: granularities as Array<"fine" | "coarse">,
            density,
            correctionPeriod: period,
            ...(aal !== undefined ? { aal } : {}),
            ...(tokens !== undefined ? { tokens } : {})
          })
    if (v.json === true) io.out(JSON.stringify({ ...dense, ...(sparse ? { sparse } : {}) }) + "\n")
    else {
      io.out(formatReport(dense) + "\n")
      if (sparse) {
        io.out(`sparse decode (ρ=${density}), dense ${sparse.denseMsPerToken.toFixed(2)} ms/token, ${period}-token verification ${sparse.verifyMs.toFixed(2)} ms (${sparse.verifyCostRatio.toFixed(2)}× a decode step):\n`)
        for (const r of sparse.rows)
          io.out(
            `  ${r.granularity}: ${r.msPerToken.toFixed(2)} ms/token, parameter density ${r.parameterDensity.toFixed(3)}, speed-up ${r.speedup.toFixed(2)}× of ideal ${r.idealSpeedup.toFixed(2)}× (${(100 * r.fractionOfIdeal).toFixed(0)}%), per-request setup ${r.setupMs.toFixed(0)} ms; Sirius at AAL ${r.sirius.aal}/${period}: ${r.sirius.tokensPerSecond.toFixed(1)} tok/s = ${r.sirius.speedupOverFull.toFixed(2)}× full\n`
          )
      }
    }
  })
}
