/**
 * decode-ab: the decode speed of two builds of sirius-ts on one model, measured in ONE process with their
 * decode steps interleaved, for kernel changes smaller than the machine's drift between runs.
 *
 *   npm run build; cp -r dist /tmp/dist-before   (then change the kernels and `npm run build` again)
 *   node dist/scripts/decode-ab.js --model FILE_OR_DIR --a /tmp/dist-before --b dist [--rounds 16]
 *       [--block 8] [--threads 2]
 *
 * Each build (a compiled `dist/` folder) loads the model on its own simd backend and prefills 16 tokens.
 * Then, per round, each decodes a block of single-token steps (the order alternating between rounds,
 * 60 ms apart so the other build's spinning worker has gone to sleep); a round's figure is each block's
 * median step. Prints both builds' median ms per token and the per-round speed of B relative to A (A's step
 * time ÷ B's): median, min and max. On these 2-vCPU VMs single `sirius bench` runs swing by 20% and more;
 * the median per-round ratio of this script moved by at most 8% between repeats (simd/README.md).
 */
import { Effect, Scope } from "effect"
import { resolve } from "node:path"
import { parseArgs } from "node:util"
import { pathToFileURL } from "node:url"

const { values } = parseArgs({
  options: {
    model: { type: "string" },
    a: { type: "string" },
    b: { type: "string" },
    rounds: { type: "string", default: "16" },
    block: { type: "string", default: "8" },
    threads: { type: "string", default: "2" }
  }
})
if (values.model === undefined || values.a === undefined || values.b === undefined) {
  process.stderr.write("usage: node dist/scripts/decode-ab.js --model FILE_OR_DIR --a DIST_A --b DIST_B [--rounds 16] [--block 8] [--threads 2]\n")
  process.exit(2)
}
const rounds = Number(values.rounds)
const block = Number(values.block)
const threads = Number(values.threads)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const median = (xs: ReadonlyArray<number>) => [...xs].sort((p, q) => p - q)[xs.length >> 1]!

/** Load the model with the build at `root`; returns a function that decodes one block and gives its median step (ms). */
const setup = async (root: string): Promise<{ readonly name: string; readonly decodeBlock: () => Promise<number> }> => {
  const from = (path: string) => import(pathToFileURL(resolve(root, path)).href)
  // Typed as this checkout's modules: the two builds must share these signatures.
  const { SimdKernels }: typeof import("../simd/index.ts") = await from("simd/index.js")
  const { loadCheckpoint }: typeof import("../src/Checkpoint.ts") = await from("src/Checkpoint.js")
  const Forward: typeof import("../src/Forward.ts") = await from("src/Forward.js")
  const KvCache: typeof import("../src/KvCache.ts") = await from("src/KvCache.js")
  const Model: typeof import("../src/Model.ts") = await from("src/Model.js")
  const { Kernels }: typeof import("../src/Kernels.ts") = await from("src/Kernels.js")
  // Everything stays alive for the process: the scope is never closed.
  const scope = await Effect.runPromise(Scope.make())
  const kernels = await Effect.runPromise(Scope.provide(SimdKernels.make({ threads }), scope))
  const checkpoint = await Effect.runPromise(loadCheckpoint(values.model!))
  const model = await Effect.runPromise(Effect.provideService(Model.fromCheckpoint(checkpoint), Kernels, kernels))
  const V: number = checkpoint.config.vocabSize
  const cache = await Effect.runPromise(Scope.provide(KvCache.make(kernels, checkpoint.config, 16 + (rounds + 1) * block + 8), scope))
  await Effect.runPromise(Forward.forward(model, cache, Int32Array.from({ length: 16 }, (_, i) => 3 + ((i * 7919) % (V - 3))), 0, "last"))
  let position = 16
  const decodeBlock = async () => {
    const steps: Array<number> = []
    for (let i = 0; i < block; i++) {
      const t0 = performance.now()
      await Effect.runPromise(Forward.forward(model, cache, Int32Array.of(3 + ((position * 31) % (V - 3))), position, "last"))
      steps.push(performance.now() - t0)
      position++
    }
    return median(steps)
  }
  return { name: kernels.name, decodeBlock }
}

const A = await setup(values.a)
const B = await setup(values.b)
await A.decodeBlock() // warm-up block each
await sleep(60)
await B.decodeBlock()
const msA: Array<number> = []
const msB: Array<number> = []
const ratios: Array<number> = []
for (let round = 0; round < rounds; round++) {
  const [first, second] = round % 2 === 0 ? [A, B] : [B, A]
  await sleep(60)
  const x = await first.decodeBlock()
  await sleep(60)
  const y = await second.decodeBlock()
  const [a, b] = round % 2 === 0 ? [x, y] : [y, x]
  msA.push(a)
  msB.push(b)
  ratios.push(a / b)
}
console.log(`A ${values.a}: ${median(msA).toFixed(1)} ms/token (${(1000 / median(msA)).toFixed(2)} tok/s), ${A.name}`)
console.log(`B ${values.b}: ${median(msB).toFixed(1)} ms/token (${(1000 / median(msB)).toFixed(2)} tok/s), ${B.name}`)
console.log(
  `speed of B ÷ speed of A per round: median ${median(ratios).toFixed(3)}, min ${Math.min(...ratios).toFixed(3)}, max ${Math.max(...ratios).toFixed(3)} (${rounds} rounds of ${block} steps)`
)
process.exit(0)
