// Each reference kernel against values computed by hand (the numbers in the comments).
import { describe, expect, it } from "vitest"
import { add, attention, embedding, matmul, rmsnorm, rope, ropeInvFreq, silu, softmax, swiglu } from "./index.ts"

const f32 = (xs: ReadonlyArray<number>) => Float32Array.from(xs)
const close = (actual: Float32Array, expected: ReadonlyArray<number>, tol = 1e-6) => {
  expect(actual.length).toBe(expected.length)
  actual.forEach((a, i) => expect(Math.abs(a - expected[i]!), `index ${i}: ${a} vs ${expected[i]}`).toBeLessThanOrEqual(tol))
}

describe("reference kernels, hand-computed", () => {
  it("matmul: W (3,2) · two tokens", () => {
    // W = [[1,2],[3,4],[5,6]]; x0 = [1,1] → [3,7,11]; x1 = [2,-1] → [0,2,4]
    close(matmul(f32([1, 2, 3, 4, 5, 6]), f32([1, 1, 2, -1]), 2, 3, 2), [3, 7, 11, 0, 2, 4])
  })

  it("embedding picks rows", () => {
    close(embedding(f32([0, 1, 10, 11, 20, 21]), Int32Array.of(2, 0, 2), 2), [20, 21, 0, 1, 20, 21])
  })

  it("rmsnorm: [3,4] has mean square 12.5", () => {
    // 1/sqrt(12.5 + 0) = 0.28284271; weights [1, 2] → [0.84852814, 2.26274170]
    close(rmsnorm(f32([3, 4]), f32([1, 2]), 1, 0), [0.84852814, 2.2627417])
    // eps enters under the root: [1,1] with eps 3 → 1/sqrt(1+3) = 0.5
    close(rmsnorm(f32([1, 1]), f32([1, 1]), 1, 3), [0.5, 0.5])
  })

  it("softmax of [0, ln 3] is [1/4, 3/4], shift invariant", () => {
    close(softmax(f32([0, Math.log(3)]), 1, 2), [0.25, 0.75])
    // large logits do not overflow: [1000, 1001] → [1/(1+e), e/(1+e)]
    close(softmax(f32([1000, 1001]), 1, 2), [1 / (1 + Math.E), Math.E / (1 + Math.E)])
  })

  it("silu and swiglu", () => {
    // silu(1) = 1/(1+e^-1) = 0.73105858; silu(0) = 0; silu(-1) = -0.26894142
    expect(silu(1)).toBeCloseTo(0.7310585786, 9)
    close(swiglu(f32([1, 0, -1]), f32([2, 5, 3])), [1.46211716, 0, -0.80682426])
  })

  it("add", () => close(add(f32([1, 2]), f32([0.5, -2])), [1.5, 0]))

  it("rope rotates the (i, i+Dh/2) pairs: Dh=4, position 1", () => {
    // invFreq for theta=100, Dh=4: [100^0, 100^(-1/2)] = [1, 0.1]
    const invFreq = ropeInvFreq(4, 100)
    close(invFreq, [1, 0.1])
    // x = [1, 0, 0, 1]: pair (x0, x2) = (1, 0) rotated by 1 rad → (cos1, sin1);
    //                   pair (x1, x3) = (0, 1) rotated by 0.1 rad → (−sin0.1, cos0.1)
    close(rope(f32([1, 0, 0, 1]), 1, 1, 4, Int32Array.of(1), invFreq), [Math.cos(1), -Math.sin(0.1), Math.sin(1), Math.cos(0.1)])
    // position 0 is the identity
    close(rope(f32([1, 2, 3, 4]), 1, 1, 4, Int32Array.of(0), invFreq), [1, 2, 3, 4])
  })

  it("llama3 rope scaling: high frequencies kept, low divided by factor, middle smoothed", () => {
    // Dh=8, theta=10000: invFreq = [1, 0.1, 0.01, 0.001]; wavelengths 2π·[1, 10, 100, 1000]
    // oldCtx 64, low 1, high 4: hi wavelen = 16, lo wavelen = 64.
    //  6.28 < 16 → kept 1;  62.8 in [16,64] → smooth = (64/62.83 − 1)/(4 − 1) = 0.00620 → 0.1·(1−s)/8 + 0.1·s
    //  628 > 64 → 0.01/8;  6283 > 64 → 0.001/8
    const s = (64 / (2 * Math.PI * 10) - 1) / 3
    const scaled = ropeInvFreq(8, 10000, { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 })
    close(scaled, [1, (1 - s) * 0.1 / 8 + s * 0.1, 0.01 / 8, 0.001 / 8], 1e-9)
  })

  it("attention: one head, two slots, causal", () => {
    // Dh = 1, scale 1: q0 at position 0 sees only slot 0 → v0 = 10.
    // q1 = ln 3 at position 1: scores [0·ln3, 1·ln3] = [0, ln 3] → weights [1/4, 3/4] → 0.25·10 + 0.75·20 = 17.5
    const out = attention(f32([5, Math.log(3)]), f32([0, 1]), f32([10, 20]), {
      T: 2, numHeads: 1, numKeyValueHeads: 1, headDim: 1, kvLength: 2, positions: Int32Array.of(0, 1)
    })
    close(out, [10, 17.5], 1e-5)
  })

  it("attention: grouped-query heads share a KV head; scale is 1/sqrt(Dh)", () => {
    // 2 query heads, 1 KV head, Dh = 4 (scale 1/2). Slots: k0 = 0, k1 = [2 ln3, 0, 0, 0]; v0 = [1,0,0,0], v1 = [0,1,0,0].
    // head 0: q = [1,0,0,0] → scores [0, ln 3] → [1/4, 3/4]; head 1: q = 0 → uniform [1/2, 1/2].
    const k = f32([0, 0, 0, 0, 2 * Math.log(3), 0, 0, 0])
    const v = f32([1, 0, 0, 0, 0, 1, 0, 0])
    const out = attention(f32([1, 0, 0, 0, 0, 0, 0, 0]), k, v, {
      T: 1, numHeads: 2, numKeyValueHeads: 1, headDim: 4, kvLength: 2, positions: Int32Array.of(1)
    })
    close(out, [0.25, 0.75, 0, 0, 0.5, 0.5, 0, 0], 1e-6)
  })
})
