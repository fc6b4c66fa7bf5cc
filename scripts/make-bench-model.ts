/**
 * make-bench-model: write a random Llama model of a named shape as an HF directory (config.json +
 * model.safetensors), and optionally a GGUF of the same weights, for benchmarks.
 *
 *   npm run build
 *   node dist/scripts/make-bench-model.js --shape tinyllama-1.1b --dtype BF16 --out DIR [--gguf] [--seed N] [--shards N]
 *
 * Weights come from RandomModel.randomWeights (seeded, generated tensor by tensor in the target dtype),
 * so the same flags always give the same bytes. Peak memory is about the model's size in its dtype
 * (2.2 GB for tinyllama-1.1b in BF16); both writers stream tensor by tensor. The GGUF (DIR/model.gguf)
 * stores matrices in the same dtype as the safetensors, norms in F32.
 *
 * This script does not download anything and does not produce a meaningful (trained) model.
 */
import { Effect } from "effect"
import { join } from "node:path"
import { parseArgs } from "node:util"
import { writeGguf } from "../src/Gguf.ts"
import { randomWeights, shapes, writeHfCheckpoint } from "../testing/RandomModel.ts"
import type { ShapeName } from "../testing/RandomModel.ts"
import type { DType } from "../src/Tensor.ts"

const usage =
  "usage: make-bench-model --shape <" +
  Object.keys(shapes).join("|") +
  "> --out DIR [--dtype F32|F16|BF16] [--seed N] [--shards N] [--gguf]"

const fail = (message: string): never => {
  process.stderr.write(`make-bench-model: ${message} (--help for usage)\n`)
  process.exit(2)
}

const parse = () => {
  try {
    return parseArgs({
      strict: true,
      allowPositionals: false,
      options: {
        shape: { type: "string" },
        dtype: { type: "string", default: "BF16" },
        out: { type: "string" },
        seed: { type: "string", default: "1" },
        shards: { type: "string", default: "1" },
        gguf: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false }
      }
    }).values
  } catch (error) {
    // parseArgs messages are multi-line for some errors; keep the first line.
    return fail((error instanceof Error ? error.message : String(error)).split("\n")[0]!)
  }
}

const main = async (): Promise<void> => {
  const flags = parse()
  if (flags.help) {
    process.stdout.write(`${usage}\n`)
    return
  }
  const shapeName = flags.shape ?? fail("--shape is required")
  if (!Object.hasOwn(shapes, shapeName)) fail(`unknown --shape ${JSON.stringify(shapeName)}`)
  const config = shapes[shapeName as ShapeName]
  const out = flags.out ?? fail("--out is required")
  const dtype = flags.dtype
  if (dtype !== "F32" && dtype !== "F16" && dtype !== "BF16") return fail(`--dtype must be F32, F16 or BF16 (got ${JSON.stringify(dtype)})`)
  const seed = Number(flags.seed)
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) fail(`--seed must be an integer in [0, 2^32) (got ${JSON.stringify(flags.seed)})`)
  const shards = Number(flags.shards)
  if (!Number.isInteger(shards) || shards < 1 || shards > 99) fail(`--shards must be an integer in [1, 99] (got ${JSON.stringify(flags.shards)})`)

  const t0 = performance.now()
  const weights = randomWeights(config, { seed, dtype: dtype satisfies DType })
  const t1 = performance.now()
  process.stdout.write(`generated ${shapeName} ${dtype} weights (seed ${seed}) in ${((t1 - t0) / 1000).toFixed(1)} s\n`)
  await Effect.runPromise(writeHfCheckpoint(out, config, weights, { shards }))
  const t2 = performance.now()
  process.stdout.write(`wrote ${out} (config.json + safetensors) in ${((t2 - t1) / 1000).toFixed(1)} s\n`)
  if (flags.gguf) {
    const gguf = join(out, "model.gguf")
    writeGguf(gguf, config, weights, { name: `sirius-ts random ${shapeName} seed ${seed}` })
    process.stdout.write(`wrote ${gguf} in ${((performance.now() - t2) / 1000).toFixed(1)} s\n`)
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`make-bench-model: ${error instanceof Error ? error.message : String(error)}\n`)
  process.exit(1)
})
