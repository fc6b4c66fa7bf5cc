/**
 * Flag parsing for the `sirius` CLI: a table of flags (type, default, help, which modes they apply to),
 * node's strict parseArgs, then each value checked and converted. Every problem is a UsageError with one
 * line naming the flag; the CLI prints it and exits 2. The same table prints each command's `--help`.
 */
import { parseArgs } from "node:util"

export class UsageError extends Error {
  override readonly name = "UsageError"
}

export interface Flag {
  readonly type: "string" | "boolean"
  readonly multiple?: boolean
  /** The value's shape in help, e.g. "N" or "fine|coarse". */
  readonly value?: string
  readonly help: string
  /** The default, as help shows it. */
  readonly default?: string
}

export type Flags = Readonly<Record<string, Flag>>

type Values<F extends Flags> = {
  readonly [K in keyof F]?: F[K]["type"] extends "boolean" ? boolean : F[K]["multiple"] extends true ? Array<string> : string
}

/**
 * Parse argv against the flags. A string flag followed by a negative number (`--max-tokens -1`) takes it as
 * its value, so the value's own check reports what is wrong with it.
 */
export const parse = <const F extends Flags>(argv: ReadonlyArray<string>, flags: F): Values<F> => {
  const args: Array<string> = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    const name = a.startsWith("--") && !a.includes("=") ? a.slice(2) : undefined
    const next = argv[i + 1]
    if (name !== undefined && flags[name]?.type === "string" && next !== undefined && /^-[\d.]/.test(next)) {
      args.push(`${a}=${next}`)
      i++
    } else args.push(a)
  }
  const options = Object.fromEntries(Object.entries(flags).map(([k, f]) => [k, { type: f.type, ...(f.multiple === true ? { multiple: true } : {}) }]))
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values as Values<F>
  } catch (e) {
    throw new UsageError((e as Error).message.split("\n")[0]!.replace(/^Unknown option/, "unknown flag"))
  }
}

/** `--help` text for a command: its usage line, then one line per flag with its default. */
export const helpText = (usage: string, summary: string, flags: Flags): string => {
  const rows = Object.entries(flags).map(([name, f]) => {
    const left = `  --${name}${f.type === "string" ? ` ${f.value ?? "VALUE"}` : ""}${f.multiple === true ? " (repeatable)" : ""}`
    return `${left.padEnd(34)} ${f.help}${f.default !== undefined ? ` [default: ${f.default}]` : ""}`
  })
  return `${summary}\n\nusage: ${usage}\n\nflags:\n${rows.join("\n")}\n  --help                             print this help\n`
}

const number = (flag: string, raw: string | undefined, check: (n: number) => boolean, what: string): number | undefined => {
  if (raw === undefined) return undefined
  const n = Number(raw)
  if (raw.trim() === "" || !Number.isFinite(n) || !check(n)) throw new UsageError(`--${flag} must be ${what} (got "${raw}")`)
  return n
}

export const int = (flag: string, raw: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined =>
  number(flag, raw, (n) => Number.isInteger(n) && n >= min && n <= max, max === Number.MAX_SAFE_INTEGER ? `an integer ≥ ${min}` : `an integer in [${min}, ${max}]`)

export const float = (flag: string, raw: string | undefined, min: number, max: number, what?: string): number | undefined =>
  number(flag, raw, (n) => n >= min && n <= max, what ?? `a number in [${min}, ${max}]`)

export const idList = (flag: string, raw: string): Array<number> => {
  const parts = raw.split(",").map((s) => s.trim())
  if (parts.some((p) => !/^\d+$/.test(p))) throw new UsageError(`--${flag} must be comma-separated token ids, e.g. 1,2,3 (got "${raw}")`)
  return parts.map(Number)
}

export const oneOf = <const A extends string>(flag: string, raw: string | undefined, choices: ReadonlyArray<A>): A | undefined => {
  if (raw === undefined) return undefined
  if (!choices.includes(raw as A)) throw new UsageError(`--${flag} must be one of ${choices.join(", ")} (got "${raw}")`)
  return raw as A
}
