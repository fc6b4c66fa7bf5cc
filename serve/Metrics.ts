/**
 * Metrics: the server's counters and gauges, rendered in Prometheus's text exposition format (version
 * 0.0.4) for `GET /metrics`: requests by endpoint and status, prompt and generated tokens, requests
 * cancelled by their client, time to first token and generation duration (summaries: sum and count), and, sampled at
 * scrape time, queue depth, busy slots, backend memory and the generation rate (tokens per second over the
 * last 10 seconds).
 *
 * Plain counters in memory: nothing here runs requests or knows HTTP beyond labels.
 */

/** Seconds the tokens/s gauge averages over. */
const WINDOW_S = 10

export interface Gauges {
  readonly busy: number
  readonly queued: number
  readonly parallel: number
  readonly queue: number
  readonly loaded: boolean
  readonly memory: { readonly usedBytes: number; readonly limitBytes: number } | undefined
}

export interface Metrics {
  /** A request answered: its endpoint and HTTP status. */
  readonly request: (endpoint: string, status: number) => void
  /** Tokens committed by a request (called as they are committed). */
  readonly tokens: (n: number) => void
  /** A finished generation: its prompt, time to first token and duration. */
  readonly finished: (promptTokens: number, ttftMs: number, durationMs: number) => void
  /** A generation interrupted before its end (its client disconnected, or the server shut down). */
  readonly cancelled: () => void
  readonly render: (gauges: Gauges) => string
}

export const make = (now: () => number = () => Date.now()): Metrics => {
  const requests = new Map<string, number>()
  let generated = 0
  let prompt = 0
  let cancelled = 0
  let ttftSum = 0
  let durationSum = 0
  let finishedCount = 0
  // tokens per whole second, for the rate over the last WINDOW_S seconds
  const buckets = new Map<number, number>()

  const rate = () => {
    const second = Math.floor(now() / 1000)
    let sum = 0
    for (const [s, n] of buckets) {
      if (s <= second - WINDOW_S) buckets.delete(s)
      else sum += n
    }
    return sum / WINDOW_S
  }

  return {
    request: (endpoint, status) => {
      const key = `endpoint="${endpoint}",status="${status}"`
      requests.set(key, (requests.get(key) ?? 0) + 1)
    },
    tokens: (n) => {
      generated += n
      const second = Math.floor(now() / 1000)
      buckets.set(second, (buckets.get(second) ?? 0) + n)
    },
    finished: (promptTokens, ttftMs, durationMs) => {
      prompt += promptTokens
      ttftSum += ttftMs / 1000
      durationSum += durationMs / 1000
      finishedCount++
    },
    cancelled: () => void cancelled++,
    render: (g) => {
      const lines: Array<string> = []
      const metric = (name: string, type: "counter" | "gauge", help: string, samples: ReadonlyArray<readonly [string, number]>) => {
        lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`)
        for (const [labels, value] of samples) lines.push(`${name}${labels === "" ? "" : `{${labels}}`} ${value}`)
      }
      // a summary without quantiles: its sum and count
      const summary = (name: string, help: string, sum: number, count: number) =>
        lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} summary`, `${name}_sum ${sum}`, `${name}_count ${count}`)
      metric("sirius_requests_total", "counter", "HTTP requests answered, by endpoint and status.", [...requests].sort(([a], [b]) => a.localeCompare(b)))
      metric("sirius_prompt_tokens_total", "counter", "Prompt tokens of finished generations.", [["", prompt]])
      metric("sirius_generated_tokens_total", "counter", "Tokens generated (committed), all requests.", [["", generated]])
      metric("sirius_requests_cancelled_total", "counter", "Generations interrupted before their end (a client that disconnected, a shutdown).", [["", cancelled]])
      summary("sirius_time_to_first_token_seconds", "Time from a generation's start (after admission) to its first token.", ttftSum, finishedCount)
      summary("sirius_generation_duration_seconds", "Duration of finished generations (after admission).", durationSum, finishedCount)
      metric("sirius_tokens_per_second", "gauge", `Tokens generated per second over the last ${WINDOW_S} seconds.`, [["", rate()]])
      metric("sirius_slots_busy", "gauge", "Request slots running a generation.", [["", g.busy]])
      metric("sirius_slots_total", "gauge", "Request slots (--parallel).", [["", g.parallel]])
      metric("sirius_queue_depth", "gauge", "Requests waiting for a slot.", [["", g.queued]])
      metric("sirius_queue_capacity", "gauge", "Queue places (--queue).", [["", g.queue]])
      metric("sirius_model_loaded", "gauge", "1 once the model is loaded.", [["", g.loaded ? 1 : 0]])
      if (g.memory !== undefined) {
        metric("sirius_backend_memory_used_bytes", "gauge", "Bytes in use in the backend's own memory.", [["", g.memory.usedBytes]])
        metric("sirius_backend_memory_limit_bytes", "gauge", "The most the backend's memory can hold.", [["", g.memory.limitBytes]])
      }
      return lines.join("\n") + "\n"
    }
  }
}
