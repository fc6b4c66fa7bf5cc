/**
 * The gpu backend (gpu/) against the reference (reference/), per gpu.js backend present in Node:
 * webasm and cpu always; headlessgl when the optional `gl` package is built and a display exists
 * (`xvfb-run -a npx vitest run properties/gpu.test.ts`); webgpu when `navigator.gpu` can be provided.
 * A backend that is absent is skipped with the reason printed; every check asserts the backend that
 * actually ran, so a gpu.js fallback never counts as coverage.
 *
 * The properties themselves are sirius-ts/testing's (testing/): ops within the f32 worst-case bound,
 * whole-model logits, greedy tokens, and the forward-pass laws. gpu.js kernels compute each output cell
 * with the same instructions whatever T is, so the laws hold bitwise.
 */
import { Cause, Effect, Exit, Layer, Scope } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BackendUnavailableError, type GpuBackend, gpuBackendNames, GpuKernels, type GpuKernelsShape, gpuLayer, modeOf, softmax, webGpuProbe } from "../gpu/index.ts"
import { matmulAbsTerms, ReferenceKernels, referenceHost, softmax as referenceSoftmax } from "../reference/index.ts"
import * as Forward from "../src/Forward.ts"
import { Kernels } from "../src/Kernels.ts"
import * as KvCache from "../src/KvCache.ts"
import * as Model from "../src/Model.ts"
import { randomWeights, shapes } from "../testing/RandomModel.ts"
import { fromFloat32, toFloat32 } from "../src/Tensor.ts"
import { forwardAgreesWithReference, greedyAgreesWithReference, kernelsAgreeWithReference, seeded } from "../testing/index.ts"
import { multiTokenEqualsDecode, overwriteEqualsFreshPrefill } from "../testing/forward.ts"
import { assertClose } from "../testing/tolerance.ts"

const run = <A, E>(e: Effect.Effect<A, E>): Promise<A> => Effect.runPromise(e)

/** Why `mode` cannot run here, or undefined. */
const unavailable = async (mode: GpuBackend): Promise<string | undefined> => {
  const exit = await Effect.runPromiseExit(Effect.scoped(GpuKernels.make({ mode })))
  if (Exit.isSuccess(exit)) return undefined
  const error = Cause.squash(exit.cause)
  return error instanceof BackendUnavailableError ? error.reason : String(error)
}

const nodeBackends = ["webasm", "cpu", "headlessgl", "webgpu"] as const
const absent = new Map<GpuBackend, string>()
for (const mode of nodeBackends) {
  const reason = await unavailable(mode)
  if (reason !== undefined) {
    absent.set(mode, reason)
    console.log(`[gpu.test] gpu:${mode} skipped: ${reason}`)
  }
}

/** Tiny shapes and few runs: cpu and headlessgl compile slowly, and CI has 2 cores. */
const runs: Record<(typeof nodeBackends)[number], { ops: number; model: number }> = {
  webasm: { ops: 12, model: 6 },
  cpu: { ops: 8, model: 4 },
  headlessgl: { ops: 4, model: 2 },
  webgpu: { ops: 8, model: 4 }
}

for (const mode of nodeBackends) {
  const layer = GpuKernels.layer({ mode })
  const name = `gpu:${mode}`
  const n = runs[mode]
  describe.skipIf(absent.has(mode))(`gpu backend ${name}`, () => {
    it("every Kernels op agrees with the reference within the f32 worst-case bound", async () => {
      const report = await kernelsAgreeWithReference(layer, { numRuns: n.ops })
      expect(report.backend).toBe(name)
      const ops = Object.entries(report.ops).map(([op, r]) => `${op} ${r!.maxAbs.toExponential(1)} (${(100 * r!.maxRatio).toFixed(1)}% of bound)`)
      console.log(`[gpu.test] ${name} max |Δ| per op: ${ops.join(", ")}`)
    })

    it("whole-model logits agree with the reference", async () => {
      const report = await forwardAgreesWithReference(layer, undefined, { numRuns: n.model })
      expect(report.backend).toBe(name)
      console.log(`[gpu.test] ${name} logits: max |Δ| ${report.maxAbs.toExponential(2)} over ${report.runs} models`)
    })

    it("greedy tokens equal the reference's wherever its top-1/top-2 margin is clear", async () => {
      const report = await greedyAgreesWithReference(layer, { numRuns: n.model, steps: 5 })
      expect(report.backend).toBe(name)
      expect(report.tokens).toBeGreaterThan(0)
      console.log(`[gpu.test] ${name} greedy: ${report.tokens} tokens, ${report.flips} near-tie flips, max logit |Δ| ${report.maxLogitAbs.toExponential(2)}`)
    })

    // Each output cell runs the same instructions whatever T is: the laws hold bitwise.
    const exact = { atol: 0, rtol: 0 }
    const strict = Layer.orDie(layer)
    it("a multi-token forward equals token-by-token decode, bitwise", () => multiTokenEqualsDecode(strict, exact, n.model))
    it("overwriting a window then truncating equals a fresh prefill, bitwise", () => overwriteEqualsFreshPrefill(strict, exact, n.model))
  })
}

describe("gpu backend selection and lifecycle", () => {
  let scope: Scope.Closeable
  let webasm: GpuKernelsShape
  beforeAll(async () => {
    scope = await run(Scope.make())
    webasm = await run(Scope.provide(GpuKernels.make({ mode: "webasm" }), scope))
  })
  afterAll(() => run(Scope.close(scope, Exit.void)))

  it("a demanded backend that cannot run is a BackendUnavailableError naming it, never a fallback", async () => {
    for (const mode of ["webgl2", "webgl"] as const) {
      const error = await run(Effect.flip(Effect.scoped(GpuKernels.make({ mode }))))
      expect(error._tag).toBe("BackendUnavailableError")
      expect(error.requested).toBe(mode)
      expect(error.reason).toMatch(/not available/)
    }
    if (absent.has("webgpu")) {
      const error = await run(Effect.flip(Effect.scoped(GpuKernels.make({ mode: "webgpu" }))))
      expect(error.reason).toMatch(/navigator\.gpu|adapter/)
    }
  })

  it("mode \"gpu\" runs the best real GPU backend present, or fails naming each one it tried, never a CPU mode", async () => {
    const expected = ["webgpu", "headlessgl"].find((m) => !absent.has(m as GpuBackend))
    if (expected !== undefined) {
      const best = await run(Effect.scoped(GpuKernels.make({ mode: "gpu" })))
      expect(best.name).toBe(`gpu:${expected}`)
      for (const skipped of Object.keys(best.runtime.skipped)) expect(absent.has(skipped as GpuBackend) || skipped.startsWith("webgl")).toBe(true)
    } else {
      const error = await run(Effect.flip(Effect.scoped(GpuKernels.make({ mode: "gpu" }))))
      expect(error._tag).toBe("BackendUnavailableError")
      expect(error.requested).toBe("gpu")
      for (const tried of ["webgpu", "headlessgl", "webgl2", "webgl"]) expect(error.reason).toContain(`${tried} (`)
      expect(error.reason).not.toMatch(/webasm|cpu \(/)
    }
  })

  it("kernels are compiled once per (op, shape): a second forward pass compiles nothing", async () => {
    const config = shapes.tiny
    const program = Effect.gen(function* () {
      const model = yield* Model.fromWeights(config, randomWeights(config, { seed: 3 }))
      const cache = yield* KvCache.make(webasm, config, 8)
      yield* Forward.forward(model, cache, Int32Array.of(1, 2, 3), 0, "last")
      yield* Forward.forward(model, cache, Int32Array.of(4), 3, "last")
      const after = webasm.runtime.compiledKernels()
      yield* Forward.forward(model, cache, Int32Array.of(5), 4, "last")
      yield* Forward.forward(model, cache, Int32Array.of(6, 7), 5, "last")
      return [after, webasm.runtime.compiledKernels()] as const
    })
    const [after, again] = await run(Effect.scoped(Effect.provideService(program, Kernels, webasm)))
    // Kernels are keyed by op and static shape (weights, D, heads, the slot bucket); a new T (2, after 3
    // and 1) only resizes outputs (webasm specialises its wasm per size internally, cached per kernel).
    expect(again).toBe(after)
  })

  it("the layer's finalizer destroys every gpu.js kernel", async () => {
    const inner = await run(Scope.make())
    const k = await run(Scope.provide(GpuKernels.make({ mode: "webasm" }), inner))
    await run(k.host.add(Float32Array.of(1), Float32Array.of(2)))
    expect(k.runtime.liveKernels()).toBeGreaterThan(0)
    await run(Scope.close(inner, Exit.void))
    expect(k.runtime.liveKernels()).toBe(0)
  })

  it("a matmul with ≥ 4096 outputs (webasm's threaded path under the async contract) agrees too", async () => {
    const [rows, cols] = [4100, 24]
    const w = fromFloat32("w", "F32", [rows, cols], seeded(11, rows * cols))
    const x = seeded(12, cols, 4)
    const got = await run(Effect.flatMap(webasm.matrix(w), (m) => webasm.host.matmul(m, x, 1)))
    const want = await run(Effect.flatMap(referenceHost.matrix(w), (m) => referenceHost.matmul(m, x, 1)))
    assertClose("matmul 4100×24", got, want, { atol: 0, rtol: 0, c: cols + 1 }, matmulAbsTerms(toFloat32(w), x, 1, rows, cols))
  })

  it("softmax (gpu/softmax.ts, not a Kernels op) agrees with reference/softmax.ts", async () => {
    for (const [rows, n] of [[1, 1], [3, 7], [2, 1030]] as const) {
      const x = seeded(rows * 31 + n, rows * n, 8)
      const got = await run(softmax(webasm.runtime, x, rows, n))
      // exp (3 + 2|x| ulp), an n-term sum and a division: relative bound (n + 3·(3 + 2·16) + 3)·2⁻²⁴
      assertClose(`softmax ${rows}×${n}`, got, referenceSoftmax(x, rows, n), { atol: 1e-30, rtol: (n + 110) * 2 ** -24 })
    }
  })

  it("CLI names map to modes, and gpuLayer builds the named backend", async () => {
    expect(gpuBackendNames).toEqual(["gpu", "gpu:webgpu", "gpu:headlessgl", "gpu:webgl2", "gpu:webgl", "gpu:webasm", "gpu:cpu"])
    expect(modeOf("gpu")).toBe("gpu")
    expect(modeOf("gpu:headlessgl")).toBe("headlessgl")
    const name = await run(Effect.provide(Effect.gen(function* () { return (yield* Kernels).name }), gpuLayer("gpu:cpu")))
    expect(name).toBe("gpu:cpu")
  })

  it("the reference backend is what the properties compare against (sanity: it agrees with itself exactly)", async () => {
    const report = await kernelsAgreeWithReference(ReferenceKernels.layer, { numRuns: 3, ops: ["matmul", "attention"] })
    expect(report.backend).toBe("reference")
    expect(report.ops.matmul!.maxAbs).toBe(0)
  })

  it("Node WebGPU: navigator.gpu is provided when the webgpu package loads, and the reason is reported when it does not", async () => {
    const reason = await webGpuProbe()
    if (reason === undefined) expect((globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu).toBeDefined()
    else {
      console.log(`[gpu.test] Node WebGPU unavailable: ${reason}`)
      expect(reason).toMatch(/navigator\.gpu|glibc|webgpu/)
    }
  })
})
