// The relaxed-SIMD self-test (simd/SimdRuntime.ts): the relaxed binary is chosen only when its known answers
// come out right; a wrong known answer (injected here, as a miscompiling host would produce) makes the
// runtime fall back to the baseline binary and say why.
import { describe, expect, it } from "vitest"
import { dotCase, type ProbeCase, passesSelfTest, relaxedDotKnownAnswers, relaxedKnownAnswers, selectKernels } from "../simd/SimdRuntime.ts"

describe("relaxed SIMD self-test", () => {
  it("picks the relaxed binary on this host (Node ≥ 22 accepts relaxed SIMD) and it passes its known answers", () => {
    const chosen = selectKernels()
    expect(chosen.relaxed).toBe(true)
    expect(chosen.fallbackReason).toBeUndefined()
    expect(passesSelfTest(chosen.module)).toBe(true)
  })

  it("picks the baseline binary, with the reason, when a known answer is wrong", () => {
    const wrong: Array<ProbeCase> = relaxedKnownAnswers.map((k, i) =>
      i === 0 ? { ...k, fused: [8, -1, 2.5, -0.75], unfused: [8, -1, 2.5, -0.75] } : k
    )
    const chosen = selectKernels(wrong)
    expect(chosen.relaxed).toBe(false)
    expect(chosen.fallbackReason).toBe("the relaxed-SIMD binary failed its known-answer self-test")
  })

  it("rejects a result that mixes fused and unfused lanes, and accepts the baseline binary's unfused answers", () => {
    const relaxed = selectKernels().module
    // claim lane 0 of the FMA-sensitive case is unfused while the other lanes are fused: no host does both
    const mixed: Array<ProbeCase> = relaxedKnownAnswers.map((k, i) => (i === 1 ? { ...k, fused: [0, k.fused[1], k.fused[2], k.fused[3]], unfused: [0, 1, 1, 1] } : k))
    expect(passesSelfTest(relaxed, mixed)).toBe(false)
    const baseline = selectKernels([{ a: [0, 0, 0, 0], b: [0, 0, 0, 0], c: [0, 0, 0, 0], fused: [1, 1, 1, 1], unfused: [1, 1, 1, 1] }])
    expect(baseline.relaxed).toBe(false)
    expect(passesSelfTest(baseline.module)).toBe(true)
  })

  it("checks the relaxed int8 dot products too: a wrong known dot answer picks the baseline, which passes them (its plain-SIMD twins)", () => {
    const wrong = relaxedDotKnownAnswers.map((k, i) => (i === 1 ? { ...k, dot32: [k.dot32[0] * 2, k.dot32[1], k.dot32[2], k.dot32[3]] as const } : k))
    const chosen = selectKernels(relaxedKnownAnswers, wrong)
    expect(chosen.relaxed).toBe(false)
    expect(chosen.fallbackReason).toBe("the relaxed-SIMD binary failed its known-answer self-test")
    const lanes = relaxedDotKnownAnswers.map((k) => ({ ...k, dot16: [...k.dot16.slice(1), k.dot16[0]!] }))
    expect(passesSelfTest(selectKernels().module, relaxedKnownAnswers, lanes)).toBe(false)
    // the baseline binary's emulation gives the same answers, random bytes included
    const random = Array.from({ length: 20 }, (_, s) =>
      dotCase(Array.from({ length: 16 }, (_, i) => ((s * 131 + i * 97) % 256) - 128), Array.from({ length: 16 }, (_, i) => (s * 53 + i * 31) % 128), [s, -s, 1000 * s, -1])
    )
    expect(passesSelfTest(chosen.module, relaxedKnownAnswers, random)).toBe(true)
    expect(passesSelfTest(selectKernels().module, relaxedKnownAnswers, random)).toBe(true)
  })
})
