/**
 * Property-testing a user-written backend (examples/custom-backend.ts) against the reference with
 * sirius-ts/testing — the same checks sirius-ts runs on its own wasm and GPU backends. In your project the
 * import is `from "sirius-ts/testing"`.
 */
import { Layer } from "effect"
import { describe, expect, it } from "vitest"
import { fromHost } from "../reference/host.ts"
import { Kernels } from "../src/Kernels.ts"
import {
  forwardAgreesWithReference,
  greedyAgreesWithReference,
  kernelsAgreeWithReference,
  multiTokenEqualsDecode,
  overwriteEqualsFreshPrefill
} from "../testing/index.ts"
import { NaiveF32Kernels } from "./custom-backend.ts"

describe("a naive f32 backend", () => {
  it("agrees with the reference op by op, within the f32 worst-case bound", async () => {
    const report = await kernelsAgreeWithReference(NaiveF32Kernels.layer, { numRuns: 15 })
    expect(report.backend).toBe("naive-f32")
    // Its f32 sums are not exact, but stay well inside the bound.
    expect(report.ops.matmul!.maxRatio).toBeLessThan(1)
  })

  it("runs whole models like the reference: logits within tolerance, the same greedy tokens", async () => {
    const logits = await forwardAgreesWithReference(NaiveF32Kernels.layer, undefined, { numRuns: 8 })
    expect(logits.backend).toBe("naive-f32")
    const tokens = await greedyAgreesWithReference(NaiveF32Kernels.layer, { numRuns: 8 })
    expect(tokens.tokens).toBeGreaterThan(0)
  })

  // Laws that need no reference: a token's arithmetic must not depend on its batch.
  const exact = { atol: 0, rtol: 0 }
  it("a multi-token forward equals token-by-token decode", () => multiTokenEqualsDecode(NaiveF32Kernels.layer, exact, 10))
  it("overwriting a window equals a fresh prefill", () => overwriteEqualsFreshPrefill(NaiveF32Kernels.layer, exact, 10))

  it("a broken backend is caught, with the backend, op and shape in the message", async () => {
    // An off-by-one a real kernel could have: the last input column never enters the sum.
    const good = NaiveF32Kernels.host()
    const broken = fromHost({
      ...good,
      name: "naive-f32-broken",
      matmul: (w, x, T) => good.matmul(w, x.map((v, i) => ((i + 1) % w.cols === 0 ? 0 : v)), T)
    })
    await expect(kernelsAgreeWithReference(Layer.succeed(Kernels, broken), { numRuns: 10, ops: ["matmul"] })).rejects.toThrow(
      /naive-f32-broken matmul .*×/
    )
  })
})
