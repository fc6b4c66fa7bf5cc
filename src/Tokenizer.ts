/**
 * Tokenizer: text ↔ token ids, wrapping `@huggingface/tokenizers` (docs/formats.md).
 *
 * `loadTokenizer(dir)` reads `tokenizer.json` and, when present, `tokenizer_config.json` from a model
 * directory; nothing goes to the network. The rest of sirius-ts sees only the small TextTokenizer
 * interface, so a model without a tokenizer still runs on token ids.
 *
 * This module does not apply chat templates.
 */
import { Tokenizer } from "@huggingface/tokenizers"
import { Effect } from "effect"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { errorText } from "./Config.ts"
import { CheckpointError } from "./Safetensors.ts"

/** What generation needs from a tokenizer. */
export interface TextTokenizer {
  /** Token ids for `text`, with the special tokens the tokenizer's post-processor adds (e.g. `<s>`). */
  encode(text: string): number[]
  /** Text for `ids`, skipping special tokens. */
  decode(ids: ReadonlyArray<number>): string
}

const readJson = (file: string): Effect.Effect<object, CheckpointError> =>
  Effect.try({
    try: () => JSON.parse(readFileSync(file, "utf8")) as unknown,
    catch: (cause) => new CheckpointError({ file, tensor: "", message: `${file}: cannot read JSON (${errorText(cause)})` })
  }).pipe(
    Effect.flatMap((json) =>
      typeof json === "object" && json !== null && !Array.isArray(json)
        ? Effect.succeed(json)
        : Effect.fail(new CheckpointError({ file, tensor: "", message: `${file}: expected a JSON object` }))
    )
  )

/**
 * Wrap already-parsed `tokenizer.json` and `tokenizer_config.json` objects.
 *
 * **When to use**: tests, or tokenizers that do not come from a directory. `file` names the source in errors.
 *
 * @category constructors
 */
export const makeTokenizer = (tokenizerJson: object, tokenizerConfig: object, file = "tokenizer.json"): Effect.Effect<TextTokenizer, CheckpointError> =>
  Effect.try({
    try: () => new Tokenizer(tokenizerJson, tokenizerConfig),
    catch: (cause) => new CheckpointError({ file, tensor: "", message: `${file}: unsupported or malformed tokenizer (${errorText(cause)})` })
  }).pipe(
    Effect.map(
      (tokenizer): TextTokenizer => ({
        encode: (text) => tokenizer.encode(text, { add_special_tokens: true }).ids,
        decode: (ids) => tokenizer.decode([...ids], { skip_special_tokens: true })
      })
    )
  )

/**
 * Load the tokenizer of a model directory.
 *
 * **When to use**: Checkpoint.loadCheckpoint calls it when `tokenizer.json` exists.
 *
 * **Details**: `tokenizer_config.json` is optional (absent → `{}`). A missing or malformed
 * `tokenizer.json`, or a malformed config, is a CheckpointError naming the file.
 *
 * **Example**
 * ```ts
 * const tok = yield* loadTokenizer("models/tiny")
 * tok.decode(tok.encode("abc ab c")) // => "abc ab c"
 * ```
 *
 * @category constructors
 */
export const loadTokenizer = (dir: string): Effect.Effect<TextTokenizer, CheckpointError> =>
  Effect.gen(function* () {
    const file = join(dir, "tokenizer.json")
    const configFile = join(dir, "tokenizer_config.json")
    const json = yield* readJson(file)
    const config = existsSync(configFile) ? yield* readJson(configFile) : {}
    return yield* makeTokenizer(json, config, file)
  })
