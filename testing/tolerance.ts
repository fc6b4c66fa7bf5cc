/**
 * The one comparison rule for backend-vs-reference checks (docs/testing.md, after llm.c's validate_result):
 *
 *   |actual − expected| ≤ atol + rtol·|expected| + c·2⁻²⁴·Σ|terms|
 *
 * `absTerms` (per element Σ|wᵢxᵢ| of the reduction that produced it) is given for reductions; the c·2⁻²⁴
 * term bounds f32 accumulation error, which grows with the magnitude of the summed terms, not the result.
 * Non-finite values must match exactly. The report names the first mismatches by index and always
 * carries the max abs/rel error.
 */

export interface Tolerance {
  readonly atol: number
  readonly rtol: number
  /** Multiple of 2⁻²⁴·Σ|terms| allowed (only with absTerms). */
  readonly c?: number
}

export interface Comparison {
  readonly ok: boolean
  readonly maxAbs: number
  readonly maxRel: number
  readonly mismatches: ReadonlyArray<string>
  readonly report: string
}

export const compare = (
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: Tolerance,
  absTerms?: ArrayLike<number>
): Comparison => {
  const mismatches: Array<string> = []
  let maxAbs = 0
  let maxRel = 0
  let bad = 0
  if (actual.length !== expected.length) mismatches.push(`length ${actual.length} vs ${expected.length}`)
  const n = Math.min(actual.length, expected.length)
  for (let i = 0; i < n; i++) {
    const a = actual[i]!
    const e = expected[i]!
    if (!Number.isFinite(e) || !Number.isFinite(a)) {
      if (!Object.is(a, e) && !(Number.isNaN(a) && Number.isNaN(e))) {
        bad++
        if (mismatches.length < 5) mismatches.push(`[${i}] ${a} vs ${e} (non-finite)`)
      }
      continue
    }
    const diff = Math.abs(a - e)
    maxAbs = Math.max(maxAbs, diff)
    if (e !== 0) maxRel = Math.max(maxRel, diff / Math.abs(e))
    const bound = tol.atol + tol.rtol * Math.abs(e) + (absTerms ? (tol.c ?? 0) * 2 ** -24 * absTerms[i]! : 0)
    if (!(diff <= bound)) {
      bad++
      if (mismatches.length < 5) mismatches.push(`[${i}] ${a} vs ${e} (|Δ| ${diff.toExponential(2)} > ${bound.toExponential(2)})`)
    }
  }
  const ok = bad === 0 && actual.length === expected.length
  const report = `${ok ? "ok" : `${bad} mismatches`}: max |Δ| ${maxAbs.toExponential(2)}, max rel ${maxRel.toExponential(2)}${mismatches.length ? "; " + mismatches.join("; ") : ""}`
  return { ok, maxAbs, maxRel, mismatches, report }
}

/** Throw with the report when the comparison fails (for use inside fast-check properties). */
export const assertClose = (
  label: string,
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: Tolerance,
  absTerms?: ArrayLike<number>
): Comparison => {
  const c = compare(actual, expected, tol, absTerms)
  if (!c.ok) throw new Error(`${label}: ${c.report}`)
  return c
}

/** a and b hold the very same float32 bit patterns (results that must not depend on threads or T). */
export const bitsEqual = (label: string, a: Float32Array, b: Float32Array): void => {
  if (a.length !== b.length) throw new Error(`${label}: lengths differ: ${a.length} vs ${b.length}`)
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length)
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length)
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) throw new Error(`${label}: bits differ at [${i}]: ${a[i]} vs ${b[i]}`)
}
