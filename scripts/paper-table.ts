/**
 * Reproduce the paper's table on the bundled model, and its accuracy-vs-effective-density chart.
 *
 * Rows: full / coarse / coarse + Sirius / fine / fine + Sirius, columns accuracy, parameter density, AAL (as
 * X/k), effective density, tokens/s; a density sweep of sparse decoding (0.3–0.9); and Sirius (coarse) over
 * a grid of thresholds and periods for the chart. Writes docs/results/paper-table.json, the chart
 * docs/results/accuracy-vs-density.svg (Vega-Lite), and the README section between the paper-table markers.
 *
 * Run: npm run build && node dist/scripts/paper-table.js [--limit N] [--density 0.5] [--backend simd] [--threads 2]
 */
import { Effect } from "effect"
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { parseArgs } from "node:util"
import { backendLayer } from "../cli/backends.ts"
import { defaultDataFile } from "../cli/eval.ts"
import { loadModel, requestStream, settings } from "../cli/generate.ts"
import { defaultModelDir, packageRoot } from "../cli/root.ts"
import * as Eval from "../src/Eval.ts"

const { values } = parseArgs({
  options: { limit: { type: "string" }, density: { type: "string" }, backend: { type: "string" }, threads: { type: "string" } }
})
const limit = values.limit === undefined ? Infinity : Number(values.limit)
const density = values.density ?? "0.5"
const backend = (values.backend ?? "simd") as "simd" | "reference"
const threads = values.threads ?? "2"
const root = packageRoot()
const outDir = join(root, "docs", "results")

type Flags = Parameters<typeof settings>[0]
interface Row extends Eval.EvalReport {
  readonly label: string
  readonly flags: Flags
}

const program = Effect.gen(function* () {
  const problems = (yield* Eval.readProblems(defaultDataFile())).slice(0, limit)
  const rule = (yield* Eval.declaredRule(defaultModelDir()))!
  const base: Flags = { backend, threads, "max-tokens": "96" }
  // one load serves every row: fine sparsity's transposed down_proj included
  const { checkpoint, model } = yield* loadModel(settings({ ...base, mode: "sirius", sparsity: "fine" }), { err: (s) => void process.stderr.write(s) })
  const run = (label: string, flags: Flags) =>
    Effect.gen(function* () {
      const s = settings({ ...base, ...flags })
      const t0 = performance.now()
      const report = yield* Eval.evaluate(problems, rule, (prompt) => Effect.flatMap(requestStream(s, checkpoint, model, prompt), Eval.outcomeOf))
      process.stderr.write(`${label.padEnd(44)} accuracy ${report.accuracy.toFixed(3)} AAL ${report.aal?.toFixed(2) ?? "-"} eff ${report.effectiveDensity.toFixed(3)} (${((performance.now() - t0) / 1000).toFixed(0)} s)\n`)
      return { label, flags, ...report } satisfies Row
    })

  const table = [
    yield* run("full", { mode: "full" }),
    yield* run(`coarse (ρ=${density})`, { mode: "sparse", sparsity: "coarse", density }),
    yield* run("coarse + Sirius (k=16, threshold 0.1)", { mode: "sirius", sparsity: "coarse", density }),
    yield* run("coarse + Sirius, tree width 4", { mode: "sirius", sparsity: "coarse", density, "tree-width": "4" }),
    yield* run(`fine (ρ=${density})`, { mode: "sparse", sparsity: "fine", density }),
    yield* run("fine + Sirius (k=16, threshold 0.1)", { mode: "sirius", sparsity: "fine", density }),
    yield* run("fine + Sirius, tree width 4", { mode: "sirius", sparsity: "fine", density, "tree-width": "4" })
  ]
  const sweep: Array<Row> = []
  for (const granularity of ["coarse", "fine"] as const)
    for (const d of ["0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"])
      sweep.push(yield* run(`${granularity} ρ=${d}`, { mode: "sparse", sparsity: granularity, density: d }))
  const grid: Array<Row> = []
  for (const period of ["4", "8", "16"])
    for (const threshold of ["0.02", "0.05", "0.1", "0.2", "0.4"])
      grid.push(yield* run(`coarse + Sirius k=${period} threshold ${threshold}`, { mode: "sirius", sparsity: "coarse", density, period, threshold }))
  return { problems: problems.length, backend: model.kernels.name, density: Number(density), table, sweep, grid }
})

const results = await Effect.runPromise(program.pipe(Effect.provide(backendLayer(backend, Number(threads)))))
mkdirSync(outDir, { recursive: true })
writeFileSync(join(outDir, "paper-table.json"), JSON.stringify(results, null, 2) + "\n")

// the chart: accuracy against effective density as the threshold and the period vary
const [vega, vl] = await Promise.all([import("vega"), import("vega-lite")])
const points = [
  ...results.grid.map((r) => ({ series: `Sirius, period ${r.flags.period}`, effectiveDensity: r.effectiveDensity, accuracy: r.accuracy, threshold: r.flags.threshold })),
  ...results.sweep.map((r) => ({ series: `${r.flags.sparsity} sparse (no correction)`, effectiveDensity: r.parameterDensity, accuracy: r.accuracy, threshold: "" })),
  { series: "full model", effectiveDensity: 1, accuracy: results.table[0]!.accuracy, threshold: "" }
]
const spec = vl.compile({
  $schema: "https://vega.github.io/schema/vega-lite/v5.json",
  title: `Accuracy vs effective density (sirius-tiny-arith, ${results.problems} test problems, ρ=${density})`,
  width: 520,
  height: 340,
  data: { values: points },
  mark: { type: "line", point: true },
  encoding: {
    x: { field: "effectiveDensity", type: "quantitative", title: "effective density (parameters used per token / total)", scale: { zero: false } },
    y: { field: "accuracy", type: "quantitative", title: "accuracy", scale: { domain: [0, 1] } },
    color: { field: "series", type: "nominal", title: null },
    order: { field: "effectiveDensity", type: "quantitative" }
  }
} as Parameters<typeof vl.compile>[0]).spec
const svg = await new vega.View(vega.parse(spec), { renderer: "none" }).toSVG()
writeFileSync(join(outDir, "accuracy-vs-density.svg"), svg)

// the README section
const pct = (x: number) => x.toFixed(3)
const lines = [
  `Measured by \`node dist/scripts/paper-table.js\` on the ${results.problems} problems of \`data/arith/test.jsonl\`, backend ${results.backend}, greedy, max 96 new tokens.`,
  "",
  "| setting | accuracy | parameter density | AAL | effective density | tokens/s |",
  "|---|---|---|---|---|---|",
  ...results.table.map(
    (r) => `| ${r.label} | ${pct(r.accuracy)} | ${pct(r.parameterDensity)} | ${r.aal === undefined ? "—" : `${r.aal.toFixed(2)}/${r.correctionPeriod}`} | ${pct(r.effectiveDensity)} | ${r.tokensPerSecond.toFixed(0)} |`
  ),
  "",
  "Sparse decoding without correction, by density ρ (fraction of MLP neurons kept):",
  "",
  `| ρ | ${["0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"].join(" | ")} |`,
  "|---|---|---|---|---|---|---|---|",
  ...(["coarse", "fine"] as const).map((g) => `| ${g} | ${results.sweep.filter((r) => r.flags.sparsity === g).map((r) => pct(r.accuracy)).join(" | ")} |`),
  "",
  "![accuracy vs effective density](docs/results/accuracy-vs-density.svg)"
]
const readme = join(root, "README.md")
const text = readFileSync(readme, "utf8")
const start = "<!-- paper-table:start -->"
const end = "<!-- paper-table:end -->"
if (text.includes(start) && text.includes(end))
  writeFileSync(readme, text.slice(0, text.indexOf(start) + start.length) + "\n" + lines.join("\n") + "\n" + text.slice(text.indexOf(end)))
console.log(lines.join("\n"))
