/**
 * fp-ts interop: the entry point for services written with fp-ts. A thin conversion layer over the
 * Effect core (which never imports fp-ts): TaskEither-returning generation, and correction policies built
 * from fp-ts typeclass instances.
 *
 * - `generate(client)(request)`: TaskEither<SiriusError, Completion>; the failure channel is Left.
 * - `acceptAll` / `acceptAny`: Monoids that combine acceptance predicates (all must / any may accept).
 * - `policyFromPredicate(base, predicate)`: a CorrectionPolicy whose acceptance is the predicate.
 * - `statsSemigroup`: merges per-request Sirius counts (sums) for service-level metrics.
 */
import type * as M from "fp-ts/Monoid"
import * as Pr from "fp-ts/Predicate"
import type * as S from "fp-ts/Semigroup"
import * as TE from "fp-ts/TaskEither"
import type { Client, Completion, Request } from "../src/Client.ts"
import type { CorrectionPolicy, VerifyContext } from "../src/Policy.ts"

/** Any failure of a request, as data: the tagged error of the core, or an unexpected defect. */
export interface SiriusError {
  readonly _tag: string
  readonly message: string
}

const toError = (e: unknown): SiriusError => {
  const tagged = e as { _tag?: unknown; message?: unknown }
  return typeof tagged._tag === "string"
    ? { _tag: tagged._tag, message: String(tagged.message ?? "") }
    : { _tag: "Defect", message: e instanceof Error ? e.message : String(e) }
}

export const generate =
  (client: Client) =>
  (request: Request, signal?: AbortSignal): TE.TaskEither<SiriusError, Completion> =>
    TE.tryCatch(() => client.generate(request, signal === undefined ? {} : { signal }), toError)

export type AcceptPredicate = Pr.Predicate<VerifyContext>

/** Accept when every predicate accepts (the empty combination accepts). */
export const acceptAll: M.Monoid<AcceptPredicate> = Pr.getMonoidAll<VerifyContext>()
/** Accept when some predicate accepts (the empty combination rejects). */
export const acceptAny: M.Monoid<AcceptPredicate> = Pr.getMonoidAny<VerifyContext>()

/** `base` with its acceptance replaced by `predicate`: drafting, verification timing and correction unchanged. */
export const policyFromPredicate = (base: CorrectionPolicy, predicate: AcceptPredicate, name = `${base.name}+custom`): CorrectionPolicy => ({
  ...base,
  name,
  accept: predicate
})

/** The acceptance predicate of an existing policy. */
export const predicateOf = (policy: CorrectionPolicy): AcceptPredicate => (ctx) => policy.accept(ctx)

export interface Counts {
  readonly requests: number
  readonly generatedTokens: number
  readonly fullForwards: number
  readonly sparseForwards: number
  readonly rollbacks: number
}

export const statsSemigroup: S.Semigroup<Counts> = {
  concat: (a, b) => ({
    requests: a.requests + b.requests,
    generatedTokens: a.generatedTokens + b.generatedTokens,
    fullForwards: a.fullForwards + b.fullForwards,
    sparseForwards: a.sparseForwards + b.sparseForwards,
    rollbacks: a.rollbacks + b.rollbacks
  })
}

/** The counts of one completion. */
export const countsOf = (c: Completion): Counts => ({
  requests: 1,
  generatedTokens: c.stats.generatedTokens,
  fullForwards: c.stats.fullForwards,
  sparseForwards: c.stats.sparseForwards,
  rollbacks: "rollbacks" in c.stats ? c.stats.rollbacks : 0
})
