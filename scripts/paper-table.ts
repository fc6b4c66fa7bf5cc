/**
 * The paper's figures on a bundled model: its table for both granularities, the sweeps, the charts.
 *
 *   npm run build
 *   node dist/scripts/paper-table.js [--model DIR] [--data FILE.jsonl] [--name NAME] [--limit N] [--density 0.5]
 *                                    [--threads 1] [--readme]
 *
 * On every problem of the model's test split (or the first --limit), greedy, the model's own answer rule
 * (its eval.json):
 *   - the table: full; coarse and fine sparse decoding at ρ; Sirius on each (k = 16, threshold 0.1), chain and
 *     tree width 4; greedy-exact Sirius on each (must equal full's answers); accuracy, parameter density, AAL,
 *     effective density, tokens/s, and the fraction of problems where threshold Sirius's output differs from
 *     greedy-exact's (the lossy acceptance at work);
 *   - sparse decoding by density ρ = 0.3..0.9;
 *   - a threshold sweep (accuracy and AAL against the acceptance threshold, 0.01–0.9), a period sweep (AAL and
 *     effective density against k) and a tree-width sweep (w = 1, 2, 4, 8), for both granularities;
 *   - the machine it ran on (CPU model and flags, Node, backend, threads) and the exact flags of every row.
 * Writes docs/results/NAME/paper-table.json and four SVG charts (Vega-Lite) there, prints the Markdown, and with
 * --readme replaces the README section between `<!-- paper-table:NAME:start -->` and `<!-- paper-table:NAME:end -->`.
 */
import { Effect } from "effect"
import { readFileSync, writeFileSync, mkdirSync } from "node:fs"
import { cpus } from "node:os"
import { basename, join, relative } from "node:path"
import { parseArgs } from "node:util"
import { backendLayer } from "../cli/backends.ts"
import { defaultDataFile } from "../cli/eval.ts"
import { loadModel, requestStream, settings } from "../cli/generate.ts"
import { defaultModelDir, packageRoot } from "../cli/root.ts"
import * as Eval from "../src/Eval.ts"

const { values } = parseArgs({
  options: {
    model: { type: "string" },
    data: { type: "string" },
    name: { type: "string" },
    limit: { type: "string" },
    density: { type: "string" },
    threads: { type: "string" },
    readme: { type: "boolean" }
  }
})
const modelDir = values.model ?? defaultModelDir()
const dataFile = values.data ?? defaultDataFile()
const name = values.name ?? basename(modelDir)
const limit = values.limit === undefined ? Infinity : Number(values.limit)
const density = values.density ?? "0.5"
const threads = values.threads ?? "1"
const root = packageRoot()
const outDir = join(root, "docs", "results", name)

type Flags = Parameters<typeof settings>[0]
interface Row extends Eval.EvalReport {
  readonly label: string
  readonly flags: Flags
  readonly texts: ReadonlyArray<string>
  readonly seconds: number
}

const cpuFlags = (): string => {
  try {
    const flags = readFileSync("/proc/cpuinfo", "utf8").match(/^flags\s*:(.*)$/m)?.[1]?.split(/\s+/) ?? []
    return flags.filter((f) => /^(avx|avx2|fma|avx512f|avx512_bf16|avx_vnni|avx512_vnni|amx)/.test(f)).join(" ")
  } catch {
    return "unknown"
  }
}

const program = Effect.gen(function* () {
  const problems = (yield* Eval.readProblems(dataFile)).slice(0, limit)
  const rule = yield* Eval.declaredRule(modelDir)
  if (rule === undefined) return yield* Effect.die(new Error(`${modelDir} declares no answer rule (eval.json)`))
  const base: Flags = { model: modelDir, backend: "simd", threads }
  // one load serves every row: fine sparsity's transposed down_proj included
  const { checkpoint, model } = yield* loadModel(settings({ ...base, mode: "sirius", sparsity: "fine" }), { err: (s) => void process.stderr.write(s) })
  const run = (label: string, flags: Flags) =>
    Effect.gen(function* () {
      const s = settings({ ...base, ...flags })
      const texts: Array<string> = []
      const t0 = performance.now()
      const report = yield* Eval.evaluate(problems, rule, (prompt) =>
        Effect.flatMap(requestStream(s, checkpoint, model, { prompt }), Eval.outcomeOf).pipe(Effect.tap((o) => Effect.sync(() => void texts.push(o.text))))
      )
      const seconds = (performance.now() - t0) / 1000
      process.stderr.write(`${label.padEnd(48)} accuracy ${report.accuracy.toFixed(3)} AAL ${report.aal?.toFixed(2) ?? "-"} eff ${report.effectiveDensity.toFixed(3)} (${seconds.toFixed(0)} s)\n`)
      return { label, flags, texts, seconds, ...report } satisfies Row
    })

  const sirius = (g: string, extra: Flags = {}): Flags => ({ mode: "sirius", sparsity: g, density, ...extra })
  // untimed warm-up (JIT, worker threads), so the first row's tokens/s is not the cold start's
  for (const flags of [{ mode: "full" }, sirius("coarse"), sirius("fine")] as const)
    for (const p of problems.slice(0, 16)) yield* Effect.flatMap(requestStream(settings({ ...base, ...flags }), checkpoint, model, { prompt: p.prompt }), Eval.outcomeOf)
  const table: Array<Row> = [yield* run("full", { mode: "full" })]
  const differs: Record<string, number> = {}
  for (const g of ["coarse", "fine"] as const) {
    table.push(yield* run(`${g} (ρ=${density})`, { mode: "sparse", sparsity: g, density }))
    const chain = yield* run(`${g} + Sirius (k=16, threshold 0.1)`, sirius(g))
    table.push(chain)
    table.push(yield* run(`${g} + Sirius, tree width 4`, sirius(g, { "tree-width": "4" })))
    const exact = yield* run(`${g} + Sirius, greedy-exact`, sirius(g, { acceptance: "greedy-exact" }))
    table.push(exact)
    differs[g] = chain.texts.filter((t, i) => t !== exact.texts[i]).length / problems.length
  }
  const full = table[0]!
  const exactEqualsFull = Object.fromEntries(
    table.filter((r) => r.flags.acceptance === "greedy-exact").map((r) => [r.flags.sparsity!, r.texts.every((t, i) => t === full.texts[i])])
  )

  const densities = ["0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"]
  const sweep: Array<Row> = []
  for (const g of ["coarse", "fine"] as const) for (const d of densities) sweep.push(yield* run(`${g} ρ=${d}`, { mode: "sparse", sparsity: g, density: d }))

  const thresholds = ["0.01", "0.05", "0.1", "0.2", "0.3", "0.5", "0.7", "0.9"]
  const periods = ["4", "8", "12", "16", "24", "32"]
  const widths = ["1", "2", "4", "8"]
  const thresholdSweep: Array<Row> = []
  const periodSweep: Array<Row> = []
  const widthSweep: Array<Row> = []
  for (const g of ["coarse", "fine"] as const) {
    for (const t of thresholds) thresholdSweep.push(yield* run(`${g} + Sirius threshold ${t}`, sirius(g, { threshold: t })))
    for (const k of periods) periodSweep.push(yield* run(`${g} + Sirius k=${k}`, sirius(g, { period: k })))
    for (const w of widths) widthSweep.push(yield* run(`${g} + Sirius tree width ${w}`, sirius(g, { "tree-width": w })))
  }
  const machine = {
    cpu: cpus()[0]?.model ?? "unknown",
    cpuFlags: cpuFlags(),
    cores: cpus().length,
    node: process.version,
    backend: model.kernels.name,
    threads: Number(threads)
  }
  const strip = (rows: ReadonlyArray<Row>) => rows.map(({ texts: _texts, ...r }) => r)
  return {
    model: name,
    data: relative(root, dataFile),
    problems: problems.length,
    answerRule: rule.pattern.source,
    density: Number(density),
    machine,
    differsFromGreedyExact: differs,
    greedyExactEqualsFull: exactEqualsFull,
    table: strip(table),
    sweep: strip(sweep),
    thresholdSweep: strip(thresholdSweep),
    periodSweep: strip(periodSweep),
    widthSweep: strip(widthSweep)
  }
})

const results = await Effect.runPromise(program.pipe(Effect.provide(backendLayer("simd", Number(threads)))))
mkdirSync(outDir, { recursive: true })
writeFileSync(join(outDir, "paper-table.json"), JSON.stringify(results, null, 2) + "\n")

// ---- charts (Vega-Lite → SVG) ----
const [vega, vl] = await Promise.all([import("vega"), import("vega-lite")])
const chart = async (file: string, title: string, points: ReadonlyArray<Record<string, unknown>>, x: { field: string; title: string; scale?: object }, y: { field: string; title: string; scale?: object }) => {
  const spec = vl.compile({
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title,
    width: 520,
    height: 320,
    data: { values: points as Array<Record<string, unknown>> },
    mark: { type: "line", point: true },
    encoding: {
      x: { field: x.field, type: "quantitative", title: x.title, scale: { zero: false, ...x.scale } },
      y: { field: y.field, type: "quantitative", title: y.title, scale: { zero: false, ...y.scale } },
      color: { field: "series", type: "nominal", title: null },
      order: { field: x.field, type: "quantitative" }
    }
  } as Parameters<typeof vl.compile>[0]).spec
  writeFileSync(join(outDir, file), await new vega.View(vega.parse(spec), { renderer: "none" }).toSVG())
}
const n = results.problems
const full = results.table[0]!
await chart(
  "accuracy-vs-density.svg",
  `Accuracy vs effective density (${name}, ${n} test problems, ρ=${density})`,
  [
    ...results.thresholdSweep.map((r) => ({ series: `${r.flags.sparsity} + Sirius (threshold sweep, k=16)`, x: r.effectiveDensity, y: r.accuracy })),
    ...results.sweep.map((r) => ({ series: `${r.flags.sparsity} sparse (no correction)`, x: r.parameterDensity, y: r.accuracy })),
    { series: "full model", x: 1, y: full.accuracy }
  ],
  { field: "x", title: "effective density (parameters used per token / total)" },
  { field: "y", title: "accuracy", scale: { domain: [0, 1] } }
)
await chart(
  "threshold-sweep.svg",
  `Accuracy and AAL vs acceptance threshold (${name}, k=16, ρ=${density})`,
  results.thresholdSweep.flatMap((r) => [
    { series: `${r.flags.sparsity}: accuracy`, x: Number(r.flags.threshold), y: r.accuracy },
    { series: `${r.flags.sparsity}: AAL / 16`, x: Number(r.flags.threshold), y: (r.aal ?? 0) / 16 }
  ]),
  { field: "x", title: "acceptance threshold", scale: { type: "log" } },
  { field: "y", title: "accuracy, AAL / k", scale: { domain: [0, 1] } }
)
await chart(
  "period-sweep.svg",
  `AAL / k and effective density vs period k (${name}, threshold 0.1, ρ=${density})`,
  results.periodSweep.flatMap((r) => [
    { series: `${r.flags.sparsity}: AAL / k`, x: Number(r.flags.period), y: (r.aal ?? 0) / Number(r.flags.period) },
    { series: `${r.flags.sparsity}: effective density`, x: Number(r.flags.period), y: r.effectiveDensity }
  ]),
  { field: "x", title: "correction period k" },
  { field: "y", title: "AAL / k, effective density" }
)
await chart(
  "tree-width-sweep.svg",
  `AAL and accuracy vs tree width (${name}, k=16, threshold 0.1, ρ=${density})`,
  results.widthSweep.flatMap((r) => [
    { series: `${r.flags.sparsity}: AAL / 16`, x: Number(r.flags["tree-width"]), y: (r.aal ?? 0) / 16 },
    { series: `${r.flags.sparsity}: accuracy`, x: Number(r.flags["tree-width"]), y: r.accuracy }
  ]),
  { field: "x", title: "tree width w" },
  { field: "y", title: "AAL / 16, accuracy", scale: { domain: [0, 1] } }
)

// ---- Markdown ----
const f3 = (x: number) => x.toFixed(3)
const aalOf = (r: { aal: number | undefined; correctionPeriod: number | undefined }) => (r.aal === undefined ? "—" : `${r.aal.toFixed(2)}/${r.correctionPeriod}`)
const m = results.machine
const rel = relative(root, outDir)
const lines = [
  `Measured by \`node dist/scripts/paper-table.js --model ${relative(root, modelDir)} --data ${results.data}${values.threads ? ` --threads ${threads}` : ""}\` on all ${n} problems of \`${results.data}\`, greedy, the model's answer rule \`${results.answerRule}\` (its eval.json); backend ${m.backend}, ${m.threads} thread(s), ${m.cpu} (${m.cores} cores; ${m.cpuFlags}), Node ${m.node}. Flags of each row are in \`${rel}/paper-table.json\`.`,
  "",
  "| setting | accuracy | parameter density | AAL | effective density | tokens/s |",
  "|---|---|---|---|---|---|",
  ...results.table.map((r) => `| ${r.label} | ${f3(r.accuracy)} | ${f3(r.parameterDensity)} | ${aalOf(r)} | ${f3(r.effectiveDensity)} | ${r.tokensPerSecond.toFixed(0)} |`),
  "",
  `Greedy-exact Sirius equals the full model's outputs on every problem: ${Object.entries(results.greedyExactEqualsFull).map(([g, ok]) => `${g} ${ok ? "yes" : "NO"}`).join(", ")}. Threshold-0.1 Sirius differs from greedy-exact on ${Object.entries(results.differsFromGreedyExact).map(([g, f]) => `${(100 * f).toFixed(1)}% (${g})`).join(" and ")} of the problems${Object.values(results.differsFromGreedyExact).some((f) => f > 0) ? ": the lossy acceptance at work" : ": on this model the lossy acceptance never changes an output"}.`,
  "",
  "Sparse decoding without correction, by density ρ (fraction of MLP neurons kept):",
  "",
  `| ρ | ${["0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"].join(" | ")} |`,
  "|---|---|---|---|---|---|---|---|",
  ...(["coarse", "fine"] as const).map((g) => `| ${g} | ${results.sweep.filter((r) => r.flags.sparsity === g).map((r) => f3(r.accuracy)).join(" | ")} |`),
  "",
  "Sirius (k = 16) by acceptance threshold: accuracy / AAL",
  "",
  `| threshold | ${[...new Set(results.thresholdSweep.map((r) => r.flags.threshold))].join(" | ")} |`,
  `|---|${results.thresholdSweep.filter((r) => r.flags.sparsity === "coarse").map(() => "---|").join("")}`,
  ...(["coarse", "fine"] as const).map((g) => `| ${g} | ${results.thresholdSweep.filter((r) => r.flags.sparsity === g).map((r) => `${f3(r.accuracy)} / ${r.aal?.toFixed(2)}`).join(" | ")} |`),
  "",
  "Sirius (threshold 0.1) by period k: AAL / k and effective density",
  "",
  `| k | ${[...new Set(results.periodSweep.map((r) => r.flags.period))].join(" | ")} |`,
  `|---|${results.periodSweep.filter((r) => r.flags.sparsity === "coarse").map(() => "---|").join("")}`,
  ...(["coarse", "fine"] as const).map((g) => `| ${g} | ${results.periodSweep.filter((r) => r.flags.sparsity === g).map((r) => `${r.aal?.toFixed(2)}/${r.flags.period}, ${f3(r.effectiveDensity)}`).join(" | ")} |`),
  "",
  "Sirius (k = 16, threshold 0.1) by tree width: accuracy, AAL, effective density",
  "",
  `| w | ${[...new Set(results.widthSweep.map((r) => r.flags["tree-width"]))].join(" | ")} |`,
  `|---|${results.widthSweep.filter((r) => r.flags.sparsity === "coarse").map(() => "---|").join("")}`,
  ...(["coarse", "fine"] as const).map((g) => `| ${g} | ${results.widthSweep.filter((r) => r.flags.sparsity === g).map((r) => `${f3(r.accuracy)}, ${r.aal?.toFixed(2)}, ${f3(r.effectiveDensity)}`).join(" | ")} |`),
  "",
  `![accuracy vs effective density](${rel}/accuracy-vs-density.svg)`,
  `![accuracy and AAL vs threshold](${rel}/threshold-sweep.svg)`,
  `![AAL and effective density vs period](${rel}/period-sweep.svg)`,
  `![AAL and accuracy vs tree width](${rel}/tree-width-sweep.svg)`
]
writeFileSync(join(outDir, "paper-table.md"), lines.join("\n") + "\n")
if (values.readme === true) {
  const readme = join(root, "README.md")
  const text = readFileSync(readme, "utf8")
  const start = `<!-- paper-table:${name}:start -->`
  const end = `<!-- paper-table:${name}:end -->`
  if (!text.includes(start) || !text.includes(end)) throw new Error(`README.md has no ${start} … ${end} section`)
  writeFileSync(readme, text.slice(0, text.indexOf(start) + start.length) + "\n" + lines.join("\n") + "\n" + text.slice(text.indexOf(end)))
}
console.log(lines.join("\n"))
