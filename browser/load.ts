/**
 * Load a model from the page's origin: `config.json` and `model.safetensors` fetched from a base URL,
 * decoded with the same Config and Weights code as the Node loader (src/Checkpoint.ts), the tensors
 * parsed from the fetched bytes (browser/safetensors.ts). Single-file checkpoints only. `loadFromUrl`
 * gives the config and weights (the tests' pages work on token ids); `loadCheckpointFromUrl` a whole
 * Checkpoint as the Node loader would (tokenizer.json and tokenizer_config.json through the same
 * @huggingface/tokenizers wrapper, generation_config.json's eos ids and max_new_tokens), for Client.
 */
import { Effect } from "effect"
import type { Checkpoint } from "../src/Checkpoint.ts"
import { ConfigError, decodeConfig, type LlamaConfig, normaliseTokenIds } from "../src/Config.ts"
import { CheckpointError } from "../src/Safetensors.ts"
import { makeTokenizer } from "../src/Tokenizer.ts"
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

const fetchJson = (url: string, optional: boolean): Effect.Effect<Record<string, unknown> | undefined, CheckpointError> =>
  Effect.tryPromise({
    try: async () => {
      const response = await fetch(url)
      if (optional && response.status === 404) return undefined
      if (!response.ok) throw new Error(`HTTP ${response.status} ${response.statusText}`)
      const json: unknown = await response.json()
      if (typeof json !== "object" || json === null || Array.isArray(json)) throw new Error("expected a JSON object")
      return json as Record<string, unknown>
    },
    catch: (cause) => new CheckpointError({ file: url, tensor: "", message: `${url}: ${text(cause)}` })
  })

/**
 * A Checkpoint from a model directory served at `base` (config, weights, tokenizer, generation config).
 *
 * @example
 * const checkpoint = yield* loadCheckpointFromUrl("/model/")
 * const stream = Client.requestStream(checkpoint, model, { prompt: "Q: ...\nA:", mode: "sirius" })
 */
export const loadCheckpointFromUrl = (base: string): Effect.Effect<Checkpoint, ConfigError | CheckpointError> =>
  Effect.gen(function* () {
    const root = base.endsWith("/") ? base : `${base}/`
    const { config, weights } = yield* loadFromUrl(root)
    const tokenizerJson = yield* fetchJson(`${root}tokenizer.json`, true)
    const tokenizerConfig = yield* fetchJson(`${root}tokenizer_config.json`, true)
    const generation = yield* fetchJson(`${root}generation_config.json`, true)
    const tokenizer = tokenizerJson === undefined ? undefined : yield* makeTokenizer(tokenizerJson, tokenizerConfig ?? {}, `${root}tokenizer.json`)
    const extraEos = normaliseTokenIds(generation?.["eos_token_id"] as number | ReadonlyArray<number> | null | undefined)
    const maxNewTokens = generation?.["max_new_tokens"]
    const checkpoint: Checkpoint = {
      path: root,
      dir: root,
      config,
      weights,
      tokenizer,
      eosTokenIds: [...new Set([...config.eosTokenIds, ...extraEos])].filter((id) => id < config.vocabSize),
      generation: typeof maxNewTokens === "number" ? { maxNewTokens } : {},
      specialTokens: {}
    }
    return checkpoint
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
