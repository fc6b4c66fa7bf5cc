/**
 * `sirius bench`: decode speed against the machine's measured read bandwidth, verification cost, optionally
 * llama.cpp on the same weights, and with --sparsity the sparse decode speed-ups and the projected Sirius
 * speed at a given AAL. Figures are from one run: compare ratios, not absolute numbers across runs.
 */
import { Effect } from "effect"
import { formatReport, runBench } from "../bench/index.ts"
import { runSparseBench } from "../bench/sparse.ts"
import { float, int, oneOf, parse, UsageError } from "./args.ts"
import { backendLayer, backendNames } from "./backends.ts"
import { defaultModelDir } from "./root.ts"

export const usage = `sirius bench [--model DIR] [--backend reference|simd|gpu...] [--threads N] [--tokens N]
    [--compare-llama-cpp] [--sparsity coarse,fine] [--density 0.5] [--period 16] [--aal X] [--json]`

export const run = (argv: ReadonlyArray<string>, io: { out: (s: string) => void; err: (s: string) => void }) => {
  const v = parse(argv, {
    model: { type: "string" },
    backend: { type: "string" },
    threads: { type: "string" },
    tokens: { type: "string" },
    "compare-llama-cpp": { type: "boolean" },
    sparsity: { type: "string" },
    density: { type: "string" },
    period: { type: "string" },
    aal: { type: "string" },
    json: { type: "boolean" }
  })
  const backend = oneOf("backend", v.backend, backendNames) ?? "simd"
  const threads = int("threads", v.threads, 1) ?? 2
  const tokens = int("tokens", v.tokens, 1)
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
