// Model-based test (fc.commands) of the KV cache operations against a plain array of slots.
import fc from "fast-check"
import { describe, it } from "vitest"
import type { LlamaConfig } from "../src/Config.ts"
import * as KvCache from "../src/KvCache.ts"

const config = { numHiddenLayers: 2, numKeyValueHeads: 1, headDim: 2 } as LlamaConfig
const capacity = 12
const kvDim = 2

/** The model: one entry per valid slot, the value that identifies what was written there. */
interface Slots {
  slots: Array<number>
}
type Real = KvCache.KvCache

/** Slot contents encode (layer, value) so a check can tell layers and keys from values apart. */
const keyRow = (layer: number, value: number) => [value + layer * 1000, value + layer * 1000 + 0.5]
const valueRow = (layer: number, value: number) => keyRow(layer, value).map((x) => -x)

const check = (m: Slots, r: Real) => {
  if (r.length !== m.slots.length) throw new Error(`length ${r.length} vs ${m.slots.length}`)
  for (let l = 0; l < 2; l++)
    m.slots.forEach((v, i) => {
      const k = Array.from(r.keys[l]!.subarray(i * kvDim, (i + 1) * kvDim))
      const val = Array.from(r.values[l]!.subarray(i * kvDim, (i + 1) * kvDim))
      if (k.join() !== keyRow(l, v).join() || val.join() !== valueRow(l, v).join())
        throw new Error(`layer ${l} slot ${i}: expected ${v}, got keys ${k} values ${val}`)
    })
}

class Write implements fc.Command<Slots, Real> {
  constructor(readonly start: number, readonly values: ReadonlyArray<number>) {}
  check = (m: Readonly<Slots>) => this.start <= m.slots.length && this.start + this.values.length <= capacity
  run(m: Slots, r: Real) {
    KvCache.reserve(r, this.start, this.values.length)
    for (let l = 0; l < 2; l++) {
      const k = Float32Array.from(this.values.flatMap((v) => keyRow(l, v)))
      const v = Float32Array.from(this.values.flatMap((x) => valueRow(l, x)))
      KvCache.write(r, l, this.start, k, v)
    }
    this.values.forEach((v, i) => (m.slots[this.start + i] = v))
    check(m, r)
  }
  toString = () => `write(${this.start}, [${this.values}])`
}

class Truncate implements fc.Command<Slots, Real> {
  constructor(readonly n: number) {}
  check = () => true
  run(m: Slots, r: Real) {
    KvCache.truncate(r, this.n)
    m.slots.length = Math.min(m.slots.length, this.n)
    check(m, r)
  }
  toString = () => `truncate(${this.n})`
}

class Compact implements fc.Command<Slots, Real> {
  constructor(readonly picks: ReadonlyArray<number>, readonly start: number) {}
  check = (m: Readonly<Slots>) => this.start <= m.slots.length && this.start + this.picks.length <= capacity && m.slots.length > 0
  run(m: Slots, r: Real) {
    const from = this.picks.map((p) => p % m.slots.length)
    const moved = from.map((s) => m.slots[s]!)
    KvCache.compact(r, from, this.start)
    m.slots.length = this.start
    m.slots.push(...moved)
    check(m, r)
  }
  toString = () => `compact([${this.picks}], ${this.start})`
}

describe("KvCache", () => {
  it("append / overwrite range / truncate / compact behave like an array of slots", () =>
    fc.assert(
      fc.property(
        fc.commands(
          [
            fc.tuple(fc.nat(12), fc.array(fc.integer({ min: 1, max: 99 }), { minLength: 1, maxLength: 5 })).map(([s, v]) => new Write(s, v)),
            fc.nat(12).map((n) => new Truncate(n)),
            fc.tuple(fc.array(fc.nat(20), { minLength: 1, maxLength: 4 }), fc.nat(12)).map(([p, s]) => new Compact(p, s))
          ],
          { maxCommands: 30 }
        ),
        (cmds) => fc.modelRun(() => ({ model: { slots: [] }, real: KvCache.make(config, capacity) }), cmds)
      ),
      { numRuns: 300 }
    ))
})
