/**
 * What the gpu pipeline would do on a real GPU: Sirius against full decoding, projected from the pipeline's
 * own counts and a named GPU's published figures (no GPU was at hand; the README states the assumptions).
 *
 *   node scripts/gpu-projection.ts [--shape tinyllama-1.1b] [--aal 14.68] [--k 16] [--context 1024]
 *
 * Measured here (gpu.js's cpu mode runs the very pipeline, so its records count what a GPU would launch and
 * move): kernel launches and host↔device transfers per dense decode, coarse and fine sparse decode and
 * k-token verification forward, as a per-layer and a fixed part (two model depths). Computed from the shape:
 * the f32 weight bytes each forward reads (gpu.js stores f32 only), the KV bytes a write re-emits, the
 * floating-point work of a verification. Assumed, per GPU: memory bandwidth B (published), the fraction η
 * of it gpu.js's one-thread-per-output kernels reach, the CPU time τ of one kernel launch through the
 * browser (gpu.js makes a bind group and a submit per launch), and the FP32 rate a naive kernel reaches.
 *
 * A forward costs N_launch·τ + bytes/(η·B), or its compute time where that is larger (a verification of k
 * tokens on scalar FP32 kernels). Sirius per token = ((k − 1)·t_sparse + t_verify) / AAL; full decoding,
 * t_decode per token.
 */
import { Effect } from "effect"
import { parseArgs } from "node:util"
import { GpuKernels } from "../gpu/index.ts"
import * as Traffic from "../gpu/Traffic.ts"
import type { LlamaConfig } from "../src/Config.ts"
import * as Forward from "../src/Forward.ts"
import { Kernels, type KernelsShape } from "../src/Kernels.ts"
import * as KvCache from "../src/KvCache.ts"
import * as Model from "../src/Model.ts"
import * as Sparsity from "../src/Sparsity.ts"
import { randomWeights, type ShapeName, shapes } from "../testing/RandomModel.ts"

const { values } = parseArgs({
  options: {
    shape: { type: "string", default: "tinyllama-1.1b" },
    aal: { type: "string", default: "14.68" },
    k: { type: "string", default: "16" },
    context: { type: "string", default: "1024" }
  }
})
const shape = shapes[values.shape as ShapeName]
if (shape === undefined) throw new Error(`--shape: one of ${Object.keys(shapes).join(", ")}`)
const aal = Number(values.aal)
const k = Number(values.k)
const context = Number(values.context)

/** Launches and transfers of each kind of forward on the pipeline, for a small model of depth `layers`. */
const count = (layers: number) =>
  Effect.scoped(
    Effect.gen(function* () {
      const config: LlamaConfig = { ...shapes.tiny, numHiddenLayers: layers }
      const kernels = yield* GpuKernels.make({ mode: "cpu", pipeline: true })
      const model = yield* Effect.provideService(Model.fromWeights(config, randomWeights(config, { seed: 1 }), { sparse: true }), Kernels, kernels as KernelsShape)
      const prompt = Int32Array.from({ length: 6 }, (_, i) => 3 + i)
      const scope = yield* Effect.scope
      const coarseMlp = Sparsity.requestMlp(model, { granularity: "coarse", density: 0.5 }, scope)
      const cache = yield* KvCache.make(kernels, config, 6 + k + 2)
      yield* Forward.forward(model, cache, prompt, 0, "last", coarseMlp.prefill)
      const coarse = yield* coarseMlp.sparse
      const last = () => Traffic.snapshot(kernels.runtime.traffic).forwards.at(-1)!
      const one = (mlp: Forward.Mlp, T: number) =>
        Effect.gen(function* () {
          KvCache.truncate(cache, 6)
          yield* Forward.forward(model, cache, Int32Array.from({ length: T }, () => 5), 6, T === 1 ? "last" : "all", mlp)
          return last()
        })
      return {
        decode: yield* one(Forward.dense, 1),
        coarse: yield* one(coarse, 1),
        fine: yield* one({ _tag: "Fine", keep: 1 }, 1),
        verify: yield* one(Forward.dense, k)
      }
    })
  )

const [one, two] = await Promise.all([Effect.runPromise(count(1)), Effect.runPromise(count(2))])
const L = shape.numHiddenLayers
const launches = (kind: keyof typeof one) => one[kind].dispatches + (L - 1) * (two[kind].dispatches - one[kind].dispatches)

// bytes a forward reads from device memory (f32: gpu.js's only storage type)
const { total: params, mlpPerLayer } = Sparsity.parameterCount(shape)
const weightBytes = 4 * params
const dCoarse = Sparsity.parameterDensity(shape, "coarse", 0.5)
const dFine = Sparsity.parameterDensity(shape, "fine", 0.5)
const kvDim = shape.numKeyValueHeads * shape.headDim
// a KV write re-emits each layer's K and V buffers (capacity = context slots), read and written; attention reads S slots
const kvReemit = L * 2 * context * kvDim * 4 * 2
const kvRead = L * 2 * context * kvDim * 4
// floating-point work of a k-token verification (matmuls; attention is small at this context)
const verifyFlops = 2 * k * (params - shape.vocabSize * shape.hiddenSize * (shape.tieWordEmbeddings ? 0 : 1)) + 2 * k * shape.vocabSize * shape.hiddenSize

// NVIDIA A100 80GB SXM: HBM2e 2,039 GB/s, FP32 19.5 TFLOP/s (NVIDIA's A100 datasheet)
const gpu = { name: "NVIDIA A100 80GB SXM", bandwidth: 2039e9, fp32: 19.5e12 }
const naiveFp32 = 0.3 // fraction of FP32 peak a scalar one-cell-per-thread kernel reaches (assumed)

const out = (s: string) => process.stdout.write(`${s}\n`)
const ms = (s: number) => `${(s * 1e3).toFixed(2)} ms`
out(`${values.shape}: ${(params / 1e9).toFixed(2)} B parameters (MLP ${(100 * (L * mlpPerLayer) / params).toFixed(0)}%), f32 weights ${(weightBytes / 1e9).toFixed(2)} GB; context ${context} slots`)
out(`launches per forward (measured on the pipeline): decode ${launches("decode")}, coarse decode ${launches("coarse")}, fine decode ${launches("fine")}, ${k}-token verification ${launches("verify")}`)
out(
  `transfers per forward (measured): ${Traffic.uploads(two.decode)} upload (${two.decode.inputBytes} B for T = 1, ${two.verify.inputBytes} B for T = ${k}), ` +
    `${two.decode.readbacks} readback (4·V = ${4 * shape.vocabSize} B for T = 1)`
)
out(`KV bytes per forward on the device: re-emitted ${(kvReemit / 1e6).toFixed(0)} MB (read + written), attention reads ${(kvRead / 1e6).toFixed(0)} MB`)
out(`parameter density, ρ = 0.5: coarse ${dCoarse.toFixed(3)}, fine ${dFine.toFixed(3)}; Sirius: k = ${k}, AAL ${aal}`)
out("")
out(`${gpu.name}: ${gpu.bandwidth / 1e9} GB/s, FP32 ${gpu.fp32 / 1e12} TFLOP/s (naive kernels assumed to reach ${naiveFp32 * 100}% of it)`)
out("| τ per launch | η of bandwidth | decode | coarse decode | verify (k) | Sirius per token | Sirius / full |")
out("|---|---|---|---|---|---|---|")
for (const tau of [5e-6, 20e-6])
  for (const eta of [0.5, 1]) {
    const read = (bytes: number) => bytes / (eta * gpu.bandwidth)
    const decode = launches("decode") * tau + read(weightBytes + kvReemit + kvRead)
    const sparse = launches("coarse") * tau + read(dCoarse * weightBytes + kvReemit + kvRead)
    const verify = launches("verify") * tau + Math.max(read(weightBytes + kvReemit + kvRead), verifyFlops / (naiveFp32 * gpu.fp32))
    const sirius = ((k - 1) * sparse + verify) / aal
    out(`| ${tau * 1e6} µs | ${eta} | ${ms(decode)} | ${ms(sparse)} | ${ms(verify)} | ${ms(sirius)} | ${(sirius / decode).toFixed(2)} |`)
  }
