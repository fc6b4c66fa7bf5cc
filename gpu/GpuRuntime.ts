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
 * Two ways to run a kernel. `run` (the host path) reads every result back to the host. `dispatch` (the
 * pipeline, gpu/pipeline.ts) keeps the result on the device as a DeviceBuffer that the next kernel takes as
 * an argument; `upload` and `readback` are then the only transfers, counted in `traffic` (Traffic.ts).
 *
 * A lost device or context is a KernelError on the next dispatch or readback, never a hang and never
 * silent zeros: WebGPU reports loss through `device.lost` (a pending readback is raced against it); a lost
 * WebGL context keeps accepting draws and reads back zeros, so every GL dispatch and readback checks
 * `isContextLost()`. `loseDevice` forces a loss, for tests (WebGPU: destroy the device; GL: the
 * WEBGL_lose_context extension).
 *
 * Not here: the kernels themselves (one file per op, mirroring reference/; the pipeline's in gpu/device/),
 * the Kernels service (index.ts, pipeline.ts).
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { CPUKernel, GPU, HeadlessGLKernel, Input, WebAssemblyKernel, WebGL2Kernel, WebGLKernel } from "gpu.js"
import type { IKernelRunShortcut, IGPUKernelSettings, KernelFunction } from "gpu.js"
import { BackendUnavailableError, KernelError } from "../src/Kernels.ts"
import * as Traffic from "./Traffic.ts"
import type { DeviceBuffer, KernelThis } from "./types.ts"

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

  // ---- the pipeline: results stay on the device ----
  /**
   * Run a pipeline kernel (built with `pipeline: true`): resize its output, launch it, keep the result on
   * the device. Work of a forward pass is charged to its record (`forward`).
   */
  readonly dispatch: (op: string, kernel: IKernelRunShortcut, output: ReadonlyArray<number>, args: ReadonlyArray<unknown>, forward?: Traffic.Counts) => Effect.Effect<DeviceBuffer, KernelError>
  /** Host values (rows, cols) onto the device as a [cols, rows] buffer: one upload. */
  readonly upload: (op: string, data: Float32Array, cols: number, rows: number, kind: "input" | "resident", forward?: Traffic.Counts) => Effect.Effect<DeviceBuffer, KernelError>
  /** A device buffer's values on the host, row-major: one readback. */
  readonly readback: (op: string, buffer: DeviceBuffer, forward?: Traffic.Counts) => Effect.Effect<Float32Array, KernelError>
  /** Free a device buffer (its memory returns to gpu.js, which may reuse it for a later output). */
  readonly release: (buffer: DeviceBuffer) => void
  /** Device buffers alive now and their bytes (weights included). */
  readonly live: () => { readonly buffers: number; readonly bytes: number }
  /** What crossed between host and device so far. */
  readonly traffic: Traffic.Traffic
  /** Why the device is unusable (lost device or context), or undefined while it works. */
  readonly lost: () => string | undefined
  /** Force a device loss (tests): WebGPU destroys its device, GL loses its context; a no-op on cpu/webasm. */
  readonly loseDevice: () => Effect.Effect<void>
}

/** `gpu.createKernel` with this runtime's settings (single precision, highp, async, dynamic sizes) applied. */
export type CreateKernel = (fn: KernelFunction, settings: KernelSettings) => IKernelRunShortcut

/** The settings a kernel file chooses; the rest is fixed by the runtime. */
export interface KernelSettings {
  readonly output: ReadonlyArray<number>
  /**
   * A pipeline kernel (gpu.js `pipeline: true, immutable: true`): each call returns a fresh device buffer
   * (`dispatch`), never read back by the runtime. Absent: a host-path kernel (`run`).
   */
  readonly pipeline?: true
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

/** Cell (x = c, y = r) of an upload: the host values, given as a gpu.js Input of size [cols, rows]. */
function uploadKernel(this: KernelThis<object>, a: ReadonlyArray<ArrayLike<number>>): number {
  return a[this.thread.y]![this.thread.x]!
}

/** The parts of a GL context the runtime uses. */
interface GlContext {
  isContextLost(): boolean
  getExtension(name: string): unknown
}
/** The parts of gpu.js's WebGPU context ({ adapter, device, isLost }) the runtime uses. */
interface WebGpuDevice {
  destroy(): void
  readonly lost: Promise<{ readonly reason: string; readonly message: string }>
}
const isGlContext = (c: unknown): c is GlContext => typeof (c as GlContext | undefined)?.isContextLost === "function"
const isWebGpuContext = (c: unknown): c is { readonly device: WebGpuDevice } =>
  typeof (c as { device?: WebGpuDevice } | undefined)?.device?.destroy === "function"

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
        dynamicArguments: true,
        ...(settings.pipeline === true ? { pipeline: true, immutable: true } : {})
      } as IGPUKernelSettings)

    const traffic = Traffic.make()
    // ---- the device, known once the probe kernel has run (gpu.js creates it on a kernel's first call) ----
    let lostReason: string | undefined
    /** Resolves with the reason when the WebGPU device is lost (never, elsewhere). */
    let lostSignal: Promise<string> = new Promise<string>(() => undefined)
    let gl: GlContext | undefined
    let device: WebGpuDevice | undefined
    const lost = (): string | undefined => {
      if (lostReason === undefined && gl?.isContextLost() === true) lostReason = `the ${backend} context was lost`
      return lostReason
    }
    const failure = (op: string, cause: unknown): KernelError => {
      const reason = lost()
      return new KernelError({
        op,
        backend: `gpu:${backend}`,
        message: reason === undefined ? `${op} on gpu:${backend}: ${errorText(cause)}` : `${op} on gpu:${backend}: device lost (${reason})`
      })
    }
    const checkDevice = (): void => {
      const reason = lost()
      if (reason !== undefined) throw new Error(reason)
    }
    const checkRan = (kernel: IKernelRunShortcut): void => {
      const ran = ranOn(kernel)
      if (ran.backend !== backend || ran.fallbackReason !== null)
        throw new Error(`ran on ${ran.backend} instead of ${backend}${ran.fallbackReason === null ? "" : ` (${ran.fallbackReason})`}`)
    }

    const run: GpuRuntime["run"] = (op, kernel, output, args) =>
      Effect.tryPromise({
        try: async () => {
          checkDevice()
          const size = output.reduce((a, b) => a * b, 1)
          kernel.setOutput([...output])
          const result: unknown = await (kernel as unknown as (...a: ReadonlyArray<unknown>) => unknown)(...args)
          checkRan(kernel)
          checkDevice() // a lost GL context reads back zeros
          // the host path's transfers: every array argument is uploaded, the result read back (weights, as
          // kernel constants, were uploaded once when the kernel was built)
          const uploaded = args.filter(ArrayBuffer.isView) as ReadonlyArray<ArrayBufferView>
          Traffic.charge(traffic, undefined, {
            inputUploads: uploaded.length,
            inputBytes: uploaded.reduce((n, a) => n + a.byteLength, 0),
            readbacks: 1,
            readbackBytes: 4 * size,
            dispatches: 1
          })
          return flatten(result, size)
        },
        catch: (cause) => failure(op, cause)
      })
    const released = new WeakSet<DeviceBuffer>()
    let liveBuffers = 0
    let liveBytes = 0

    /**
     * A kernel's first call, while it builds: WebGPU builds asynchronously and reads the output size when the
     * build ends, so a second call (another request's) must not resize it meanwhile; it waits.
     */
    const building = new WeakMap<IKernelRunShortcut, Promise<unknown>>()
    const isBuilt = (kernel: IKernelRunShortcut): boolean => (kernel as unknown as { kernel?: { built?: boolean } }).kernel?.built === true

    const dispatch: GpuRuntime["dispatch"] = (op, kernel, output, args, forward) =>
      Effect.tryPromise({
        try: async (): Promise<DeviceBuffer> => {
          checkDevice()
          if (!isBuilt(kernel)) await building.get(kernel)?.catch(() => undefined)
          const first = !isBuilt(kernel)
          kernel.setOutput([...output])
          const call = Promise.resolve((kernel as unknown as (...a: ReadonlyArray<unknown>) => unknown)(...args))
          if (first) building.set(kernel, call)
          const value: unknown = await call
          checkRan(kernel)
          const buffer: DeviceBuffer = { output: [...output], value, bytes: 4 * output.reduce((a, b) => a * b, 1) }
          liveBuffers++
          liveBytes += buffer.bytes
          Traffic.charge(traffic, forward, { dispatches: 1 })
          return buffer
        },
        catch: (cause) => failure(op, cause)
      })

    const release: GpuRuntime["release"] = (buffer) => {
      if (released.has(buffer)) return
      released.add(buffer)
      liveBuffers--
      liveBytes -= buffer.bytes
      const v = buffer.value as { delete?: () => void } | null
      // WebGPU buffers and GL textures; the cpu/webasm modes' arrays are garbage-collected
      if (typeof v?.delete === "function") {
        try {
          v.delete()
        } catch {
          // a lost context may refuse deletes: the memory went with it
        }
      }
    }

    const upload: GpuRuntime["upload"] = (op, data, cols, rows, kind, forward) =>
      Effect.tap(
        dispatch(op, runtime.kernel("pipeline.upload", (c) => c(uploadKernel as unknown as KernelFunction, { output: [1, 1], loopMaxIterations: 1, pipeline: true })), [cols, rows], [
          new Input(data.subarray(0, cols * rows) as unknown as Array<number>, [cols, rows])
        ], forward),
        () =>
          Effect.sync(() =>
            Traffic.charge(traffic, forward, kind === "input" ? { inputUploads: 1, inputBytes: cols * rows * 4 } : { residentUploads: 1, residentBytes: cols * rows * 4 })
          )
      )

    const readback: GpuRuntime["readback"] = (op, buffer, forward) =>
      Effect.tryPromise({
        try: async () => {
          checkDevice()
          if (released.has(buffer)) throw new Error("the buffer was already released (its scope closed)")
          const v = buffer.value as { toArray?: () => unknown }
          const values: unknown =
            typeof v.toArray === "function"
              ? await Promise.race([Promise.resolve(v.toArray()), lostSignal.then((reason) => Promise.reject(new Error(reason)))])
              : v
          checkDevice() // a lost GL context reads back zeros
          Traffic.charge(traffic, forward, { readbacks: 1, readbackBytes: buffer.bytes })
          return flatten(values, buffer.bytes / 4)
        },
        catch: (cause) => failure(op, cause)
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
      liveKernels: () => (gpu as unknown as { kernels?: ReadonlyArray<unknown> }).kernels?.length ?? 0,
      dispatch,
      upload,
      readback,
      release,
      live: () => ({ buffers: liveBuffers, bytes: liveBytes }),
      traffic,
      lost,
      loseDevice: () =>
        Effect.promise(async () => {
          if (device !== undefined) {
            device.destroy()
            await lostSignal
          } else if (gl !== undefined) {
            const extension = gl.getExtension("WEBGL_lose_context") as { loseContext: () => void } | null
            if (extension === null) lostReason ??= "WEBGL_lose_context is not available: the context was declared lost"
            else extension.loseContext()
          }
        })
    }

    // Probe: a tiny kernel must run on the chosen backend (e.g. an adapter that vanished, a GL context
    // that cannot be created under this display).
    const probe = runtime.kernel("probe", (c) => c(probeKernel as unknown as KernelFunction, { output: [2], loopMaxIterations: 1 }))
    const sum = yield* run("probe", probe, [2], [Float32Array.of(1, 2), Float32Array.of(3, 4)]).pipe(
      Effect.mapError((e) => new BackendUnavailableError({ requested: options.mode, reason: e.message }))
    )
    if (sum[0] !== 4 || sum[1] !== 6)
      return yield* new BackendUnavailableError({ requested: options.mode, reason: `probe kernel on ${backend} computed [${sum}] instead of [4, 6]` })

    // The device the probe ran on: every kernel of this GPU instance shares it (one GL context per
    // instance; gpu.js's one WebGPU device per page).
    const context = (probe as unknown as { kernel?: { context?: unknown } }).kernel?.context
    if (backend === "webgpu" && isWebGpuContext(context)) {
      device = context.device
      lostSignal = context.device.lost.then((info) => (lostReason ??= `the WebGPU device was lost (${info.reason}${info.message ? `: ${info.message}` : ""})`))
    } else if ((backend === "webgl2" || backend === "webgl" || backend === "headlessgl") && isGlContext(context)) gl = context
    return runtime
  })
