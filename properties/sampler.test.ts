// The sampler's filters against hand-computed distributions.
import { describe, expect, it } from "vitest"
import { argmax, distribution, greedy, nextFloat, penalize, rng, sample } from "../src/Sampler.ts"

const logits = Float32Array.from([Math.log(0.5), Math.log(0.3), Math.log(0.15), Math.log(0.05)])
const opts = { ...greedy, temperature: 1 }
const probs = (d: Array<{ id: number; p: number }>) => d.map((e) => [e.id, Number(e.p.toFixed(6))])

describe("Sampler", () => {
  it("argmax takes the lowest id on ties", () => expect(argmax([1, 3, 3, 2])).toBe(1))
  it("temperature 1 keeps the softmax", () => expect(probs(distribution(logits, opts))).toEqual([[0, 0.5], [1, 0.3], [2, 0.15], [3, 0.05]]))
  it("top-k 2 renormalises the two best", () => expect(probs(distribution(logits, { ...opts, topK: 2 }))).toEqual([[0, 0.625], [1, 0.375]]))
  it("top-p 0.8 keeps the smallest set reaching 0.8", () =>
    expect(probs(distribution(logits, { ...opts, topP: 0.8 }))).toEqual([[0, 0.625], [1, 0.375]]))
  it("min-p 0.2 drops tokens below 0.2·0.5", () =>
    expect(probs(distribution(logits, { ...opts, minP: 0.2 }))).toEqual([[0, 0.526316], [1, 0.315789], [2, 0.157895]]))
  it("temperature 0.5 squares the probabilities", () => {
    // p² ∝ [0.25, 0.09, 0.0225, 0.0025] / 0.365
    expect(probs(distribution(logits, { ...opts, temperature: 0.5 }))[0]).toEqual([0, Number((0.25 / 0.365).toFixed(6))])
  })
  it("repetition penalty divides positive and multiplies negative logits of seen tokens", () =>
    expect(Array.from(penalize(Float32Array.from([2, -2, 2]), [0, 1, 1], 2))).toEqual([1, -4, 2]))
  it("greedy ignores the seed; sampling follows the PRNG", () => {
    expect(sample(logits, [], greedy, rng(1))).toBe(0)
    const r = rng(42)
    const u = nextFloat(rng(42))
    // u falls in the cumulative [0.5, 0.8, 0.95, 1] table
    const expected = u < 0.5 ? 0 : u < 0.8 ? 1 : u < 0.95 ? 2 : 3
    expect(sample(logits, [], opts, r)).toBe(expected)
  })
  it("the PRNG is uniform enough: mean of 10k draws ≈ 0.5", () => {
    const r = rng(7)
    let sum = 0
    for (let i = 0; i < 10000; i++) sum += nextFloat(r)
    expect(Math.abs(sum / 10000 - 0.5)).toBeLessThan(0.01)
  })
})
