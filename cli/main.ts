/**
 * The `sirius` command line. Subcommands: generate. Usage errors print one line and exit 2; a failure
 * while running (bad checkpoint, kernel error) prints one line naming what is wrong and exits 1.
 */
import { Cause, Effect, Exit } from "effect"
import { UsageError } from "./args.ts"
import * as Bench from "./bench.ts"
import * as Calibrate from "./calibrate.ts"
import * as Eval from "./eval.ts"
import * as Generate from "./generate.ts"
import * as Quantize from "./quantize.ts"

interface Command {
  readonly usage: string
  readonly run: (argv: ReadonlyArray<string>, io: Io) => Effect.Effect<void, unknown>
}

const commands: Record<string, Command> = { generate: Generate, eval: Eval, calibrate: Calibrate, bench: Bench, quantize: Quantize }

export interface Io {
  readonly out: (s: string) => void
  readonly err: (s: string) => void
  readonly isTTY?: boolean
}

const processIo: Io = { out: (s) => void process.stdout.write(s), err: (s) => void process.stderr.write(s), isTTY: process.stdout.isTTY }

const describe = (error: unknown): string => {
  if (error instanceof UsageError) return error.message
  const e = error as { _tag?: string; message?: string }
  return e._tag !== undefined ? `${e._tag}: ${e.message}` : String(e.message ?? error)
}

export const main = async (argv: ReadonlyArray<string>, io: Io = processIo): Promise<number> => {
  const [name, ...rest] = argv
  const command = name === undefined ? undefined : commands[name]
  if (command === undefined) {
    io.err(name === undefined || name === "--help" ? "" : `sirius: unknown command "${name}"\n`)
    io.err(`usage:\n  ${Object.values(commands).map((c) => c.usage).join("\n  ")}\n`)
    return name === "--help" ? 0 : 2
  }
  try {
    const exit = await Effect.runPromiseExit(command.run(rest, io))
    if (Exit.isSuccess(exit)) return 0
    const failure = exit.cause.reasons.find(Cause.isFailReason)
    const error = failure !== undefined ? failure.error : Cause.squash(exit.cause)
    io.err(`sirius: error: ${describe(error)}\n`)
    return error instanceof UsageError ? 2 : 1
  } catch (e) {
    io.err(`sirius: error: ${describe(e)}\n`)
    return e instanceof UsageError ? 2 : 1
  }
}
