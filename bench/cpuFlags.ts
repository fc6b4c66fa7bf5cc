/**
 * The CPU features that decide how fast the kernels can be, named in every benchmark report: the wasm
 * engine lowers 128-bit SIMD onto them (FMA3 for `f32x4.relaxed_madd`, AVX-VNNI or AVX512-VNNI for a
 * one-instruction `i32x4.relaxed_dot_i8x16_i7x16_add_s`), and llama.cpp picks its kernels by them (AVX2,
 * AVX-512, its BF16 path). Linux reads them from /proc/cpuinfo; elsewhere the list is unknown (undefined).
 */
import { readFileSync } from "node:fs"

/** The flags reported, in this order, when the CPU has them (x86 names as /proc/cpuinfo spells them; arm64's after). */
export const REPORTED_FLAGS: ReadonlyArray<string> = [
  "sse4_1", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_int8",
  "asimd", "asimddp", "i8mm", "sve"
]

/** The reported flags present in a /proc/cpuinfo text (its first "flags" or "Features" line). */
export const simdFlags = (cpuinfo: string): ReadonlyArray<string> => {
  const line = cpuinfo.split("\n").find((l) => /^(flags|Features)\s*:/.test(l))
  if (line === undefined) return []
  const have = new Set(line.slice(line.indexOf(":") + 1).trim().split(/\s+/))
  return REPORTED_FLAGS.filter((f) => have.has(f))
}

/** This machine's reported flags, or undefined where /proc/cpuinfo cannot be read. */
export const readSimdFlags = (): ReadonlyArray<string> | undefined => {
  try {
    return simdFlags(readFileSync("/proc/cpuinfo", "utf8"))
  } catch {
    return undefined
  }
}

/** "avx avx2 fma f16c; no VNNI" (x86), the flags alone elsewhere, "flags unknown" without a list. */
export const describeFlags = (flags: ReadonlyArray<string> | undefined): string => {
  if (flags === undefined) return "flags unknown"
  const x86 = flags.some((f) => f.startsWith("avx") || f.startsWith("sse"))
  const vnni = flags.some((f) => f.includes("vnni"))
  return `${flags.join(" ") || "no SIMD flags listed"}${x86 && !vnni ? "; no VNNI" : ""}`
}
