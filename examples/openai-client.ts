/**
 * Talking to `sirius serve` with the official `openai` npm package: a chat completion, the same streamed,
 * and a Sirius request through the `sirius` extension object with its stats read back. Nothing here is
 * specific to sirius-ts but the extension fields, which the openai types do not know (hence the casts).
 *
 * Run: npx sirius serve --mode sirius &      (prints "listening on http://127.0.0.1:8080")
 *      npm run build && node dist/examples/openai-client.js [--url http://127.0.0.1:8080]
 */
import OpenAI from "openai"
import { parseArgs } from "node:util"

/** What `sirius serve` adds to a completion when the request was sparse or Sirius. */
interface SiriusStats {
  readonly mode: string
  readonly aal?: number
  readonly effective_density?: number
  readonly parameter_density: number
  readonly corrected_tokens?: number
  readonly rollbacks?: number
}

export const main = async (url: string): Promise<void> => {
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: process.env["SIRIUS_API_KEY"] ?? "none" })
  const [model] = (await client.models.list()).data
  const question = "Tom has 23 apples. He buys 15 more. He gives away 9. How many apples now?"

  const chat = await client.chat.completions.create({ model: model!.id, messages: [{ role: "user", content: question }] })
  console.log(`${model!.id}: ${chat.choices[0]!.message.content?.trim()} (${chat.usage!.completion_tokens} tokens, ${chat.choices[0]!.finish_reason})`)

  const stream = await client.chat.completions.create({ model: model!.id, messages: [{ role: "user", content: question }], stream: true, stream_options: { include_usage: true } })
  process.stdout.write("streamed:")
  for await (const chunk of stream) {
    process.stdout.write(chunk.choices[0]?.delta.content ?? "")
    if (chunk.usage) console.log(`(${chunk.usage.total_tokens} tokens in all)`)
  }

  // the extension: per-request mode and settings; the answer carries the request's Sirius stats
  const params = { model: model!.id, messages: [{ role: "user" as const, content: question }], sirius: { mode: "sirius", period: 8, acceptance: "threshold", threshold: 0.1 } }
  const sirius = (await client.chat.completions.create(params as OpenAI.ChatCompletionCreateParamsNonStreaming)) as OpenAI.ChatCompletion & { sirius?: SiriusStats }
  const s = sirius.sirius!
  console.log(`sirius: ${sirius.choices[0]!.message.content?.trim()}  AAL ${s.aal?.toFixed(2)}/8, effective density ${s.effective_density?.toFixed(3)}, ${s.corrected_tokens} corrected`)
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { url: { type: "string", default: "http://127.0.0.1:8080" } } })
  await main(values.url!)
}
