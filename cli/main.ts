/**
 * The `sirius` command line. Subcommands: generate, eval, calibrate, bench, quantize, serve. `sirius <command>
 * --help` prints the command's flags and defaults; `sirius --version` the package version. Usage errors
 * print one line and exit 2; a failure while running (bad checkpoint, kernel error) prints one line naming
 * what is wrong and exits 1.
 */
import { Cause, Effect, Exit } from "effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { type Flags, helpText, UsageError } from "./args.ts"
import * as Bench from "./bench.ts"
import * as Calibrate from "./calibrate.ts"
import * as Eval from "./eval.ts"
import * as Generate from "./generate.ts"
import * as Quantize from "./quantize.ts"
import { packageRoot } from "./root.ts"
import * as Serve from "./serve.ts"

export interface Io {
  readonly out: (s: string) => void
  readonly err: (s: string) => void
  /** stdout is a terminal (colours for corrected tokens). */
  readonly isTTY?: boolean
  /** stderr is a terminal (progress bars). */
  readonly errIsTTY?: boolean
}

interface Command {
  readonly summary: string
  readonly usage: string
  readonly flags: Flags
  readonly run: (argv: ReadonlyArray<string>, io: Io) => Effect.Effect<void, unknown>
}

const commands: Record<string, Command> = { generate: Generate, eval: Eval, calibrate: Calibrate, bench: Bench, quantize: Quantize, serve: Serve }

const processIo: Io = {
  out: (s) => void process.stdout.write(s),
  err: (s) => void process.stderr.write(s),
  isTTY: process.stdout.isTTY,
  errIsTTY: process.stderr.isTTY
}

export const version = (): string => (JSON.parse(readFileSync(join(packageRoot(), "package.json"), "utf8")) as { version: string }).version

const overview = () =>
  `sirius ${version()}: Llama-family models with contextual sparsity and Sirius correction\n\ncommands:\n${Object.entries(commands)
    .map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`)
    .join("\n")}\n\nsirius <command> --help prints a command's flags; sirius --version the version.\n`

const describe = (error: unknown): string => {
  if (error instanceof UsageError) return error.message
  const e = error as { _tag?: string; message?: string }
  return e._tag !== undefined ? `${e._tag}: ${e.message}` : String(e.message ?? error)
}

export const main = async (argv: ReadonlyArray<string>, io: Io = processIo): Promise<number> => {
  const [name, ...rest] = argv
  if (name === "--version" || name === "-v") {
    io.out(`${version()}\n`)
    return 0
  }
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    io.out(overview())
    return 0
  }
  const command = commands[name]
  if (command === undefined) {
    io.err(`sirius: unknown command "${name}" (commands: ${Object.keys(commands).join(", ")}; sirius --help)\n`)
    return 2
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    io.out(helpText(command.usage, command.summary, command.flags))
    return 0
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
