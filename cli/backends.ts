/**
 * Backend selection for the CLI: a `--backend` name to the Kernels layer that implements it. A demanded
 * backend that cannot run is a BackendUnavailableError naming what was tried, never a silent fallback:
 * `gpu` means a real GPU (WebGPU, headless GL, WebGL2, WebGL); gpu.js's CPU modes run only when named
 * (`gpu:webasm`, `gpu:cpu`). The gpu backend is loaded on demand: gpu.js is an optional peer dependency.
 */
import { Effect, Layer } from "effect"
import { ReferenceKernels } from "../reference/index.ts"
import { SimdKernels } from "../simd/index.ts"
import { BackendUnavailableError, type KernelError, type Kernels } from "../src/Kernels.ts"

export const gpuBackendNames = ["gpu", "gpu:webgpu", "gpu:headlessgl", "gpu:webgl2", "gpu:webgl", "gpu:webasm", "gpu:cpu"] as const
export const backendNames = ["simd", "reference", ...gpuBackendNames] as const
export type BackendName = (typeof backendNames)[number]

/** The default: the fastest backend available everywhere. */
export const defaultBackend: BackendName = "simd"

const gpuLayer = (name: (typeof gpuBackendNames)[number]): Layer.Layer<Kernels, BackendUnavailableError> =>
  Layer.unwrap(
    Effect.tryPromise({
      try: () => import("../gpu/index.ts"),
      catch: (cause) =>
        new BackendUnavailableError({
          requested: name,
          reason: `the gpu backend needs the optional package gpu.js (npm install gpu.js): ${cause instanceof Error ? cause.message.split("\n")[0] : String(cause)}`
        })
    }).pipe(Effect.map((gpu) => gpu.gpuLayer(name)))
  )

export const backendLayer = (name: BackendName, threads: number | undefined): Layer.Layer<Kernels, KernelError | BackendUnavailableError> => {
  switch (name) {
    case "reference":
      return ReferenceKernels.layer
    case "simd":
      return SimdKernels.layer(threads === undefined ? {} : { threads })
    default:
      return gpuLayer(name)
  }
}
