/**
 * Flag parsing for the `sirius` CLI: node's strict parseArgs, then each value checked and converted.
 * Every problem is a UsageError with one line naming the flag; the CLI prints it and exits 2.
 */
import { parseArgs, type ParseArgsConfig } from "node:util"

export class UsageError extends Error {
  override readonly name = "UsageError"
}

export type Options = NonNullable<ParseArgsConfig["options"]>

type Values<O extends Options> = ReturnType<typeof parseArgs<{ options: O; strict: true; allowPositionals: false }>>["values"]

export const parse = <const O extends Options>(argv: ReadonlyArray<string>, options: O): Values<O> => {
  try {
    return parseArgs({ args: [...argv], options, strict: true as const, allowPositionals: false as const }).values
  } catch (e) {
    throw new UsageError((e as Error).message.split("\n")[0]!)
  }
}

const number = (flag: string, raw: string | undefined, check: (n: number) => boolean, what: string): number | undefined => {
  if (raw === undefined) return undefined
  const n = Number(raw)
  if (raw.trim() === "" || !Number.isFinite(n) || !check(n)) throw new UsageError(`--${flag} must be ${what} (got "${raw}")`)
  return n
}

export const int = (flag: string, raw: string | undefined, min: number): number | undefined =>
  number(flag, raw, (n) => Number.isInteger(n) && n >= min, `an integer ≥ ${min}`)

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
