/** The package root and the bundled model, for the CLI's defaults (src/Bundled.ts resolves them). */
import * as Bundled from "../src/Bundled.ts"

export const packageRoot = Bundled.packageRoot

/** The bundled default model (models/sirius-tiny-arith, trained by training/train.py). */
export const defaultModelDir = (): string => Bundled.modelDir
