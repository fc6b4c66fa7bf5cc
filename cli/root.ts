/** The package root (where package.json is), found from this file whether run from source or from dist/. */
import { existsSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

export const packageRoot = (): string => {
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, "package.json")) && dirname(dir) !== dir) dir = dirname(dir)
  return dir
}

/** The bundled default model (models/sirius-tiny-arith, trained by training/train.py). */
export const defaultModelDir = (): string => join(packageRoot(), "models", "sirius-tiny-arith")
