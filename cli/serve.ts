/**
 * `sirius serve`: an OpenAI-compatible HTTP server over one model (serve/Server.ts).
 *
 * Prints `listening on http://HOST:PORT` on stdout as soon as it listens (the real port with `--port 0`),
 * then loads the model (503 on /health meanwhile); a model that fails to load ends the command with the
 * error (exit 1). One log line per request goes to stderr. SIGINT or SIGTERM shuts down gracefully: no new
 * connections, in-flight requests get `--shutdown-timeout` seconds to finish, then are cancelled; a second
 * signal exits at once. The generation flags are the per-request defaults (a request's own fields and its
 * `sirius` object override them), so every one of them is accepted whatever `--mode` is.
 */
import { Effect, Logger } from "effect"
import * as RequestPlan from "../serve/RequestPlan.ts"
import * as Server from "../serve/Server.ts"
import { type Flags, float, int, oneOf, parse, UsageError } from "./args.ts"
import { backendLayer } from "./backends.ts"
import { generationFlags, type Io, settings } from "./generate.ts"
import { loadProgressBar } from "./progress.ts"

export const summary = "Serve a model over HTTP: OpenAI-compatible completions and chat, with Sirius per request."
export const usage = "sirius serve [--model DIR] [--host 127.0.0.1] [--port 8080] [--parallel N] [--queue M] [--api-key KEY] [--cors ORIGIN] [generation defaults]"

const { json: _json, ...defaultsFlags } = generationFlags

export const flags = {
  ...defaultsFlags,
  "max-tokens": { type: "string", value: "N", help: "a request's max_tokens when it gives none", default: "generation_config.json's max_new_tokens, else 256, cut to the context left" },
  seed: { type: "string", value: "S", help: "(temperature > 0) seed of requests that give none", default: "a fresh seed per request" },
  host: { type: "string", value: "HOST", help: "address to listen on", default: "127.0.0.1" },
  port: { type: "string", value: "PORT", help: "port to listen on; 0 picks a free one (printed)", default: "8080" },
  parallel: { type: "string", value: "N", help: "requests generating at once (they share the model and --threads)", default: "4" },
  queue: { type: "string", value: "M", help: "requests waiting for a slot; beyond them, 503 with Retry-After", default: "32" },
  "api-key": { type: "string", value: "KEY", help: "require Authorization: Bearer KEY (all but /health)" },
  cors: { type: "string", value: "ORIGIN", help: "allow this browser origin (* for any): CORS headers and preflights" },
  "max-body": { type: "string", value: "BYTES", help: "largest request body (413 beyond)", default: "4194304" },
  "shutdown-timeout": { type: "string", value: "S", help: "seconds in-flight requests get to finish on SIGINT/SIGTERM", default: "10" }
} as const satisfies Flags

/** One line per log entry on stderr: time, level, message. */
const stderrLogger = (io: Io) =>
  Logger.make((o) => io.err(`${o.date.toISOString()} ${o.logLevel.toUpperCase()} ${Array.isArray(o.message) ? o.message.map(String).join(" ") : String(o.message)}\n`))

/** Completes at the first SIGINT or SIGTERM (after it, the default handlers are back: a second one exits at once). */
const signal = Effect.callback<NodeJS.Signals>((resume) => {
  const on = (s: NodeJS.Signals) => {
    process.off("SIGINT", on)
    process.off("SIGTERM", on)
    resume(Effect.succeed(s))
  }
  process.on("SIGINT", on)
  process.on("SIGTERM", on)
  return Effect.sync(() => {
    process.off("SIGINT", on)
    process.off("SIGTERM", on)
  })
})

export const run = (argv: ReadonlyArray<string>, io: Io) => {
  const v = parse(argv, flags)
  const s = settings(v, { perRequestDefaults: true })
  const acceptance = oneOf("acceptance", v.acceptance, ["threshold", "greedy-exact", "speculative"] as const) ?? "threshold"
  if (s.treeWidth > 1 && acceptance === "speculative")
    throw new UsageError("--acceptance speculative samples its own drafts, which tree drafting cannot honour: use --tree-width 1, or --acceptance greedy-exact or threshold")
  const defaults: RequestPlan.Defaults = {
    mode: s.mode,
    granularity: s.granularity,
    density: s.density,
    period: s.correctionPeriod,
    threshold: float("threshold", v.threshold, 0, 1) ?? RequestPlan.defaults.threshold,
    treeWidth: s.treeWidth,
    acceptance,
    sampling: s.sampling,
    seed: v.seed === undefined ? undefined : s.sampling.seed,
    maxTokens: s.maxTokens,
    stop: s.stopStrings
  }
  const host = v.host ?? "127.0.0.1"
  const port = int("port", v.port, 0, 65535) ?? 8080
  const parallel = int("parallel", v.parallel, 1, 4096) ?? 4
  const queue = int("queue", v.queue, 0, 1_000_000) ?? 32
  const maxBodyBytes = int("max-body", v["max-body"], 1024) ?? 4 * 2 ** 20
  const shutdownTimeoutMs = (float("shutdown-timeout", v["shutdown-timeout"], 0, 3600) ?? 10) * 1000
  if (v["api-key"] !== undefined && v["api-key"].trim() === "") throw new UsageError("--api-key must not be empty")

  return Effect.scoped(
    Effect.gen(function* () {
      const bar = loadProgressBar(io)
      const running = yield* Server.make({
        model: s.dir,
        kernels: backendLayer(s.backend, s.threads),
        host,
        port,
        parallel,
        queue,
        apiKey: v["api-key"],
        cors: v.cors,
        defaults,
        maxBodyBytes,
        shutdownTimeoutMs,
        ...(bar === undefined ? {} : { onProgress: bar })
      })
      io.out(`listening on ${running.url}\n`)
      const loaded = Effect.andThen(running.ready, () =>
        Effect.sync(() => {
          bar?.done()
          io.err(`serving ${s.dir} (${parallel} slot${parallel === 1 ? "" : "s"}, queue ${queue})\n`)
        })
      )
      // the model's load failure ends the command (exit 1); a signal ends it at any time
      const got = yield* Effect.raceFirst(Effect.andThen(loaded, Effect.never), signal)
      io.err(`${got}: shutting down (in-flight requests get ${shutdownTimeoutMs / 1000} s)\n`)
    })
  ).pipe(Effect.provide(Logger.layer([stderrLogger(io)])))
}
