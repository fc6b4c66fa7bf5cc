/**
 * fp-ts interop: the entry point for services written with fp-ts. A thin conversion layer over the
 * Effect core (which never imports fp-ts): TaskEither-returning generation, and correction policies built
 * from fp-ts typeclass instances.
 *
 * - `generate(client)(request)`: TaskEither<SiriusError, Completion>; the failure channel is Left, a
 *   tagged union (`_tag`: "GenerationError" | "PolicyError" | "AbortedError" | ...).
 * - `acceptAll` / `acceptAny`: Monoids that combine acceptance predicates (all must / any may accept).
 * - `policyFromPredicate(base, predicate)`: a CorrectionPolicy whose acceptance is the predicate.
 * - `statsSemigroup`: merges per-request Sirius counts (sums) for service-level metrics.
 */
import type * as M from "fp-ts/lib/Monoid.js"
import * as Pr from "fp-ts/lib/Predicate.js"
import type * as S from "fp-ts/lib/Semigroup.js"
import * as TE from "fp-ts/lib/TaskEither.js"
import { type Client, type ClientError, type Completion, InternalError, type ModeOf, type Request } from "../src/Client.ts"
import type { CorrectionPolicy, VerifyContext } from "../src/Policy.ts"

/** Any failure of a request: the Client's tagged error union (handle it with a switch on `_tag`). */
export type SiriusError = ClientError

const toError = (e: unknown): SiriusError =>
  typeof (e as { _tag?: unknown })?._tag === "string"
    ? (e as SiriusError)
    : new InternalError({ message: `internal error: ${e instanceof Error ? e.message : String(e)}`, cause: e })

/** `client.generate` as a TaskEither: Right with the completion (stats typed by the request's mode), Left with the tagged error. */
export const generate =
  (client: Client) =>
  <R extends Request>(request: R, signal?: AbortSignal): TE.TaskEither<SiriusError, Completion<ModeOf<R>>> =>
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
