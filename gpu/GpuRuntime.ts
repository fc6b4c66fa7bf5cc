/**
 * GpuRuntime: owns one gpu.js `GPU` instance on one backend, compiles each kernel once and runs every
 * kernel under the async contract (gpu.js v3 will be async-only), checking on every call that the
 * backend it was built for is the one that actually ran.
 *
 * Backend choice: `mode: "gpu"` picks the best backend that answers here, in the order
 * webgpu → headlessgl → webgl2 → webgl → webasm → cpu; any other mode demands exactly that backend, and
 * an unavailable one is a BackendUnavailableError with the reason, never a silent fallback. gpu.js's own
 * `mode: "async"` is not used: it may upgrade single kernels to webgpu on their first call, which would
 * leave one model spread over two backends.
 *
 * WebGPU in Node: gpu.js sees WebGPU only through a global `navigator.gpu`. When none exists, the runtime
 * tries to provide one from the `webgpu` package (Dawn); its prebuilt binary needs glibc ≥ 2.38, so on
 * older systems the load fails and the reason is reported (`webGpuProbe`).
 *
 * Not here: the kernels themselves (one file per op, mirroring reference/), the Kernels service (index.ts).
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { CPUKernel, GPU, HeadlessGLKernel, WebAssemblyKernel, WebGL2Kernel, WebGLKernel } from "gpu.js"
import type { IKernelRunShortcut, IGPUKernelSettings, KernelFunction } from "gpu.js"
import { BackendUnavailableError, KernelError } from "../src/Kernels.ts"

export { BackendUnavailableError } from "../src/Kernels.ts"

/** The gpu.js backends, best first. */
export const gpuBackends = ["webgpu", "headlessgl", "webgl2", "webgl", "webasm", "cpu"] as const
export type GpuBackend = (typeof gpuBackends)[number]
/** `"gpu"`: the best backend available; a backend name: exactly that one. */
export type GpuMode = "gpu" | GpuBackend

export interface GpuRuntimeOptions {
  readonly mode: GpuMode
}

export interface GpuRuntime {
  /** What the caller asked for. */
  readonly requested: GpuMode
  /** The backend every kernel of this runtime runs on (checked after every call). */
  readonly backend: GpuBackend
  /** Why each better backend was not chosen (for `mode: "gpu"`), e.g. `{ webgpu: "no navigator.gpu" }`. */
  readonly skipped: Readonly<Partial<Record<GpuBackend, string>>>
  /** The kernel cached under `key`, compiled by `build` the first time the key is seen. */
  readonly kernel: (key: string, build: (create: CreateKernel) => IKernelRunShortcut) => IKernelRunShortcut
  /** Run a kernel: resize its output, await it, flatten the result, check which backend ran. */
  readonly run: (op: string, kernel: IKernelRunShortcut, output: ReadonlyArray<number>, args: ReadonlyArray<unknown>) => Effect.Effect<Float32Array, KernelError>
  /** Number of kernels compiled so far (for tests: compile-once). */
  readonly compiledKernels: () => number
  /** gpu.js kernels still holding resources: 0 once the scope has closed (for tests: the finalizer ran). */
  readonly liveKernels: () => number
}

/** `gpu.createKernel` with this runtime's settings (single precision, highp, async, dynamic sizes) applied. */
export type CreateKernel = (fn: KernelFunction, settings: KernelSettings) => IKernelRunShortcut

/** The settings a kernel file chooses; the rest is fixed by the runtime. */
export interface KernelSettings {
  readonly output: ReadonlyArray<number>
  readonly constants?: Record<string, unknown>
  /**
   * gpu.js `loopMaxIterations`: at least the longest loop this kernel runs (GLSL needs a constant bound,
   * and a longer loop would be cut short silently). Every kernel states its own reduction length.
   */
  readonly loopMaxIterations: number
}

// ---------------------------------------------------------------------------------------------------
// Availability

const errorText = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

const isNode = (): boolean => typeof process !== "undefined" && typeof process.versions?.node === "string"

let webGpuInstall: Promise<string | undefined> | undefined

/**
 * Make `navigator.gpu` exist, if it can: already there (browsers, Deno, a host that installed one), or
 * provided in Node by the `webgpu` package. Resolves to undefined on success, or to the reason it failed.
 * Runs once per process.
 */
export const webGpuProbe = (): Promise<string | undefined> => {
  webGpuInstall ??= (async () => {
    const g = globalThis as { navigator?: { gpu?: unknown } }
    if (g.navigator?.gpu !== undefined) return undefined
    if (!isNode()) return "navigator.gpu is missing (WebGPU not enabled in this browser?)"
    try {
      // A variable specifier: bundlers must not pull the Node-only Dawn binding into browser bundles.
      const specifier = "webgpu"
      const dawn = (await import(specifier)) as { create: (flags: Array<string>) => unknown; globals: object }
      Object.assign(globalThis, dawn.globals)
      const gpu = dawn.create([])
      if (g.navigator === undefined) Object.defineProperty(globalThis, "navigator", { value: { gpu }, configurable: true, writable: true })
      else Object.defineProperty(g.navigator, "gpu", { value: gpu, configurable: true })
      return undefined
    } catch (cause) {
      return `no navigator.gpu, and the webgpu package's Dawn binary did not load (it needs glibc ≥ 2.38): ${errorText(cause).split("\n")[0]}`
    }
  })()
  return webGpuInstall
}

/** Why `backend` cannot run here, or undefined when it can (as far as a cheap check tells). */
const unavailableReason = async (backend: GpuBackend): Promise<string | undefined> => {
  switch (backend) {
    case "webgpu": {
      const reason = await webGpuProbe()
      if (reason !== undefined) return reason
      return (await GPU.isWebGPUAvailable()) ? undefined : "navigator.gpu is present but requestAdapter() found no adapter"
    }
    case "headlessgl":
      if (!isNode()) return "headless-gl exists only in Node"
      return GPU.isHeadlessGLSupported
        ? undefined
        : "the optional `gl` package is not built (npm rebuild gl; needs libxi-dev) or there is no X display (run under xvfb-run)"
    case "webgl2":
      return GPU.isWebGL2Supported ? undefined : "WebGL2 is not available (not a browser, or WebGL disabled)"
    case "webgl":
      return GPU.isWebGLSupported ? undefined : "WebGL is not available (not a browser, or WebGL disabled)"
    case "webasm":
      return GPU.isWebAssemblySupported ? undefined : "WebAssembly is not available"
    case "cpu":
      return undefined
  }
}

/** The backends that run on a GPU, in preference order for `mode: "gpu"` (webasm and cpu only when named). */
export const deviceBackends = ["webgpu", "headlessgl", "webgl2", "webgl"] as const satisfies ReadonlyArray<GpuBackend>

/** `mode: "gpu"`: the first device backend that runs here, else an error naming each one tried and why not. */
const choose = Effect.fnUntraced(function* (mode: GpuMode) {
  const skipped: Partial<Record<GpuBackend, string>> = {}
  const candidates: ReadonlyArray<GpuBackend> = mode === "gpu" ? deviceBackends : [mode]
  for (const backend of candidates) {
    const reason = yield* Effect.promise(() => unavailableReason(backend))
    if (reason === undefined) return { backend, skipped }
    skipped[backend] = reason
  }
  const reasons = Object.entries(skipped)
  return yield* new BackendUnavailableError({
    requested: mode,
    reason: reasons.length === 1 ? reasons[0]![1] : `no GPU backend runs here; tried ${reasons.map(([b, r]) => `${b} (${r})`).join(", ")}`
  })
})

// ---------------------------------------------------------------------------------------------------
// Results

/** gpu.js returns Float32Array (1D), Float32Array[] (2D) or Float32Array[][] (3D): flatten row-major. */
const flatten = (result: unknown, size: number): Float32Array => {
  if (result instanceof Float32Array) return result.length === size ? result : result.slice(0, size)
  const out = new Float32Array(size)
  let at = 0
  const walk = (r: unknown): void => {
    if (ArrayBuffer.isView(r)) {
      out.set(r as Float32Array, at)
      at += (r as Float32Array).length
    } else if (Array.isArray(r)) for (const row of r) walk(row)
    else throw new Error(`unexpected kernel result ${Object.prototype.toString.call(r)}`)
  }
  walk(result)
  if (at !== size) throw new Error(`kernel returned ${at} values, expected ${size}`)
  return out
}

/**
 * The backend a built kernel actually ran on (`kernel.kernel.constructor`), and gpu.js's `fallbackReason`
 * if it degraded. The GL kernels all report `constructor.mode === "gpu"`, so they are told apart by class.
 */
export const ranOn = (kernel: IKernelRunShortcut): { readonly backend: string; readonly fallbackReason: string | null } => {
  const inner = (kernel as unknown as { kernel?: { constructor: { mode?: string }; fallbackReason?: string | null } }).kernel
  if (inner === undefined) return { backend: "unbuilt", fallbackReason: null }
  const ctor: unknown = inner.constructor
  const backend =
    ctor === HeadlessGLKernel ? "headlessgl"
    : ctor === WebGL2Kernel ? "webgl2"
    : ctor === WebGLKernel ? "webgl"
    : ctor === WebAssemblyKernel ? "webasm"
    : ctor === CPUKernel ? "cpu"
    : inner.constructor.mode ?? "unknown"
  return { backend, fallbackReason: inner.fallbackReason ?? null }
}

// ---------------------------------------------------------------------------------------------------
// The runtime

const probeKernel = function (this: { thread: { x: number } }, a: Float32Array, b: Float32Array): number {
  return a[this.thread.x]! + b[this.thread.x]!
}

/**
 * Acquire a runtime (and its GPU instance) in the current scope; `gpu.destroy()` runs when the scope
 * closes, releasing every kernel, texture and worker. Fails with BackendUnavailableError when the
 * requested backend cannot run, including when a probe kernel runs on another backend than chosen.
 */
export const make = (options: GpuRuntimeOptions): Effect.Effect<GpuRuntime, BackendUnavailableError, Scope.Scope> =>
  Effect.gen(function* () {
    const { backend, skipped } = yield* choose(options.mode)
    const gpu = yield* Effect.acquireRelease(
      Effect.try({
        try: () => new GPU({ mode: backend }),
        catch: (cause) => new BackendUnavailableError({ requested: options.mode, reason: `new GPU({ mode: "${backend}" }) failed: ${errorText(cause)}` })
      }),
      (g) => Effect.promise(() => Promise.resolve(g.destroy()).catch(() => undefined))
    )
    const kernels = new Map<string, IKernelRunShortcut>()

    const create: CreateKernel = (fn, settings) =>
      gpu.createKernel(fn, {
        output: [...settings.output],
        constants: settings.constants ?? {},
        precision: "single",
        tactic: "precision",
        loopMaxIterations: settings.loopMaxIterations,
        asyncMode: true,
        dynamicOutput: true,
        dynamicArguments: true
      } as IGPUKernelSettings)

    const run: GpuRuntime["run"] = (op, kernel, output, args) =>
      Effect.tryPromise({
        try: async () => {
          const size = output.reduce((a, b) => a * b, 1)
          kernel.setOutput([...output])
          const result: unknown = await (kernel as unknown as (...a: ReadonlyArray<unknown>) => unknown)(...args)
          const ran = ranOn(kernel)
          if (ran.backend !== backend || ran.fallbackReason !== null)
            throw new Error(`ran on ${ran.backend} instead of ${backend}${ran.fallbackReason === null ? "" : ` (${ran.fallbackReason})`}`)
          return flatten(result, size)
        },
        catch: (cause) => new KernelError({ op, backend: `gpu:${backend}`, message: `${op} on gpu:${backend}: ${errorText(cause)}` })
      })

    const runtime: GpuRuntime = {
      requested: options.mode,
      backend,
      skipped,
      kernel: (key, build) => {
        let k = kernels.get(key)
        if (k === undefined) {
          k = build(create)
          kernels.set(key, k)
        }
        return k
      },
      run,
      compiledKernels: () => kernels.size,
      liveKernels: () => (gpu as unknown as { kernels?: ReadonlyArray<unknown> }).kernels?.length ?? 0
    }

    // Probe: a tiny kernel must run on the chosen backend (e.g. an adapter that vanished, a GL context
    // that cannot be created under this display).
    const probe = runtime.kernel("probe", (c) => c(probeKernel as unknown as KernelFunction, { output: [2], loopMaxIterations: 1 }))
    const sum = yield* run("probe", probe, [2], [Float32Array.of(1, 2), Float32Array.of(3, 4)]).pipe(
      Effect.mapError((e) => new BackendUnavailableError({ requested: options.mode, reason: e.message }))
    )
    if (sum[0] !== 4 || sum[1] !== 6)
      return yield* new BackendUnavailableError({ requested: options.mode, reason: `probe kernel on ${backend} computed [${sum}] instead of [4, 6]` })
    return runtime
  })
