/**
 * sirius-ts/testing: equivalence testing of Kernels backends against the reference, as a feature.
 *
 * The property factories, arbitraries and the tolerance rule that sirius-ts's own tests use, for your
 * vitest (or any fast-check) suite: write a backend (a `Layer<Kernels>`), and check it op by op and on
 * whole random models against reference/, the float64-accumulating specification.
 *
 * - `kernelsAgreeWithReference(layer)`: every Kernels op, random shapes/dtypes/values, within the f32
 *   worst-case bound; resolves to a report naming the backend that ran and how much of the bound it used.
 * - `forwardAgreesWithReference(layer)`, `greedyAgreesWithReference(layer)`: whole tiny models.
 * - `multiTokenEqualsDecode(layer, tol)`, `overwriteEqualsFreshPrefill(layer, tol)`: laws of the forward
 *   pass that any backend must satisfy (batch invariance; Sirius's KV overwrite), no reference needed.
 * - `compare` / `assertClose`: the one comparison rule, |Δ| ≤ atol + rtol·|ref| + c·2⁻²⁴·Σ|terms|.
 * - Arbitraries: `tinyConfig`, `tinyModelAndPrompt`, per-op cases, `seeded` tensors.
 *
 * @example
 * ```ts
 * import { describe, expect, it } from "vitest"
 * import { kernelsAgreeWithReference, greedyAgreesWithReference } from "sirius-ts/testing"
 * import { MyKernels } from "./my-backend.ts"
 *
 * describe("my backend", () => {
 *   it("agrees with the reference op by op", async () => {
 *     const report = await kernelsAgreeWithReference(MyKernels.layer)
 *     expect(report.backend).toBe("my-backend")
 *   })
 *   it("decodes the reference's greedy tokens", () => greedyAgreesWithReference(MyKernels.layer))
 * })
 * ```
 *
 * @since 0.1.0
 */
export { assertClose, compare, type Comparison, type Tolerance } from "./tolerance.ts"
export { tinyConfig, tinyModelAndPrompt } from "./arbitraries.ts"
export { multiTokenEqualsDecode, overwriteEqualsFreshPrefill } from "./forward.ts"
export {
  attentionCase,
  type AttentionCase,
  elementwiseCase,
  type ElementwiseCase,
  embeddingCase,
  type EmbeddingCase,
  matmulCase,
  type MatmulCase,
  matmulRowsCase,
  rmsnormCase,
  type RmsnormCase,
  ropeCase,
  type RopeCase,
  seeded
} from "./arbitraries.ts"
export {
  f32Bound,
  type KernelOp,
  kernelOps,
  type KernelsAgreeOptions,
  kernelsAgreeWithReference,
  type KernelsReport,
  type OpReport
} from "./kernels.ts"
export {
  forwardAgreesWithReference,
  type ForwardReport,
  forwardTolerance,
  greedy,
  greedyAgreesWithReference,
  type GreedyReport,
  type ModelOptions,
  nearTie
} from "./model.ts"
