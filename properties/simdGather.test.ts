// simd/: coarse sparsity's gathers (Kernels.gather) — resident copies of selected rows or columns of a
// matrix, laid out like any weight so the dense kernels run on them — and the allocator that frees them.
import { Effect, Exit, Scope, Stream } from "effect"
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ReferenceKernels } from "../reference/index.ts"
import { SimdKernels } from "../simd/index.ts"
import { Kernels, type KernelsShape } from "../src/Kernels.ts"
import * as Generation from "../src/Generation.ts"
import * as Model from "../src/Model.ts"
import { randomWeights } from "../testing/RandomModel.ts"
import * as Sirius from "../src/Sirius.ts"
import { selectedRowsCase, tinyModelAndPrompt } from "../testing/arbitraries.ts"
import { fromFloat32 } from "../src/Tensor.ts"
import { seeded } from "../testing/arbitraries.ts"
import { assertClose } from "../testing/tolerance.ts"
import { rowGatherEqualsMatmulRows, run, type Simd } from "./simdHarness.ts"

const ref = ReferenceKernels.make()

let scope: Scope.Closeable
let two: Simd
beforeAll(async () => {
  scope = await run(Scope.make())
  two = await run(Scope.provide(SimdKernels.make({ threads: 2 }), scope))
})
afterAll(() => run(Scope.close(scope, Exit.void)))


describe("simd gather", () => {
  it("a row gather's dense matmul equals matmulRows over the same selection, bitwise (the same kernel on the same rows)", () =>
    fc.assert(
      fc.asyncProperty(selectedRowsCase, async ({ c: { rows, cols, T, dtype, seed }, sel }) => {
        const t = fromFloat32("w", dtype, [rows, cols], seeded(seed, rows * cols))
        const x = seeded(seed + 1, T * cols, 4)
        await rowGatherEqualsMatmulRows(two, t, x, T, Int32Array.from(sel).sort(), `${dtype} ${rows}×${cols} T=${T}`)
      }),
      { numRuns: 60 }
    ))

  it("a column gather's dense matmul agrees with the reference's (the f32 bound of an n-term dot product)", () =>
    fc.assert(
      fc.asyncProperty(selectedRowsCase, async ({ c: { rows: F, cols: D, T, dtype, seed }, sel }) => {
        // W (D, F): keep columns `sel` (neurons), as coarse sparsity does with down_proj
        const t = fromFloat32("w", dtype, [D, F], seeded(seed, D * F))
        const indices = Int32Array.from(sel).sort()
        const h = seeded(seed + 2, T * indices.length, 4)
        const viaGather = (k: KernelsShape) =>
          run(Effect.scoped(Effect.gen(function* () {
            const g = yield* k.gather(yield* k.matrix(t), indices, "columns")
            return yield* k.read(yield* k.matmul(g, yield* k.upload(h, T, indices.length)))
          })))
        const got = await viaGather(two)
        const want = await viaGather(ref)
        // n = |sel| terms per output, |w| ≤ 2 and |h| ≤ 4 (seeded ranges), so Σ|terms| ≤ 8n; the kernel's
        // (⌈n/8⌉ + 4) roundings of 2⁻²⁴ each, relative to Σ|terms| (simd.test.ts matmulC)
        const n = indices.length
        assertClose(`${dtype} ${D}×${F} T=${T} n=${n}`, got, want, { atol: (Math.ceil(n / 8) + 4) * 2 ** -24 * 8 * n, rtol: 0 })
      }),
      { numRuns: 60 }
    ))

  it("frees its memory when the scope closes; the next gather reuses it, with zero padding again", async () => {
    const rt = two.runtime
    await run(
      Effect.gen(function* () {
        const big = yield* two.matrix(fromFloat32("big", "BF16", [300, 700], seeded(7, 300 * 700)))
        const before = rt.allocatedBytes
        // a large gather dirties memory, then is freed
        const first = yield* Effect.scoped(Effect.map(two.gather(big, Int32Array.from({ length: 200 }, (_, i) => i), "rows"), (m) => (m as unknown as { address: number }).address))
        expect(rt.allocatedBytes).toBe(before)
        // an odd-shaped gather lands on the same spot: its padding must read as zero, not as the old rows
        const cols = Int32Array.of(1, 2, 3, 5, 64, 100, 699)
        const x = seeded(9, 3 * cols.length, 4)
        const [address, got] = yield* Effect.scoped(
          Effect.gen(function* () {
            const g = yield* two.gather(big, cols, "columns")
            const out = yield* two.read(yield* two.matmul(g, yield* two.upload(x, 3, cols.length)))
            return [(g as unknown as { address: number }).address, out] as const
          })
        )
        expect(address).toBe(first)
        const want = yield* Effect.scoped(
          Effect.gen(function* () {
            const g = yield* ref.gather(yield* ref.matrix(fromFloat32("big", "BF16", [300, 700], seeded(7, 300 * 700))), cols, "columns")
            return yield* ref.read(yield* ref.matmul(g, yield* ref.upload(x, 3, cols.length)))
          })
        )
        assertClose("reused memory", got, want, { atol: 1e-5, rtol: 1e-5 })
        expect(rt.allocatedBytes).toBe(before)
      })
    )
  })

  it("a gather that does not fit is a KernelError naming the remedy", async () => {
    const error = await run(
      Effect.scoped(
        Effect.flatMap(SimdKernels.make({ threads: 1, maxMemoryBytes: 3 << 20 }), (k) =>
          Effect.flatMap(k.matrix(fromFloat32("w", "F32", [512, 1024], new Float32Array(512 * 1024))), (w) =>
            Effect.flip(k.gather(w, Int32Array.from({ length: 500 }, (_, i) => i), "rows"))
          )
        )
      )
    )
    expect(error._tag).toBe("KernelError")
    expect(error.op).toBe("gather")
    expect(error.message).toMatch(/density/)
  })

  it("a coarse request's gathers are freed when its stream ends, completed or interrupted (sparse and Sirius)", () =>
    fc.assert(
      fc.asyncProperty(tinyModelAndPrompt(6), fc.integer({ min: 1, max: 5 }), async ({ config, seed, prompt }, take) => {
        const rt = two.runtime
        await run(
          Effect.gen(function* () {
            const model = yield* Effect.provideService(Model.fromWeights(config, randomWeights(config, { seed })), Kernels, two)
            // a first request fills the RoPE table (kept for the runtime's life)
            yield* Stream.runDrain(Generation.generate(model, { prompt, maxNewTokens: 6 }))
            const before = rt.allocatedBytes
            const sparsity = { granularity: "coarse", density: 0.5 } as const
            const streams = [
              Generation.generate(model, { prompt, maxNewTokens: 6, mode: "sparse", sparsity }),
              Sirius.generate(model, { prompt, maxNewTokens: 6, sparsity, correctionPeriod: 3 })
            ] as const
            for (const stream of streams) {
              let peak = before
              yield* Stream.runDrain(Stream.tap(stream as Stream.Stream<unknown, unknown>, () => Effect.sync(() => void (peak = Math.max(peak, rt.allocatedBytes)))))
              expect(peak).toBeGreaterThan(before) // the gathers did happen
              expect(rt.allocatedBytes).toBe(before)
              yield* Stream.runDrain(Stream.take(stream as Stream.Stream<unknown, unknown>, take)) // interrupted part-way
              expect(rt.allocatedBytes).toBe(before)
            }
          }).pipe(Effect.orDie)
        )
      }),
      { numRuns: 10 }
    ))
})
