/**
 * Load a model from the page's origin: `config.json` and `model.safetensors` fetched from a base URL,
 * decoded with the same Config and Weights code as the Node loader (src/Checkpoint.ts), the tensors
 * parsed from the fetched bytes (browser/safetensors.ts). Single-file checkpoints only, no tokenizer:
 * the page works on token ids.
 */
import { Effect } from "effect"
import { ConfigError, decodeConfig, type LlamaConfig } from "../src/Config.ts"
import { CheckpointError } from "../src/Safetensors.ts"
import { assembleWeights, type ModelWeights } from "../src/Weights.ts"
import { parseSafetensors } from "./safetensors.ts"

const text = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

const fetchOk = (url: string): Effect.Effect<Response, CheckpointError> =>
  Effect.tryPromise({
    try: async () => {
      const response = await fetch(url)
      if (!response.ok) throw new Error(`HTTP ${response.status} ${response.statusText}`)
      return response
    },
    catch: (cause) => new CheckpointError({ file: url, tensor: "", message: `${url}: cannot fetch (${text(cause)})` })
  })

/**
 * @example
 * const { config, weights } = yield* loadFromUrl("/model/")
 */
export const loadFromUrl = (base: string): Effect.Effect<{ readonly config: LlamaConfig; readonly weights: ModelWeights }, ConfigError | CheckpointError> =>
  Effect.gen(function* () {
    const root = base.endsWith("/") ? base : `${base}/`
    const configUrl = `${root}config.json`
    const json = yield* Effect.flatMap(fetchOk(configUrl), (r) =>
      Effect.tryPromise({
        try: (): Promise<unknown> => r.json(),
        catch: (cause) => new ConfigError({ file: configUrl, field: "", message: `${configUrl}: invalid JSON (${text(cause)})` })
      })
    )
    const config = yield* decodeConfig(json, configUrl)
    const weightsUrl = `${root}model.safetensors`
    const bytes = yield* Effect.flatMap(fetchOk(weightsUrl), (r) =>
      Effect.tryPromise({
        try: () => r.arrayBuffer(),
        catch: (cause) => new CheckpointError({ file: weightsUrl, tensor: "", message: `${weightsUrl}: cannot read the body (${text(cause)})` })
      })
    )
    const tensors = yield* parseSafetensors(bytes, weightsUrl)
    const weights = yield* assembleWeights(config, tensors, weightsUrl)
    return { config, weights }
  })
