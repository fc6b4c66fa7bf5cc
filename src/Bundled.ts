/**
 * Bundled: where the package's own model and task live on disk: `sirius-tiny-arith` (a 1M-parameter Llama
 * trained by training/train.py on synthetic multi-step arithmetic, the CLI's default model) and its test
 * split. Resolved from this file's location, so the paths are right from the sources, from dist/, and inside
 * an installed package.
 *
 * @example
 * import { Bundled, Client } from "sirius-ts"
 * const client = await Client.open(Bundled.modelDir, { kernels: SimdKernels.layer() })
 */
import { existsSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

/** The package root: the nearest directory above this file that holds package.json. */
export const packageRoot = (): string => {
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, "package.json")) && dirname(dir) !== dir) dir = dirname(dir)
  return dir
}

/** models/sirius-tiny-arith: config.json, model.safetensors, tokenizer.json, its model card. */
export const modelDir: string = join(packageRoot(), "models", "sirius-tiny-arith")

/** data/arith/test.jsonl: the bundled model's 400 test problems, one {"prompt", "answer"} per line. */
export const testData: string = join(packageRoot(), "data", "arith", "test.jsonl")
