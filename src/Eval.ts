/**
 * Eval: accuracy of a generation mode on a JSONL set of problems, with aggregated Sirius stats.
 *
 * Each line is `{"prompt": "...", "answer": "29"}`. The task supplies how an answer is read from a
 * completion (`AnswerRule`): a regular expression whose first capture group, at its last match, is the
 * answer. A model directory declares its task's rule in `eval.json` (`{"answer_regex": "..."}`), which
 * `sirius eval --model DIR` uses unless `--answer-regex` overrides it.
 */
import { Effect, Schema, Stream } from "effect"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"

export class EvalDataError extends Schema.TaggedError<EvalDataError>()("EvalDataError", {
  file: Schema.String,
  line: Schema.Number,
  message: Schema.String
}) {}

export interface Problem {
  readonly prompt: string
  readonly answer: string
}

const ProblemSchema = Schema.Struct({ prompt: Schema.String, answer: Schema.String })

export const readProblems = (file: string): Effect.Effect<ReadonlyArray<Problem>, EvalDataError> =>
  Effect.gen(function* () {
    const text = yield* Effect.try({
      try: () => readFileSync(file, "utf8"),
      catch: (e) => new EvalDataError({ file, line: 0, message: `${file}: cannot read (${(e as Error).message})` })
    })
    const problems: Array<Problem> = []
    const lines = text.split("\n")
    for (let i = 0; i < lines.length; i++) {
      if (lines[i]!.trim() === "") continue
      const json = yield* Effect.try({
        try: (): unknown => JSON.parse(lines[i]!),
        catch: () => new EvalDataError({ file, line: i + 1, message: `${file}:${i + 1}: not valid JSON` })
      })
      problems.push(
        yield* Schema.decodeUnknownEffect(ProblemSchema)(json).pipe(
          Effect.mapError(() => new EvalDataError({ file, line: i + 1, message: `${file}:${i + 1}: expected {"prompt": string, "answer": string}` }))
        )
      )
    }
    if (problems.length === 0) return yield* Effect.fail(new EvalDataError({ file, line: 0, message: `${file}: no problems` }))
    return problems
  })

/** How a task reads the answer from a completion: the first capture group of the regex's last match. */
export interface AnswerRule {
  readonly pattern: RegExp
  /** Where the rule came from (an eval.json, a flag), for reports. */
  readonly source: string
}

/**
 * A rule from a regex source. Fails with EvalDataError (naming `where`) when it does not compile or has no
 * capture group.
 */
export const answerRule = (regex: string, where: string): Effect.Effect<AnswerRule, EvalDataError> =>
  Effect.gen(function* () {
    const pattern = yield* Effect.try({
      try: () => new RegExp(regex, "g"),
      catch: (e) => new EvalDataError({ file: where, line: 0, message: `${where}: answer_regex ${JSON.stringify(regex)} is not a valid regular expression (${(e as Error).message})` })
    })
    if (new RegExp(`${regex}|`).exec("")!.length < 2)
      return yield* new EvalDataError({ file: where, line: 0, message: `${where}: answer_regex ${JSON.stringify(regex)} has no capture group for the answer` })
    return { pattern, source: where }
  })

const EvalJson = Schema.Struct({ answer_regex: Schema.String })

/**
 * The answer rule a model directory declares in its `eval.json`, or undefined when it has none. A present
 * but malformed file is an EvalDataError naming the file and the field.
 */
export const declaredRule = (dir: string): Effect.Effect<AnswerRule | undefined, EvalDataError> =>
  Effect.gen(function* () {
    const file = join(dir, "eval.json")
    if (!existsSync(file)) return undefined
    const json = yield* Effect.try({
      try: (): unknown => JSON.parse(readFileSync(file, "utf8")),
      catch: (e) => new EvalDataError({ file, line: 0, message: `${file}: not valid JSON (${(e as Error).message})` })
    })
    const decoded = yield* Schema.decodeUnknownEffect(EvalJson)(json).pipe(
      Effect.mapError(() => new EvalDataError({ file, line: 0, message: `${file}: expected {"answer_regex": string}` }))
    )
    return yield* answerRule(decoded.answer_regex, file)
  })

/** The answer in a completion: the first group of the rule's last match, or undefined. */
export const extractAnswer = (rule: AnswerRule, completion: string): string | undefined => {
  const matches = [...completion.matchAll(rule.pattern)]
  return matches.length > 0 ? matches[matches.length - 1]![1] : undefined
}

/** What one finished request contributes (the shape shared by full, sparse and Sirius stats). */
export interface RequestOutcome {
  readonly text: string
  readonly stats: {
    readonly generatedTokens: number
    readonly decodeMs: number
    readonly parameterDensity: number
    readonly fullForwards: number
    readonly sparseForwards: number
    readonly aal?: number
    readonly correctionPeriod?: number
    readonly verifications?: number
    readonly rollbacks?: number
    readonly meanRollbackLength?: number
    readonly correctedFraction?: number
  }
}

export interface EvalReport {
  readonly problems: number
  readonly correct: number
  readonly accuracy: number
  readonly parameterDensity: number
  /** Token-weighted over requests: Σ(accepted + 1) / #verifications, each request's last period excluded. */
  readonly aal: number | undefined
  readonly correctionPeriod: number | undefined
  readonly effectiveDensity: number
  readonly rollbacks: number
  readonly meanRollbackLength: number
  readonly correctedFraction: number
  readonly generatedTokens: number
  /** Decoded tokens per second: each request's tokens after its first (the prefill's), over decoding time. */
  readonly tokensPerSecond: number
}

/**
 * Run every problem through `solve` (one request each), score its completion with the task's rule, and
 * aggregate. `onProgress(done, total, correct)` after each.
 */
export const evaluate = <E>(
  problems: ReadonlyArray<Problem>,
  rule: AnswerRule,
  solve: (prompt: string) => Effect.Effect<RequestOutcome, E>,
  onProgress: (done: number, total: number, correct: number) => void = () => {}
): Effect.Effect<EvalReport, E> =>
  Effect.gen(function* () {
    let correct = 0
    let generated = 0
    let decodeMs = 0
    let decoded = 0
    let aalWeighted = 0
    let periods = 0
    let rollbacks = 0
    let rollbackTokens = 0
    let corrected = 0
    let density = 1
    let period: number | undefined
    for (const [i, p] of problems.entries()) {
      const out = yield* solve(p.prompt)
      const s = out.stats
      if (extractAnswer(rule, out.text) === p.answer) correct++
      generated += s.generatedTokens
      decodeMs += s.decodeMs
      // as generation counts it: the first token of each request comes from its prefill, not from decoding
      decoded += Math.max(0, s.generatedTokens - 1)
      density = s.parameterDensity
      if (s.aal !== undefined && s.verifications !== undefined && s.aal > 0) {
        const n = s.verifications > 1 ? s.verifications - 1 : s.verifications
        aalWeighted += s.aal * n
        periods += n
        period = s.correctionPeriod
        rollbacks += s.rollbacks ?? 0
        rollbackTokens += (s.rollbacks ?? 0) * (s.meanRollbackLength ?? 0)
        corrected += (s.correctedFraction ?? 0) * s.generatedTokens
      }
      onProgress(i + 1, problems.length, correct)
    }
    const aal = periods > 0 ? aalWeighted / periods : undefined
    return {
      problems: problems.length,
      correct,
      accuracy: correct / problems.length,
      parameterDensity: density,
      aal,
      correctionPeriod: period,
      effectiveDensity: aal !== undefined && period !== undefined ? ((period - 1) * density + 1) / aal : density,
      rollbacks,
      meanRollbackLength: rollbacks > 0 ? rollbackTokens / rollbacks : 0,
      correctedFraction: generated > 0 ? corrected / generated : 0,
      generatedTokens: generated,
      tokensPerSecond: decodeMs > 0 ? (decoded * 1000) / decodeMs : 0
    }
  })

/** Collect a request stream's Finished event as a RequestOutcome. */
export const outcomeOf = <E>(stream: Stream.Stream<{ readonly _tag: string }, E>): Effect.Effect<RequestOutcome, E> =>
  Stream.runLast(stream).pipe(Effect.map((last) => (last as unknown as { value: RequestOutcome }).value))
