/**
 * serve-load: a bounded load on `sirius serve` over loopback, for the serving numbers in the docs.
 *
 *   npm run build
 *   node dist/scripts/serve-load.js [--model DIR] [--backend simd] [--threads 2] [--requests 300]
 *       [--concurrency 1,4,8] [--max-tokens 64] [--mode full|sparse|sirius] [--json]
 *
 * It starts `sirius serve --port 0` in a child process (with `--parallel` the highest concurrency, so
 * nothing queues past the slots), waits for /health, then for each concurrency level runs `--requests`
 * streamed completions from that many workers: the bundled task's prompts in turn (token ids for a model
 * without a tokenizer). Per level: requests/s, generated tokens/s, p50/p99 latency and time to first
 * token (the first chunk, as a client sees it), errors; the server's RSS before the first level and after
 * the last (Linux /proc). The server is stopped with SIGTERM at the end.
 *
 * Measures the server as a client sees it; it does not start a second model or compare with anything.
 */
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { parseArgs } from "node:util"
import * as Bundled from "../src/Bundled.ts"

const { values: flags } = parseArgs({
  options: {
    model: { type: "string", default: Bundled.modelDir },
    backend: { type: "string", default: "simd" },
    threads: { type: "string", default: "2" },
    requests: { type: "string", default: "300" },
    concurrency: { type: "string", default: "1,4,8" },
    "max-tokens": { type: "string", default: "64" },
    mode: { type: "string", default: "full" },
    "token-prompt": { type: "boolean", default: false },
    json: { type: "boolean", default: false }
  }
})

const requests = Number(flags.requests)
const levels = flags.concurrency!.split(",").map(Number)
const maxTokens = Number(flags["max-tokens"])
const prompts = readFileSync(Bundled.testData, "utf8")
  .trim()
  .split("\n")
  .map((l) => (JSON.parse(l) as { prompt: string }).prompt)

/** Resident set of a process in bytes (Linux), or NaN. */
const rss = (pid: number): number => {
  try {
    const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]
    return kb === undefined ? NaN : Number(kb) * 1024
  } catch {
    return NaN
  }
}

const percentile = (xs: ReadonlyArray<number>, p: number): number => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}

interface Sample {
  readonly ok: boolean
  readonly latencyMs: number
  readonly ttftMs: number
  readonly tokens: number
}

/** One streamed completion: latency, time to its first chunk, generated tokens (from the usage chunk). */
const one = async (url: string, i: number): Promise<Sample> => {
  const started = performance.now()
  const body = {
    prompt: flags["token-prompt"] ? [1, 5 + (i % 40), 6, 7] : prompts[i % prompts.length],
    max_tokens: maxTokens,
    stream: true,
    stream_options: { include_usage: true },
    ...(flags["token-prompt"] ? { logprobs: 0 } : {}),
    ...(flags.mode === "full" ? {} : { sirius: { mode: flags.mode } })
  }
  try {
    const r = await fetch(`${url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })
    if (r.status !== 200) return { ok: false, latencyMs: performance.now() - started, ttftMs: NaN, tokens: 0 }
    const reader = r.body!.getReader()
    const decoder = new TextDecoder()
    let ttft = NaN
    let text = ""
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      text += decoder.decode(value, { stream: true })
      if (Number.isNaN(ttft) && text.includes('"choices":[{')) ttft = performance.now() - started
    }
    const usage = /"choices":\[\],"usage":\{"prompt_tokens":\d+,"completion_tokens":(\d+)/.exec(text)
    return { ok: text.endsWith("data: [DONE]\n\n") && usage !== null, latencyMs: performance.now() - started, ttftMs: ttft, tokens: Number(usage?.[1] ?? 0) }
  } catch {
    return { ok: false, latencyMs: performance.now() - started, ttftMs: NaN, tokens: 0 }
  }
}

/** `n` requests from `c` workers. */
const level = async (url: string, c: number, n: number) => {
  const samples: Array<Sample> = []
  let next = 0
  const started = performance.now()
  await Promise.all(
    Array.from({ length: c }, async () => {
      while (next < n) samples.push(await one(url, next++))
    })
  )
  const seconds = (performance.now() - started) / 1000
  const ok = samples.filter((s) => s.ok)
  return {
    concurrency: c,
    requests: n,
    errors: samples.length - ok.length,
    requestsPerSecond: ok.length / seconds,
    tokensPerSecond: ok.reduce((t, s) => t + s.tokens, 0) / seconds,
    meanTokens: ok.reduce((t, s) => t + s.tokens, 0) / Math.max(1, ok.length),
    latencyP50Ms: percentile(ok.map((s) => s.latencyMs), 50),
    latencyP99Ms: percentile(ok.map((s) => s.latencyMs), 99),
    ttftP50Ms: percentile(ok.map((s) => s.ttftMs), 50),
    ttftP99Ms: percentile(ok.map((s) => s.ttftMs), 99)
  }
}

const main = async () => {
  const bin = join(Bundled.packageRoot(), "bin", "sirius.js")
  const parallel = String(Math.max(...levels))
  const args = [bin, "serve", "--model", flags.model!, "--port", "0", "--backend", flags.backend!, "--parallel", parallel, ...(flags.backend === "simd" ? ["--threads", flags.threads!] : [])]
  const server = spawn("node", args, { stdio: ["ignore", "pipe", "pipe"] })
  let out = ""
  let err = ""
  server.stdout.on("data", (d: Buffer) => void (out += d.toString()))
  server.stderr.on("data", (d: Buffer) => void (err += d.toString()))
  const exited = new Promise<number | null>((resolve) => server.on("exit", resolve))
  try {
    while (!/listening on (\S+)\n/.test(out)) {
      if (server.exitCode !== null) throw new Error(`sirius serve exited: ${err}`)
      await new Promise((r) => setTimeout(r, 50))
    }
    const url = /listening on (\S+)\n/.exec(out)![1]!
    for (;;) {
      const status = (await fetch(`${url}/health`)).status
      if (status === 200) break
      if (status !== 503) throw new Error(`the model did not load: ${err}`)
      await new Promise((r) => setTimeout(r, 200))
    }
    await one(url, 0) // warm-up
    const rssBefore = rss(server.pid!)
    const results = []
    for (const c of levels) results.push(await level(url, c, requests))
    const rssAfter = rss(server.pid!)
    const report = { model: flags.model, backend: flags.backend, threads: Number(flags.threads), mode: flags.mode, maxTokens, rssBefore, rssAfter, results }
    if (flags.json) process.stdout.write(JSON.stringify(report) + "\n")
    else {
      const ms = (x: number) => x.toFixed(0)
      const rate = (x: number) => (x >= 100 ? x.toFixed(0) : x.toPrecision(3))
      process.stdout.write(`${flags.model}: ${flags.backend}${flags.backend === "simd" ? `, ${flags.threads} threads` : ""}, mode ${flags.mode}, max_tokens ${maxTokens}\n`)
      process.stdout.write("| concurrency | requests | errors | req/s | tokens/s | latency p50 / p99 (ms) | TTFT p50 / p99 (ms) |\n|---|---|---|---|---|---|---|\n")
      for (const r of results)
        process.stdout.write(
          `| ${r.concurrency} | ${r.requests} | ${r.errors} | ${rate(r.requestsPerSecond)} | ${rate(r.tokensPerSecond)} | ${ms(r.latencyP50Ms)} / ${ms(r.latencyP99Ms)} | ${ms(r.ttftP50Ms)} / ${ms(r.ttftP99Ms)} |\n`
        )
      process.stdout.write(`server RSS: ${(rssBefore / 2 ** 20).toFixed(0)} MiB before, ${(rssAfter / 2 ** 20).toFixed(0)} MiB after\n`)
    }
  } finally {
    server.kill("SIGTERM")
    await exited
  }
}

await main()
