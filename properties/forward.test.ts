import { describe, it } from "vitest"
import { ReferenceKernels } from "../reference/index.ts"
import { multiTokenEqualsDecode, overwriteEqualsFreshPrefill } from "../testing/forward.ts"

// On the reference, a row's arithmetic does not depend on how many rows share the call: exact equality.
const exact = { atol: 0, rtol: 0 }

describe("forward pass (reference)", () => {
  it("a multi-token forward equals token-by-token decode (logits and KV)", () => multiTokenEqualsDecode(ReferenceKernels.layer, exact))
  it("overwriting a window then truncating equals a fresh prefill", () => overwriteEqualsFreshPrefill(ReferenceKernels.layer, exact))
})
