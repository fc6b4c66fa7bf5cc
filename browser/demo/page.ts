/**
 * The demo page's script (bundled by browser/demo/serve.ts): the real engine in the browser. It loads the
 * bundled model from the page's origin (browser/load.ts), makes it resident on the chosen backend (the gpu
 * pipeline on WebGPU or WebGL2, gpu.js's cpu mode for "cpu"), and runs Client.requestStream, the same
 * request core the CLI and the Node client use, drawing its Drafted / Verified / Committed events as they
 * come (trace.ts) with live AAL, effective density, tokens/s and the backend's transfers per forward pass.
 *
 * Status contract: `document.body.dataset.status` goes idle → loading → running → done, or error with the
 * message in `[data-testid=error]`; `[data-testid=output]` holds exactly the committed text.
 *
 * Not here: the markup (html.ts), the settings and URL contract (settings.ts), serving (serve.ts).
 */
import { Cause, Effect, Exit, Fiber, Scope, Stream } from "effect"
import { GpuKernels, type GpuKernelsShape } from "../../gpu/index.ts"
import * as Traffic from "../../gpu/Traffic.ts"
import type { Checkpoint } from "../../src/Checkpoint.ts"
import * as Client from "../../src/Client.ts"
import { Kernels, type KernelsShape } from "../../src/Kernels.ts"
import * as Model from "../../src/Model.ts"
import type { Event } from "../../src/Request.ts"
import * as Sparsity from "../../src/Sparsity.ts"
import { loadCheckpointFromUrl } from "../load.ts"
import { applies, backends, type DemoBackend, type DemoSettings, defaults, fromQuery, gpuOptions, parseSetting, request, toQuery } from "./settings.ts"
import { makeTrace } from "./trace.ts"

const $ = <E extends HTMLElement = HTMLElement>(id: string): E => {
  const e = document.getElementById(id)
  if (e === null) throw new Error(`the page has no #${id}`)
  return e as E
}

type Status = "idle" | "loading" | "running" | "done" | "error"
const setStatus = (status: Status, line: string) => {
  document.body.dataset.status = status
  $("status").textContent = line
}
const showError = (message: string) => {
  $("error").textContent = message
  setStatus("error", "failed")
}

// ---- settings ↔ controls ----

const knobs = Object.keys(defaults).filter((k) => k !== "prompt") as Array<Exclude<keyof DemoSettings, "prompt">>

const writeControls = (s: DemoSettings) => {
  $<HTMLTextAreaElement>("prompt").value = s.prompt
  for (const key of knobs) $<HTMLInputElement | HTMLSelectElement>(key).value = String(s[key])
  refreshKnobs()
}
const readControls = (): DemoSettings => {
  const s: Record<string, unknown> = { prompt: parseSetting("prompt", $<HTMLTextAreaElement>("prompt").value) }
  for (const key of knobs) s[key] = parseSetting(key, $<HTMLInputElement | HTMLSelectElement>(key).value)
  return s as unknown as DemoSettings
}
/** Grey out the knobs the mode does not read (the CLI refuses them; the page just ignores them). */
const refreshKnobs = () => {
  let s: DemoSettings
  try {
    s = readControls()
  } catch {
    return
  }
  for (const label of Array.from(document.querySelectorAll<HTMLElement>("label[data-knob]"))) {
    const on = applies(s, label.dataset.knob as keyof DemoSettings)
    label.classList.toggle("disabled", !on)
    for (const input of Array.from(label.querySelectorAll<HTMLInputElement | HTMLSelectElement>("input, select"))) input.disabled = !on
  }
}

// ---- the engine ----

interface Loaded {
  readonly backend: DemoBackend
  readonly scope: Scope.Closeable
  readonly kernels: GpuKernelsShape
  readonly model: Model.Model
}
let checkpoint: Checkpoint | undefined
let loaded: Loaded | undefined

const checkpointOnce = Effect.suspend(() => (checkpoint !== undefined ? Effect.succeed(checkpoint) : Effect.tap(loadCheckpointFromUrl("/model/"), (c) => Effect.sync(() => (checkpoint = c)))))

/** The model resident on `backend` (kept between requests; made again when the backend changes). */
const modelOn = (backend: DemoBackend) =>
  Effect.gen(function* () {
    if (loaded?.backend === backend) return loaded
    if (loaded !== undefined) {
      const old = loaded
      loaded = undefined
      yield* Scope.close(old.scope, Exit.void)
    }
    const c = yield* checkpointOnce
    const scope = yield* Scope.make()
    const made = yield* Effect.exit(
      Effect.gen(function* () {
        const kernels = yield* Scope.provide(GpuKernels.make(gpuOptions(backend)), scope)
        const t0 = performance.now()
        // { sparse: true }: down_proj transposed too, so every granularity runs without reloading
        const model = yield* Effect.provideService(Model.fromCheckpoint(c, { sparse: true }), Kernels, kernels as KernelsShape)
        return { backend, scope, kernels, model, uploadMs: performance.now() - t0 }
      })
    )
    if (Exit.isFailure(made)) {
      yield* Scope.close(scope, Exit.void)
      return yield* Effect.failCause(made.cause)
    }
    loaded = made.value
    $("status").textContent = `${made.value.kernels.name}: weights resident in ${made.value.uploadMs.toFixed(0)} ms`
    return made.value
  })

const tokenText = (id: number): string => {
  if (checkpoint?.eosTokenIds.includes(id)) return "⟨eos⟩"
  const t = checkpoint?.tokenizer?.decode([id]) ?? `⟨${id}⟩`
  return t === "\n" ? "⏎" : t === "" ? `⟨${id}⟩` : t
}

const trace = makeTrace($("trace"), tokenText)

/** Live statistics from the event stream (the engine's own at the end). */
const live = (s: DemoSettings, c: Checkpoint) => {
  const F = c.config.intermediateSize
  const dSparse = s.mode === "full" ? 1 : Sparsity.parameterDensity(c.config, s.sparsity, Sparsity.keptCount(F, s.density) / F)
  const advances: Array<number> = []
  let rollbacks = 0
  let committed = 0
  let firstAt = 0
  const show = (aal: number | undefined, effective: number | undefined, tps: number | undefined) => {
    $("stat-aal").textContent = aal === undefined ? "—" : `${aal.toFixed(2)} / ${s.period}`
    $("stat-density").textContent = effective === undefined ? "—" : effective.toFixed(3)
    $("stat-tps").textContent = tps === undefined ? "—" : tps.toFixed(1)
    $("stat-windows").textContent = s.mode === "sirius" ? `${advances.length} · ${rollbacks}` : "—"
  }
  return {
    onEvent: (e: Event) => {
      if (e._tag === "Verified") {
        advances.push(e.accepted + 1)
        if (e.rollback > 0) rollbacks++
      }
      if (e._tag === "Committed") {
        committed++
        if (committed === 1) firstAt = performance.now()
      }
      const aal = advances.length === 0 ? undefined : advances.reduce((a, b) => a + b, 0) / advances.length
      const effective = s.mode !== "sirius" ? dSparse : aal === undefined ? undefined : ((s.period - 1) * dSparse + 1) / aal
      const tps = committed > 1 ? (1000 * (committed - 1)) / (performance.now() - firstAt) : undefined
      if (e._tag === "Finished") {
        const st = e.stats as { aal?: number; effectiveDensity?: number; tokensPerSecond: number; parameterDensity: number }
        show(st.aal ?? aal, st.effectiveDensity ?? st.parameterDensity, st.tokensPerSecond)
      } else show(aal, effective, tps)
    }
  }
}

/** The backend's transfers per forward pass, from its runtime's counters. */
const showTraffic = (k: GpuKernelsShape, before: Traffic.Counts, forwards: number) => {
  const t = Traffic.snapshot(k.runtime.traffic)
  const last = t.forwards.at(-1)
  const kb = (n: number) => (n < 4096 ? `${n} B` : `${(n / 1024).toFixed(1)} KiB`)
  if (k.pipeline && last !== undefined) {
    $("traffic").textContent =
      `${k.name}, per forward pass (the last, T = ${last.tokens}): ${Traffic.uploads(last)} upload (${kb(last.inputBytes + last.residentBytes)}), ` +
      `${last.readbacks} readback (${kb(last.readbackBytes)}), ${last.dispatches} kernel launches; weights and KV cache stay on the device.`
    return
  }
  if (k.runtime.backend === "cpu" || k.runtime.backend === "webasm") {
    $("traffic").textContent = `${k.name}: gpu.js runs its kernels as ${k.runtime.backend === "cpu" ? "JavaScript" : "WebAssembly"} on this thread; there is no device to move data to.`
    return
  }
  const n = Math.max(1, forwards)
  const up = t.total.inputUploads - before.inputUploads
  const down = t.total.readbacks - before.readbacks
  $("traffic").textContent =
    `${k.name}, host path, per forward pass on average: ${(up / n).toFixed(0)} uploads (${kb(Math.round((t.total.inputBytes - before.inputBytes) / n))}), ` +
    `${(down / n).toFixed(0)} readbacks (${kb(Math.round((t.total.readbackBytes - before.readbackBytes) / n))}): every op's result comes back to JS.`
}

interface Example {
  readonly prompt: string
  readonly answer: string
}
let examples: ReadonlyArray<Example> = []
const answerRegex = /The answer is (-?[0-9]+)/

const generate = (s: DemoSettings) =>
  Effect.gen(function* () {
    $("error").textContent = ""
    $("output").textContent = ""
    $("prompt-echo").textContent = s.prompt
    $("run-point").textContent = ""
    trace.reset()
    setStatus("loading", `loading the model on ${s.backend}…`)
    const c = yield* checkpointOnce
    const m = yield* modelOn(s.backend)
    const req = request(s)
    setStatus("running", `generating on ${m.kernels.name}…`)
    const before = { ...m.kernels.runtime.traffic.total }
    const stats = live(s, c)
    let output = ""
    let forwards = 0
    yield* Stream.runForEach(Client.requestStream(c, m.model, req), (e) =>
      Effect.sync(() => {
        trace.onEvent(e)
        stats.onEvent(e)
        if (e._tag === "Committed") {
          output += e.text
          $("output").textContent = output
        }
        if (e._tag === "Finished") {
          // the final text (a pending character or stop string resolved)
          $("output").textContent = e.text
          forwards = e.stats.fullForwards + e.stats.sparseForwards
          const st = e.stats as { effectiveDensity?: number; parameterDensity: number }
          const got = answerRegex.exec(e.text)?.[1]
          const expected = examples.find((x) => x.prompt === s.prompt)?.answer
          $("run-point").textContent =
            `This run: effective density ${(st.effectiveDensity ?? st.parameterDensity).toFixed(3)}, answer ${got ?? "none"}` +
            (expected === undefined ? "" : got === expected ? " (correct)" : ` (expected ${expected})`)
        }
        if (e._tag === "Committed" || e._tag === "Finished") showTraffic(m.kernels, before, forwards)
      })
    )
    setStatus("done", `done on ${m.kernels.name}`)
  })

// ---- wiring ----

let running: Fiber.Fiber<void, unknown> | undefined

const start = (s: DemoSettings) => {
  if (running !== undefined) return
  history.replaceState(null, "", `?${toQuery(s)}`)
  $<HTMLButtonElement>("run").disabled = true
  $<HTMLButtonElement>("stop").disabled = false
  const fiber = Effect.runFork(generate(s))
  running = fiber
  fiber.addObserver((exit) => {
    running = undefined
    $<HTMLButtonElement>("run").disabled = false
    $<HTMLButtonElement>("stop").disabled = true
    if (Exit.isFailure(exit)) {
      if (Cause.hasInterruptsOnly(exit.cause)) setStatus("done", "stopped")
      else {
        const e = Cause.squash(exit.cause) as { _tag?: string; message?: string }
        showError(`${e._tag === undefined ? "" : `${e._tag}: `}${e.message ?? String(e)}`)
      }
    }
  })
}

const main = async () => {
  const backendSelect = $<HTMLSelectElement>("backend")
  const labels: Record<DemoBackend, string> = { webgpu: "WebGPU (gpu pipeline)", webgl2: "WebGL2 (gpu pipeline)", cpu: "CPU (gpu.js, JavaScript)" }
  for (const b of backends) backendSelect.append(new Option(labels[b], b))
  const fromUrl = fromQuery(new URLSearchParams(location.search))
  writeControls(fromUrl.settings)
  for (const id of ["mode", "acceptance", "temperature"]) $(id).addEventListener("change", refreshKnobs)
  $<HTMLSelectElement>("examples").addEventListener("change", (e) => {
    const v = (e.target as HTMLSelectElement).value
    if (v !== "") $<HTMLTextAreaElement>("prompt").value = examples[Number(v)]!.prompt
  })
  $("run").addEventListener("click", () => {
    try {
      start(readControls())
    } catch (e) {
      showError((e as Error).message)
    }
  })
  $("stop").addEventListener("click", () => {
    if (running !== undefined) Effect.runFork(Fiber.interrupt(running))
  })

  // the paper table and the test problems (for the example picker and a correctness check)
  void fetch("/results/paper-table.json")
    .then((r) => r.json())
    .then((t: { table?: ReadonlyArray<{ label?: string; accuracy?: number; effectiveDensity?: number; aal?: number; correctionPeriod?: number }> }) => {
      const body = document.querySelector("#paper tbody")!
      for (const row of t.table ?? []) {
        if (typeof row.label !== "string" || typeof row.accuracy !== "number" || typeof row.effectiveDensity !== "number") continue
        const tr = document.createElement("tr")
        for (const cell of [row.label, row.accuracy.toFixed(3), row.effectiveDensity.toFixed(3), row.aal === undefined ? "—" : `${row.aal.toFixed(2)}/${row.correctionPeriod}`]) {
          const td = document.createElement("td")
          td.textContent = cell
          tr.append(td)
        }
        body.append(tr)
      }
    })
    .catch(() => undefined)
  void fetch("/data/test.jsonl")
    .then((r) => r.text())
    .then((text) => {
      examples = text.split("\n").filter((l) => l.trim() !== "").slice(0, 40).map((l) => JSON.parse(l) as Example)
      examples.forEach((x, i) => $<HTMLSelectElement>("examples").append(new Option(x.prompt.split("\n")[0]!.slice(3, 70), String(i))))
    })
    .catch(() => undefined)

  if (fromUrl.errors.length > 0) showError(fromUrl.errors.join("\n"))
  else if (fromUrl.autorun) start(fromUrl.settings)
}

void main().catch((e: unknown) => showError(`the page failed to start: ${String(e)}`))
