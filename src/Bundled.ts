/**
 * Bundled: where the package's own models and tasks live on disk: `sirius-tiny-arith` (a 1M-parameter Llama
 * trained by training/train.py on synthetic multi-step arithmetic, the CLI's default model), `sirius-tiny-gsm`
 * (a harder, less peaked task of tiny GSM-style word problems) and their test splits. Resolved from this
 * file's location, so the paths are right from the sources, from dist/, and inside an installed package.
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

/**
 * models/sirius-tiny-gsm: the second bundled model (2.2M parameters, word-level tokenizer), trained by
 * `training/train.py --task gsm` on tiny GSM-style word problems whose solutions can be written more than one
 * way, so its next-token distributions have real entropy and Sirius's lossy acceptance shows. Its model card
 * (README.md) has the measured table.
 */
export const gsmModelDir: string = join(packageRoot(), "models", "sirius-tiny-gsm")

/** data/gsm/test.jsonl: sirius-tiny-gsm's 400 test problems (1-shot prompts), one {"prompt", "answer"} per line. */
export const gsmTestData: string = join(packageRoot(), "data", "gsm", "test.jsonl")
