// Model-based test (fc.commands) of the KV cache operations (src/KvCache.ts over each backend's KvStore)
// against a plain array of slots: append, overwrite a range, truncate, compact, on every backend.
import { Context, Effect, Exit, Layer, Scope } from "effect"
import fc from "fast-check"
import { afterAll, describe, it } from "vitest"
import { ReferenceKernels } from "../reference/index.ts"
import { SimdKernels } from "../simd/index.ts"
import type { LlamaConfig } from "../src/Config.ts"
import { Kernels, type KernelsShape } from "../src/Kernels.ts"
import * as KvCache from "../src/KvCache.ts"

const config = { numHiddenLayers: 2, numKeyValueHeads: 1, headDim: 3 } as LlamaConfig
const capacity = 12
const kvDim = 3

/** The model: one entry per valid slot, the value that identifies what was written there. */
interface Slots {
  slots: Array<number>
}
interface Real {
  readonly k: KernelsShape
  readonly cache: KvCache.KvCache
}

/** Slot contents encode (layer, value) so a check can tell layers and keys from values apart. */
const keyRow = (layer: number, value: number) => [value + layer * 1000, value + layer * 1000 + 0.5, -value]
const valueRow = (layer: number, value: number) => keyRow(layer, value).map((x) => -x)

const run = <A>(e: Effect.Effect<A, unknown, Scope.Scope>) => Effect.runPromise(Effect.scoped(e))

const check = async (m: Slots, r: Real) => {
  if (r.cache.length !== m.slots.length) throw new Error(`length ${r.cache.length} vs ${m.slots.length}`)
  for (let l = 0; l < 2; l++) {
    const { keys, values } = await run(r.k.kvRead(r.cache.store, l, r.cache.length))
    m.slots.forEach((v, i) => {
      const k = Array.from(keys.subarray(i * kvDim, (i + 1) * kvDim))
      const val = Array.from(values.subarray(i * kvDim, (i + 1) * kvDim))
      if (k.join() !== keyRow(l, v).join() || val.join() !== valueRow(l, v).join())
        throw new Error(`layer ${l} slot ${i}: expected ${v}, got keys ${k} values ${val}`)
    })
  }
}

class Write implements fc.AsyncCommand<Slots, Real> {
  constructor(readonly start: number, readonly values: ReadonlyArray<number>) {}
  check = (m: Readonly<Slots>) => this.start <= m.slots.length && this.start + this.values.length <= capacity
  async run(m: Slots, r: Real) {
    KvCache.reserve(r.cache, this.start, this.values.length)
    for (let l = 0; l < 2; l++) {
      const k = Float32Array.from(this.values.flatMap((v) => keyRow(l, v)))
      const v = Float32Array.from(this.values.flatMap((x) => valueRow(l, x)))
      const n = this.values.length
      const start = this.start
      await run(
        Effect.gen(function* () {
          yield* r.k.kvWrite(r.cache.store, l, start, yield* r.k.upload(k, n, kvDim), yield* r.k.upload(v, n, kvDim))
        })
      )
    }
    this.values.forEach((v, i) => (m.slots[this.start + i] = v))
    await check(m, r)
  }
  toString = () => `write(${this.start}, [${this.values}])`
}

class Truncate implements fc.AsyncCommand<Slots, Real> {
  constructor(readonly n: number) {}
  check = () => true
  async run(m: Slots, r: Real) {
    KvCache.truncate(r.cache, this.n)
    m.slots.length = Math.min(m.slots.length, this.n)
    await check(m, r)
  }
  toString = () => `truncate(${this.n})`
}

class Compact implements fc.AsyncCommand<Slots, Real> {
  constructor(readonly picks: ReadonlyArray<number>, readonly start: number) {}
  check = (m: Readonly<Slots>) => this.start <= m.slots.length && this.start + this.picks.length <= capacity && m.slots.length > 0
  async run(m: Slots, r: Real) {
    const from = this.picks.map((p) => p % m.slots.length)
    const moved = from.map((s) => m.slots[s]!)
    await Effect.runPromise(KvCache.compact(r.k, r.cache, from, this.start))
    m.slots.length = this.start
    m.slots.push(...moved)
    await check(m, r)
  }
  toString = () => `compact([${this.picks}], ${this.start})`
}

const backends: ReadonlyArray<readonly [string, Layer.Layer<Kernels, unknown>]> = [
  ["reference", ReferenceKernels.layer],
  ["simd", SimdKernels.layer({ threads: 2 })]
]

describe.each(backends)("KvCache on %s", (_name, layer) => {
  const scope = Effect.runSync(Scope.make())
  afterAll(() => Effect.runPromise(Scope.close(scope, Exit.void)))

  it("append / overwrite range / truncate / compact behave like an array of slots", async () => {
    // the layer lives in the describe's scope (simd's workers stay up for every run)
    const k = Context.get(await Effect.runPromise(Layer.buildWithScope(layer, scope) as Effect.Effect<Context.Context<Kernels>>), Kernels)
    await fc.assert(
      fc.asyncProperty(
        fc.commands(
          [
            fc.tuple(fc.nat(12), fc.array(fc.integer({ min: 1, max: 99 }), { minLength: 1, maxLength: 5 })).map(([s, v]) => new Write(s, v)),
            fc.nat(12).map((n) => new Truncate(n)),
            fc.tuple(fc.array(fc.nat(20), { minLength: 1, maxLength: 4 }), fc.nat(12)).map(([p, s]) => new Compact(p, s))
          ],
          { maxCommands: 30 }
        ),
        async (cmds) => {
          const cacheScope = await Effect.runPromise(Scope.make())
          const cache = await Effect.runPromise(Scope.provide(KvCache.make(k, config, capacity), cacheScope))
          await fc.asyncModelRun(() => ({ model: { slots: [] }, real: { k, cache } }), cmds)
          await Effect.runPromise(Scope.close(cacheScope, Exit.void))
        }
      ),
      { numRuns: 100 }
    )
  })
})
