/**
 * The gpu backend: the Kernels interface on gpu.js (WebGPU, WebGL2/WebGL, headless-gl, wasm or plain JS),
 * in one of two forms.
 *
 * - **The pipeline** (pipeline.ts, gpu/device/; the default on webgpu, webgl2, webgl and headlessgl):
 *   native to the device. Weights, activations, the KV cache and fine sparsity's selections stay there;
 *   per forward pass one upload (tokens, positions, tree mask) and one readback (the logits).
 * - **The host path** (this file's `host` ops, lifted by reference/host.ts's `fromHost`; the default on
 *   webasm and cpu, where there is no device to keep anything on): each op is a gpu.js kernel whose result
 *   is read back to the host; activations and the KV cache live in host arrays, and selection, the GRIFFIN
 *   statistic and the KV moves run the reference code. Its ops live in the file of the same name as their
 *   reference (reference/matmul.ts ↔ gpu/matmul.ts, ...), a weight as a kernel constant (uploaded once,
 *   when its kernel is built). It remains the faster choice on webasm (weights as constants stay inside
 *   each kernel's wasm memory), and the baseline the pipeline is measured against.
 *
 * Either form is asked for with `pipeline: true | false`; every call runs under gpu.js's async contract
 * and is checked to have run on the backend the layer was built for.
 *
 * Not here: a tokenizer or a model (src/), the Node/browser WebGPU provisioning (GpuRuntime.ts).
 *
 * @example
 * const program = Effect.gen(function* () {
 *   const model = yield* Model.fromWeights(config, weights)
 *   return yield* Forward.forward(model, KvCache.make(config, 64), tokens, 0, "last")
 * })
 * Effect.runPromise(Effect.provide(program, GpuKernels.layer({ mode: "gpu" })))
 */
import { Effect, Layer } from "effect"
import type { Scope } from "effect"
import { fromHost, type HostKernelsShape } from "../reference/host.ts"
import { KernelError, Kernels, type KernelsShape, type Matrix } from "../src/Kernels.ts"
import { toFloat32 } from "../src/Tensor.ts"
import { add } from "./add.ts"
import { attention } from "./attention.ts"
import { embedding } from "./embedding.ts"
import { BackendUnavailableError, type GpuBackend, gpuBackends, type GpuMode, type GpuRuntime, make as makeRuntime } from "./GpuRuntime.ts"
import { matmulColumns, matmulRows, matmulTransposedRows } from "./matmul.ts"
import { rmsnorm } from "./rmsnorm.ts"
import { rope } from "./rope.ts"
import { swiglu } from "./swiglu.ts"
import { pipelineKernels } from "./pipeline.ts"
import { type GpuGathered, indices, type GpuMatrix, type GpuVector } from "./types.ts"

export { BackendUnavailableError, gpuBackends, ranOn, webGpuProbe } from "./GpuRuntime.ts"
export type { GpuBackend, GpuMode, GpuRuntime } from "./GpuRuntime.ts"
export { softmax } from "./softmax.ts"

export interface GpuOptions {
  /** `"gpu"`: the best backend available here; a backend name demands exactly that one. */
  readonly mode: GpuMode
  /**
   * The pipeline (true: everything on the device) or the host path (false: a readback per op). Default:
   * the pipeline on the device backends (webgpu, webgl2, webgl, headlessgl), the host path on webasm and cpu.
   */
  readonly pipeline?: boolean
}

/** The gpu backends that run on a device: the pipeline is their default. */
export const pipelineByDefault = (backend: GpuBackend): boolean => backend !== "webasm" && backend !== "cpu"

/**
 * The gpu backend: Kernels natively on the device (`pipeline: true`) or over gpu.js's per-op kernels
 * (`host`, each op reading its result back, lifted by reference/host.ts's `fromHost`). `host` is there in
 * both forms (tests, tools).
 */
export type GpuKernelsShape = KernelsShape & { readonly runtime: GpuRuntime; readonly host: HostKernelsShape; readonly pipeline: boolean }

/**
 * Build the backend on a fresh gpu.js instance, destroyed with the scope.
 *
 * **When to use**: tests and tools that need the runtime (which backend ran, how many kernels were
 * compiled); otherwise use `layer`.
 *
 * **Details**: fails with BackendUnavailableError when the demanded backend cannot run here; kernel
 * failures later (compile errors, a lost device, a silent degradation to another backend) are KernelErrors.
 *
 * @category constructors
 */
export const make = (options: GpuOptions): Effect.Effect<GpuKernelsShape, BackendUnavailableError, Scope.Scope> =>
  Effect.gen(function* () {
    const rt = yield* makeRuntime(options)
    let nextId = 0
    // Dense matmul passes the identity selection (see gpu/matmul.ts); one per row count.
    const identities = new Map<number, Float32Array>()
    const identity = (n: number): Float32Array => {
      let sel = identities.get(n)
      if (sel === undefined) {
        sel = Float32Array.from({ length: n }, (_, i) => i)
        identities.set(n, sel)
      }
      return sel
    }
    /** A gather is a view (types.ts): resolve it to its base matrix and selection, or refuse the op. */
    const plain = (op: string, w: Matrix): Effect.Effect<GpuMatrix, KernelError> =>
      "base" in w
        ? Effect.fail(new KernelError({ op, backend: `gpu:${rt.backend}`, message: "not supported on a gathered matrix (only matmul and matmulRows of a row gather are)" }))
        : Effect.succeed(w as GpuMatrix)
    const matmul = (w: Matrix, x: Float32Array, T: number): Effect.Effect<Float32Array, KernelError> => {
      if (!("base" in w)) return matmulRows(rt, w as GpuMatrix, x, T, identity(w.rows))
      const g = w as GpuGathered
      return g.axis === "rows" ? matmulRows(rt, g.base, x, T, g.sel) : matmulColumns(rt, g.base, x, T, g.sel)
    }
    const host: HostKernelsShape = {
      name: `gpu:${rt.backend}`,
      matrix: (t) => Effect.sync((): GpuMatrix => ({ rows: t.shape[0]!, cols: t.shape[1]!, id: nextId++, data: toFloat32(t) })),
      vector: (t) => Effect.sync((): GpuVector => ({ length: t.shape[0]!, id: nextId++, data: toFloat32(t) })),
      gather: (w, rows, axis) =>
        Effect.map(
          plain("gather", w),
          (m): GpuGathered =>
            axis === "rows"
              ? { rows: rows.length, cols: m.cols, base: m, axis, sel: indices(rows) }
              : { rows: m.rows, cols: rows.length, base: m, axis, sel: indices(rows) }
        ),
      matmul,
      matmulRows: (w, x, T, rows) =>
        "base" in w && (w as GpuGathered).axis === "rows"
          ? matmulRows(rt, (w as GpuGathered).base, x, T, Float32Array.from(rows, (i) => (w as GpuGathered).sel[i]!))
          : Effect.flatMap(plain("matmulRows", w), (m) => matmulRows(rt, m, x, T, indices(rows))),
      matmulTransposedRows: (wT, h, T, rows) => Effect.flatMap(plain("matmulTransposedRows", wT), (m) => matmulTransposedRows(rt, m, h, T, indices(rows))),
      embedding: (table, tokens) => Effect.flatMap(plain("embedding", table), (m) => embedding(rt, m, tokens)),
      rmsnorm: (x, weight, T, eps) => rmsnorm(rt, x, weight as GpuVector, T, eps),
      rope: (x, T, heads, headDim, positions, invFreq) => rope(rt, x, T, heads, headDim, positions, invFreq),
      attention: (q, keys, values, shape) => attention(rt, q, keys, values, shape),
      swiglu: (gate, up) => swiglu(rt, gate, up),
      add: (a, b) => add(rt, a, b)
    }
    const pipeline = options.pipeline ?? pipelineByDefault(rt.backend)
    // the name says which form runs when it is not the backend's default
    const name = pipeline === pipelineByDefault(rt.backend) ? host.name : `${host.name}(${pipeline ? "pipeline" : "per-op readback"})`
    const kernels: GpuKernelsShape = Object.assign(pipeline ? pipelineKernels(rt, name) : { ...fromHost(host), name }, { runtime: rt, host, pipeline })
    return kernels
  })

/**
 * The Kernels layer on gpu.js. The gpu.js instance (kernels, textures, buffers, workers) is destroyed
 * when the layer's scope closes.
 *
 * @example
 * Effect.provide(program, GpuKernels.layer({ mode: "webgpu" })) // fails with BackendUnavailableError without an adapter
 *
 * @category layers
 */
export const layer = (options: GpuOptions): Layer.Layer<Kernels, BackendUnavailableError> => Layer.effect(Kernels, make(options))

export const GpuKernels = { make, layer } as const

// ---------------------------------------------------------------------------------------------------
// CLI names

/** The `--backend` names of the gpu backend: `gpu` (best available) and `gpu:<backend>` (demanded). */
export const gpuBackendNames = ["gpu", ...gpuBackends.map((b) => `gpu:${b}` as const)] as const
export type GpuBackendName = (typeof gpuBackendNames)[number]

export const isGpuBackendName = (name: string): name is GpuBackendName => (gpuBackendNames as ReadonlyArray<string>).includes(name)

/** The GpuMode a CLI name stands for: `"gpu"` → `"gpu"`, `"gpu:webgpu"` → `"webgpu"`. */
export const modeOf = (name: GpuBackendName): GpuMode => (name === "gpu" ? "gpu" : (name.slice(4) as GpuBackend))

/**
 * The Kernels layer for a CLI backend name.
 *
 * @example
 * gpuLayer("gpu:webasm") // Layer<Kernels, BackendUnavailableError>, name "gpu:webasm"
 * gpuLayer("gpu")        // the best of webgpu, headlessgl, webgl2, webgl, webasm, cpu that runs here
 *
 * @category layers
 */
export const gpuLayer = (name: GpuBackendName): Layer.Layer<Kernels, BackendUnavailableError> => layer({ mode: modeOf(name) })
