/**
 * The gpu pipeline (gpu/pipeline.ts, gpu/device/) in Node: the device kernels run by gpu.js's cpu mode (the
 * same kernel bodies it transpiles to WGSL and GLSL in a browser, run as JS), so the pipeline's logic (the
 * scopes, the device KV cache and its re-emitting writes, selection and gather on the device, the one
 * upload and one readback per forward) is checked here in seconds; properties/browser.test.ts runs the same
 * checks on WebGPU and WebGL2 in chromium.
 *
 * The properties are sirius-ts/testing's (ops within the f32 bound, whole-model logits and greedy tokens,
 * the forward-pass laws bitwise), plus Sirius's lossless configurations against full greedy decoding, and
 * the traffic: per forward pass exactly one upload and one readback.
 */
import { Effect, Layer, Stream } from "effect"
import { describe, expect, it } from "vitest"
import { GpuKernels, type GpuKernelsShape } from "../gpu/index.ts"
import * as Traffic from "../gpu/Traffic.ts"
import type { LlamaConfig } from "../src/Config.ts"
import * as Forward from "../src/Forward.ts"
import * as Generation from "../src/Generation.ts"
import { Kernels } from "../src/Kernels.ts"
import * as KvCache from "../src/KvCache.ts"
import * as Model from "../src/Model.ts"
import * as Policy from "../src/Policy.ts"
import type { SparsityOptions } from "../src/Sparsity.ts"
import { randomWeights, shapes } from "../testing/RandomModel.ts"
import { forwardAgreesWithReference, greedyAgreesWithReference, kernelsAgreeWithReference } from "../testing/index.ts"
import { multiTokenEqualsDecode, overwriteEqualsFreshPrefill } from "../testing/forward.ts"

const run = <A, E>(e: Effect.Effect<A, E>): Promise<A> => Effect.runPromise(e)
const layer = GpuKernels.layer({ mode: "cpu", pipeline: true })
const exact = { atol: 0, rtol: 0 }

describe("gpu pipeline on gpu.js's cpu mode (the device kernels as JS)", () => {
  it("every Kernels op agrees with the reference within the f32 worst-case bound", async () => {
    const report = await kernelsAgreeWithReference(layer, { numRuns: 10 })
    expect(report.backend).toBe("gpu:cpu(pipeline)")
    const ops = Object.entries(report.ops).map(([op, r]) => `${op} ${r!.maxAbs.toExponential(1)} (${(100 * r!.maxRatio).toFixed(1)}%)`)
    console.log(`[gpuPipeline.test] max |Δ| per op: ${ops.join(", ")}`)
  })

  it("whole-model logits and greedy tokens agree with the reference", async () => {
    const logits = await forwardAgreesWithReference(layer, undefined, { numRuns: 4 })
    const greedy = await greedyAgreesWithReference(layer, { numRuns: 4, steps: 5 })
    expect([logits.backend, greedy.backend]).toEqual(["gpu:cpu(pipeline)", "gpu:cpu(pipeline)"])
    expect(greedy.tokens).toBeGreaterThan(0)
  })

  // each output cell runs the same instructions whatever T is: the laws hold bitwise
  it("a multi-token forward equals token-by-token decode, bitwise", () => multiTokenEqualsDecode(Layer.orDie(layer), exact, 4))
  it("overwriting a window then truncating equals a fresh prefill, bitwise (the KV write re-emits the right slots)", () =>
    overwriteEqualsFreshPrefill(Layer.orDie(layer), exact, 6))
})

/** A whole request on the pipeline: its tokens, and the runtime's traffic over it. */
const generate = (k: GpuKernelsShape, config: LlamaConfig, options: Generation.GenerateOptions) =>
  Effect.scoped(
    Effect.gen(function* () {
      const model = yield* Model.fromWeights(config, randomWeights(config, { seed: 11 }), { sparse: true })
      const before = Traffic.snapshot(k.runtime.traffic)
      const events = yield* Stream.runCollect(Generation.generate(model, options))
      const last = Array.from(events).at(-1)!
      if (last._tag !== "Finished") return yield* Effect.die(new Error("no Finished event"))
      const after = Traffic.snapshot(k.runtime.traffic)
      return { tokens: last.tokens, forwards: after.forwards.slice(before.forwards.length), events: Array.from(events) }
    }).pipe(Effect.provideService(Kernels, k))
  )

describe("gpu pipeline: Sirius, traffic and lifetimes", () => {
  const config = shapes.tiny
  const prompt = [1, 17, 42, 99, 5, 7, 3]
  const withBackend = <A, E>(f: (k: GpuKernelsShape) => Effect.Effect<A, E>) => run(Effect.scoped(Effect.flatMap(GpuKernels.make({ mode: "cpu", pipeline: true }), f)))

  it("greedy-exact Sirius (chain and tree, coarse and fine) commits exactly full greedy decoding", () =>
    withBackend((k) =>
      Effect.gen(function* () {
        const full = (yield* generate(k, config, { prompt, maxNewTokens: 14 })).tokens
        const sparsities: ReadonlyArray<SparsityOptions> = [
          { granularity: "coarse", density: 0.5 },
          { granularity: "fine", density: 0.25 }
        ]
        for (const sparsity of sparsities)
          for (const treeWidth of [1, 3]) {
            const options = { mode: "sirius", prompt, maxNewTokens: 14, sparsity, correctionPeriod: 4, treeWidth, policy: Policy.greedyExact } as Generation.SiriusOptions
            const got = (yield* generate(k, config, options)).tokens
            expect(got, `${sparsity.granularity} w=${treeWidth}`).toEqual(full)
          }
      })
    ))

  it("every forward pass uploads one buffer and reads one back; nothing else moves after the first", () =>
    withBackend((k) =>
      Effect.gen(function* () {
        for (const options of [
          { prompt, maxNewTokens: 8 },
          { mode: "sparse", prompt, maxNewTokens: 8, sparsity: { granularity: "fine", density: 0.5 } },
          { mode: "sirius", prompt, maxNewTokens: 10, sparsity: { granularity: "fine", density: 0.5 }, correctionPeriod: 4 }
        ] as ReadonlyArray<Generation.GenerateOptions>) {
          const { forwards } = yield* generate(k, config, options)
          expect(forwards.length).toBeGreaterThan(3)
          // the first forward ever also uploads the RoPE table (once per runtime)
          for (const [i, f] of forwards.entries()) {
            const label = `${options.mode ?? "full"} forward ${i} (T=${f.tokens})`
            expect([f.inputUploads, f.readbacks], label).toEqual([1, 1])
            expect(f.inputBytes, label).toBe(4 * 2 * f.tokens)
            if (i > 0) expect(f.residentUploads, label).toBe(0)
            expect(f.dispatches, label).toBeGreaterThan(10)
          }
        }
      })
    ))

  it("coarse sparsity: its prefill reads each layer's statistic back (F floats), its decode steps one readback", () =>
    withBackend((k) =>
      Effect.gen(function* () {
        const options = { mode: "sparse", prompt, maxNewTokens: 5, sparsity: { granularity: "coarse", density: 0.5 } } as Generation.SparseOptions
        const { forwards } = yield* generate(k, config, options)
        expect(forwards[0]!.readbacks).toBe(1 + config.numHiddenLayers)
        for (const f of forwards.slice(1)) expect([f.inputUploads, f.residentUploads, f.readbacks]).toEqual([1, 0, 1])
      })
    ))

  it("fine-threshold: each sparse forward also reads back each layer's kept count (4 bytes), which only the device knows", () =>
    withBackend((k) =>
      Effect.gen(function* () {
        const thresholds = Array.from({ length: config.numHiddenLayers }, () => 0.05)
        const options = { mode: "sparse", prompt, maxNewTokens: 5, sparsity: { granularity: "fine-threshold", density: 0.5, thresholds } } as Generation.SparseOptions
        const { forwards } = yield* generate(k, config, options)
        expect(forwards[0]!.readbacks).toBe(1) // the dense prefill
        for (const f of forwards.slice(1)) {
          expect([f.inputUploads, f.readbacks]).toEqual([1, 1 + config.numHiddenLayers])
          expect(f.readbackBytes).toBe(4 * config.vocabSize + 4 * config.numHiddenLayers)
        }
      })
    ))

  it("a forward's activations are released when its scope closes; a request's KV cache and gathers when it ends", () =>
    withBackend((k) =>
      Effect.gen(function* () {
        const model = yield* Effect.provideService(Model.fromWeights(config, randomWeights(config, { seed: 3 })), Kernels, k)
        const weights = k.runtime.live()
        const afterForward = yield* Effect.scoped(
          Effect.gen(function* () {
            const cache = yield* KvCache.make(k, config, 16)
            yield* Forward.forward(model, cache, Int32Array.from(prompt), 0, "last")
            yield* Forward.forward(model, cache, Int32Array.of(9), prompt.length, "last")
            return k.runtime.live()
          })
        )
        // between forwards: the weights, the RoPE table, and the request's 2·L KV buffers
        expect(afterForward.buffers).toBe(weights.buffers + 1 + 2 * config.numHiddenLayers)
        const end = k.runtime.live()
        expect(end.buffers).toBe(weights.buffers + 1)
        yield* Effect.scoped(
          Effect.provideService(
            Stream.runDrain(Generation.generate(model, { mode: "sparse", prompt, maxNewTokens: 4, sparsity: { granularity: "coarse", density: 0.5 } })),
            Kernels,
            k
          )
        )
        expect(k.runtime.live().buffers).toBe(end.buffers)
      })
    ))

  it("a KV write moves nothing between host and device", () =>
    withBackend((k) =>
      Effect.gen(function* () {
        const kv = yield* k.kvStore(1, 2, 4, 8)
        const x = yield* k.upload(new Float32Array(3 * 8).fill(1), 3, 8)
        const before = Traffic.snapshot(k.runtime.traffic).total
        yield* k.kvWrite(kv, 0, 2, x, x)
        yield* k.kvCompact(kv, Int32Array.of(4, 3), 1)
        const after = Traffic.snapshot(k.runtime.traffic).total
        // the write launches two kernels and transfers nothing; the compaction uploads its slot list (one
        // upload kernel) and launches two
        expect([after.inputUploads - before.inputUploads, after.readbacks - before.readbacks, after.residentUploads - before.residentUploads]).toEqual([0, 0, 1])
        expect(after.dispatches - before.dispatches).toBe(5)
      }).pipe(Effect.scoped)
    ))
})
