/**
 * Backend selection for the CLI: a `--backend` name to the Kernels layer that implements it.
 * A demanded backend that cannot run is an error, never a silent fallback.
 */
import type { Layer } from "effect"
import { gpuBackendNames, gpuLayer, isGpuBackendName } from "../gpu/index.ts"
import { ReferenceKernels } from "../reference/index.ts"
import { SimdKernels } from "../simd/index.ts"
import type { KernelError, Kernels } from "../src/Kernels.ts"
import type { BackendUnavailableError } from "../gpu/index.ts"

export const backendNames = ["reference", "simd", ...gpuBackendNames] as const
export type BackendName = (typeof backendNames)[number]

export const backendLayer = (name: BackendName, threads: number | undefined): Layer.Layer<Kernels, KernelError | BackendUnavailableError> => {
  if (isGpuBackendName(name)) return gpuLayer(name)
  switch (name) {
    case "reference":
      return ReferenceKernels.layer
    case "simd":
      return SimdKernels.layer(threads === undefined ? {} : { threads })
  }
}
