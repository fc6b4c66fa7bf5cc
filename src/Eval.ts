/**
 * Eval: accuracy of a generation mode on a JSONL set of reasoning problems, with aggregated Sirius stats.
 *
 * Each line is `{"prompt": "...", "answer": "29"}`. The answer is extracted from the completion by the
 * bundled task's rule (models/sirius-tiny-arith/README.md): the integer after the last "The answer is ".
 */
import { Effect, Schema, Stream } from "effect"
import { readFileSync } from "node:fs"

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

/** The integer after the last "The answer is " (an optional minus sign included), or undefined. */
export const extractAnswer = (completion: string): string | undefined => {
  const matches = [...completion.matchAll(/The answer is (-?\d+)/g)]
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
  readonly tokensPerSecond: number
}

/** Run every problem through `solve` (one request each) and aggregate. `onProgress(done, total)` after each. */
export const evaluate = <E>(
  problems: ReadonlyArray<Problem>,
  solve: (prompt: string) => Effect.Effect<RequestOutcome, E>,
  onProgress: (done: number, total: number, correct: number) => void = () => {}
): Effect.Effect<EvalReport, E> =>
  Effect.gen(function* () {
    let correct = 0
    let generated = 0
    let decodeMs = 0
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
      if (extractAnswer(out.text) === p.answer) correct++
      generated += s.generatedTokens
      decodeMs += s.decodeMs
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
      tokensPerSecond: decodeMs > 0 ? (generated * 1000) / decodeMs : 0
    }
  })

/** Collect a request stream's Finished event as a RequestOutcome. */
export const outcomeOf = <E>(stream: Stream.Stream<{ readonly _tag: string }, E>): Effect.Effect<RequestOutcome, E> =>
  Stream.runLast(stream).pipe(Effect.map((last) => (last as unknown as { value: RequestOutcome }).value))
