/**
 * Sirius (arXiv 2409.03856; sirius-algorithm.md §3–§4): the sparse model drafts, and every
 * `correctionPeriod` k tokens the full model verifies the window in one parallel forward that rewrites the
 * window's KV, keeps the longest accepted prefix, rolls back the rest (tokens and KV) and emits its own
 * token at the first rejected position (or a bonus token when every draft passed).
 *
 * Invariants (§3.2): the token that opens a window (at `lastCheck`) was produced by the full model; every KV
 * slot below `lastCheck` was written by the full model; only verified tokens are ever committed, and only
 * committed tokens stop generation (a drafted EOS, stop string or a full budget triggers an immediate,
 * shorter verification). The request's stream is one `Stream.unfold`: each pull runs at most one forward
 * pass, so interruption stops work at the next step and drops the request's state.
 */
import { Effect, Stream } from "effect"
import * as DraftTree from "./DraftTree.ts"
import * as Forward from "./Forward.ts"
import * as Generation from "./Generation.ts"
import type { KernelError } from "./Kernels.ts"
import * as KvCache from "./KvCache.ts"
import type { Model } from "./Model.ts"
import * as Policy from "./Policy.ts"
import * as Sampler from "./Sampler.ts"
import * as Sparsity from "./Sparsity.ts"
import * as TextStream from "./TextStream.ts"

export interface SiriusOptions extends Generation.GenerateOptions {
  readonly sparsity: Sparsity.SparsityOptions
  /** k: the window the full model verifies (k − 1 drafts + the token that opens it). Default 16. */
  readonly correctionPeriod?: number
  /** Default `Policy.threshold(0.1)`. */
  readonly policy?: Policy.CorrectionPolicy
  /**
   * w: beam width of the sparse drafter (§3.6). With w > 1 the sparse model grows a beam tree, every branch
   * is verified in one full pass with tree attention, and the longest accepted branch wins. Default 1.
   */
  readonly treeWidth?: number
  /** "tree" runs the tree machinery even at width 1 (it then equals the chain); default: tree iff width > 1. */
  readonly drafting?: "chain" | "tree"
  /** Testing hook: sees the KV cache and the committed length after every verification. */
  readonly observeCache?: (cache: KvCache.KvCache, committedLength: number) => void
}

/** Where a committed token came from. */
export type TokenSource = "full" | "draft" | "correction" | "bonus"

export interface SiriusStats extends Generation.GenerationStats {
  readonly correctionPeriod: number
  /** Average advance length: mean of (accepted + 1) over verifications, the last one excluded (as the paper). */
  readonly aal: number
  /** ((k − 1)·parameterDensity + 1) / AAL (§4). */
  readonly effectiveDensity: number
  /** Average parameters used per token: effectiveDensity × total parameters. */
  readonly apu: number
  readonly verifications: number
  /** Verifications that rejected a draft, and the mean number of drafts they rolled back. */
  readonly rollbacks: number
  readonly meanRollbackLength: number
  /** Fraction of committed tokens emitted by the full model at a rejected position. */
  readonly correctedFraction: number
  readonly draftMs: number
  readonly verifyMs: number
}

export type SiriusEvent =
  | { readonly _tag: "Prefilled"; readonly promptTokens: number; readonly ms: number }
  | {
      readonly _tag: "Drafted"
      readonly token: number
      readonly position: number
      /** Tree drafting: the node's index in the window's tree and its parent's (0 = the window's root). */
      readonly node?: number
      readonly parent?: number
    }
  | {
      readonly _tag: "Verified"
      /** Absolute position of the window's first token. */
      readonly start: number
      /** Every token drafted in the window (chain order, or tree node order). */
      readonly drafts: ReadonlyArray<number>
      readonly accepted: number
      readonly rollback: number
      /** The full model's token after the accepted prefix (a correction, or the bonus if rollback is 0). */
      readonly token: number
      readonly ms: number
    }
  | {
      readonly _tag: "Committed"
      readonly token: number
      readonly position: number
      readonly text: string
      readonly source: TokenSource
    }
  | {
      readonly _tag: "Finished"
      readonly reason: Generation.StopReason
      readonly tokens: ReadonlyArray<number>
      readonly text: string
      readonly stats: SiriusStats
    }

interface State {
  readonly cache: KvCache.KvCache
  readonly mlp: Sparsity.RequestMlp
  /** Prompt, committed tokens, then the open window's drafts. */
  readonly ids: Array<number>
  /** Sparse logits of each draft in the window, in order. */
  readonly draftLogits: Array<Float32Array>
  /** Position of the token that opens the window (committed, full-model made). */
  lastCheck: number
  /** The window's draft tree (tree drafting only). */
  tree: DraftTree.Tree | undefined
  readonly text: TextStream.TextStream
  readonly rng: Sampler.Rng
  readonly started: number
  prefillMs: number
  firstTokenAt: number
  advances: Array<number> // accepted + 1 per verification
  rollbackLengths: Array<number>
  corrections: number
  fullForwards: number
  sparseForwards: number
  draftMs: number
  verifyMs: number
  finished: Generation.StopReason | undefined
  done: boolean
}

const validate = (model: Model, options: SiriusOptions) => {
  const fail = (field: string, message: string) => Effect.fail(new Generation.GenerationError({ field, message }))
  const k = options.correctionPeriod ?? 16
  const w = options.treeWidth ?? 1
  if (!Number.isInteger(k) || k < 1 || k > 256) return fail("correctionPeriod", `must be an integer in [1, 256] (got ${k})`)
  if (!Number.isInteger(w) || w < 1 || w > 64) return fail("treeWidth", `must be an integer in [1, 64] (got ${w})`)
  if (w > 1 && options.policy === Policy.speculative && (options.sampling?.temperature ?? 0) > 0)
    return fail("treeWidth", "speculative sampling verifies a chain: use tree width 1 (or temperature 0)")
  return Generation.validate(model, options)
}

export const generate = (model: Model, options: SiriusOptions): Stream.Stream<SiriusEvent, Generation.GenerationError | KernelError> => {
  const k = options.correctionPeriod ?? 16
  const width = options.treeWidth ?? 1
  const useTree = (options.drafting ?? (width > 1 ? "tree" : "chain")) === "tree"
  const policy = options.policy ?? Policy.threshold(0.1)
  const sampling = options.sampling ?? Sampler.greedy
  const eos = new Set(options.eosTokenIds ?? [])
  const stops = options.stopStrings ?? []
  const maxStop = Math.max(0, ...stops.map((s) => s.length))
  const P = options.prompt.length
  const config = model.config
  const F = config.intermediateSize
  const dSparse = Sparsity.parameterDensity(config, options.sparsity.granularity, Sparsity.keptCount(F, options.sparsity.density) / F)

  /** Commit tokens in order until a stop condition; returns the Committed events. */
  const commit = (s: State, tokens: ReadonlyArray<{ token: number; source: TokenSource }>): Array<SiriusEvent> => {
    const events: Array<SiriusEvent> = []
    for (const { token, source } of tokens) {
      if (s.finished !== undefined) break
      if (s.text.ids.length === 0) s.firstTokenAt = performance.now()
      let text = TextStream.push(s.text, [token], options.tokenizer, stops)
      if (source === "correction") s.corrections++
      if (eos.has(token)) s.finished = "eos"
      else if (s.text.stopAt !== undefined) s.finished = "stop"
      else if (s.text.ids.length >= options.maxNewTokens) s.finished = "length"
      if (s.finished !== undefined) text += TextStream.flush(s.text)
      events.push({ _tag: "Committed", token, position: P + s.text.ids.length - 1, text, source })
    }
    return events
  }

  /** A drafted token that would end generation (or fill the budget) makes the window verify now. */
  const mustVerify = (s: State, draft: number): boolean => {
    const n = s.ids.length - s.lastCheck
    if (n >= k || eos.has(draft) || s.text.ids.length + (n - 1) >= options.maxNewTokens) return true
    if (stops.length === 0 || options.tokenizer === undefined) return false
    const pending = options.tokenizer.decode(s.ids.slice(P))
    return stops.some((stop) => pending.indexOf(stop, Math.max(0, s.text.text.length - maxStop)) >= 0)
  }

  const draftStep = Effect.fnUntraced(function* (s: State) {
    const t0 = performance.now()
    const last = s.ids.length - 1
    const logits = yield* Forward.forward(model, s.cache, Int32Array.of(s.ids[last]!), last, "last", yield* s.mlp.sparse)
    s.sparseForwards++
    const token = policy.draft({ sparseLogits: logits, context: s.ids, sampling, rng: s.rng })
    s.ids.push(token)
    s.draftLogits.push(logits)
    s.draftMs += performance.now() - t0
    return { _tag: "Drafted", token, position: s.ids.length - 1 } as SiriusEvent
  })

  const verifyStep = Effect.fnUntraced(function* (s: State) {
    const t0 = performance.now()
    const start = s.lastCheck
    const window = s.ids.slice(start) // w_0 (full-made) then the drafts
    const n = window.length
    const V = config.vocabSize
    const logits = yield* Forward.forward(model, s.cache, Int32Array.from(window), start, "all") // (n, V), rewrites KV
    s.fullForwards++
    let accepted = 0
    while (accepted < n - 1) {
      const i = accepted + 1 // draft w_i is scored by the logits at w_{i−1}
      const ok = policy.accept({
        draft: window[i]!,
        fullLogits: logits.subarray((i - 1) * V, i * V),
        sparseLogits: s.draftLogits[i - 1]!,
        context: s.ids.slice(0, start + i),
        sampling,
        rng: s.rng
      })
      if (!ok) break
      accepted++
    }
    const rollback = n - 1 - accepted
    const drafts = window.slice(1)
    s.ids.length = start + accepted + 1
    KvCache.truncate(s.cache, start + accepted + 1)
    const token = policy.correct({
      fullLogits: logits.subarray(accepted * V, (accepted + 1) * V),
      rejected: rollback > 0 ? { draft: window[accepted + 1]!, sparseLogits: s.draftLogits[accepted]! } : undefined,
      context: s.ids,
      sampling,
      rng: s.rng
    })
    s.ids.push(token)
    s.draftLogits.length = 0
    s.lastCheck = start + accepted + 1
    s.advances.push(accepted + 1)
    if (rollback > 0) s.rollbackLengths.push(rollback)
    s.verifyMs += performance.now() - t0
    options.observeCache?.(s.cache, s.lastCheck)
    const verified: SiriusEvent = { _tag: "Verified", start, drafts, accepted, rollback, token, ms: performance.now() - t0 }
    const committed = commit(s, [
      ...drafts.slice(0, accepted).map((token) => ({ token, source: "draft" as const })),
      { token, source: rollback > 0 ? ("correction" as const) : ("bonus" as const) }
    ])
    return [verified, ...committed]
  })


  /** Tree drafting, one round: the sparse model runs every leaf at once and the best `width` children become leaves. */
  const treeDraftStep = Effect.fnUntraced(function* (s: State) {
    const t0 = performance.now()
    const tree = s.tree!
    const leaves = tree.leaves
    const slot = s.lastCheck + leaves[0]!
    const logits = yield* Forward.forward(
      model,
      s.cache,
      Int32Array.from(leaves, (i) => tree.nodes[i]!.token),
      slot,
      "all",
      yield* s.mlp.sparse,
      DraftTree.layout(tree, leaves, s.lastCheck)
    )
    s.sparseForwards++
    const added = DraftTree.expand(tree, logits, config.vocabSize, width, eos)
    s.draftMs += performance.now() - t0
    return added.map((i): SiriusEvent => {
      const n = tree.nodes[i]!
      return { _tag: "Drafted", token: n.token, position: s.lastCheck + n.depth, node: i, parent: n.parent }
    })
  })

  /** Tree verification: every node through the full model in one pass; the longest accepted branch is compacted into place. */
  const treeVerifyStep = Effect.fnUntraced(function* (s: State) {
    const t0 = performance.now()
    const tree = s.tree!
    const start = s.lastCheck
    const all = tree.nodes.map((_, i) => i)
    const V = config.vocabSize
    const logits = yield* Forward.forward(model, s.cache, Int32Array.from(tree.nodes, (n) => n.token), start, "all", Forward.dense, DraftTree.layout(tree, all, start))
    s.fullForwards++
    const committed = s.ids.slice(0, start + 1)
    const pathTokens = (i: number) => DraftTree.path(tree, i).slice(1).map((n) => tree.nodes[n]!.token)
    const { node, rejectedChild } = DraftTree.winner(tree, (i) => {
      const n = tree.nodes[i]!
      return policy.accept({
        draft: n.token,
        fullLogits: logits.subarray(n.parent * V, (n.parent + 1) * V),
        sparseLogits: n.sparseLogits!,
        context: [...committed, ...pathTokens(n.parent)],
        sampling,
        rng: s.rng
      })
    })
    const path = DraftTree.path(tree, node)
    const accepted = path.length - 1
    const rollback = DraftTree.depth(tree) - accepted
    KvCache.compact(s.cache, path.map((i) => start + i), start)
    const acceptedTokens = pathTokens(node)
    s.ids.push(...acceptedTokens)
    const token = policy.correct({
      fullLogits: logits.subarray(node * V, (node + 1) * V),
      rejected: rejectedChild === undefined ? undefined : { draft: tree.nodes[rejectedChild]!.token, sparseLogits: tree.nodes[rejectedChild]!.sparseLogits! },
      context: s.ids,
      sampling,
      rng: s.rng
    })
    s.ids.push(token)
    s.lastCheck = start + accepted + 1
    s.tree = DraftTree.make(token)
    s.advances.push(accepted + 1)
    if (rollback > 0) s.rollbackLengths.push(rollback)
    s.verifyMs += performance.now() - t0
    options.observeCache?.(s.cache, s.lastCheck)
    const verified: SiriusEvent = { _tag: "Verified", start, drafts: tree.nodes.slice(1).map((n) => n.token), accepted, rollback, token, ms: performance.now() - t0 }
    return [
      verified,
      ...commit(s, [
        ...acceptedTokens.map((token) => ({ token, source: "draft" as const })),
        { token, source: rollbackSource(rejectedChild !== undefined) }
      ])
    ]
  })

  const rollbackSource = (rejected: boolean): TokenSource => (rejected ? "correction" : "bonus")

  /** Tree windows grow to k − 1 levels, or fewer when the token budget ends sooner. */
  const treeStep = (s: State) => {
    const tree = s.tree!
    const depth = DraftTree.depth(tree)
    const budget = options.maxNewTokens - s.text.ids.length
    const newest = tree.nodes[tree.leaves[0]!]!.sparseLogits
    const full = depth >= Math.min(k - 1, budget) || tree.closed || (depth > 0 && newest !== undefined && policy.verifyEarly({ windowLength: depth + 1, correctionPeriod: k, sparseLogits: newest }))
    return full ? treeVerifyStep(s) : treeDraftStep(s)
  }

  const finish = (s: State): SiriusEvent => {
    const generated = s.text.ids.length
    // AAL excludes the last period, which stopping truncates (as the paper); with one period, use it.
    const periods = s.advances.length > 1 ? s.advances.slice(0, -1) : s.advances
    const aal = periods.length > 0 ? periods.reduce((a, b) => a + b, 0) / periods.length : 0
    const effectiveDensity = aal > 0 ? ((k - 1) * dSparse + 1) / aal : 1
    return {
      _tag: "Finished",
      reason: s.finished!,
      tokens: [...s.text.ids],
      text: TextStream.finalText(s.text),
      stats: {
        ...Generation.timingStats({ promptTokens: P, generatedTokens: generated, started: s.started, prefillMs: s.prefillMs, firstTokenAt: s.firstTokenAt, backend: model.kernels.name }),
        parameterDensity: dSparse,
        correctionPeriod: k,
        aal,
        effectiveDensity,
        apu: effectiveDensity * Sparsity.parameterCount(config).total,
        fullForwards: s.fullForwards,
        sparseForwards: s.sparseForwards,
        verifications: s.advances.length,
        rollbacks: s.rollbackLengths.length,
        meanRollbackLength: s.rollbackLengths.length > 0 ? s.rollbackLengths.reduce((a, b) => a + b, 0) / s.rollbackLengths.length : 0,
        correctedFraction: generated > 0 ? s.corrections / generated : 0,
        draftMs: s.draftMs,
        verifyMs: s.verifyMs
      }
    }
  }

  const step = Effect.fnUntraced(function* (s: State) {
    if (s.done) return undefined
    if (s.finished !== undefined) {
      s.done = true
      return [[finish(s)], s] as const
    }
    if (s.fullForwards === 0) {
      // dense prefill; coarse granularity picks its neurons here, fixed for the whole request
      const logits = yield* Forward.forward(model, s.cache, Int32Array.from(options.prompt), 0, "last", s.mlp.prefill)
      s.fullForwards++
      s.prefillMs = performance.now() - s.started
      const token = Sampler.sample(logits, s.ids, sampling, s.rng)
      s.ids.push(token)
      s.lastCheck = P
      if (useTree) s.tree = DraftTree.make(token)
      return [[{ _tag: "Prefilled", promptTokens: P, ms: s.prefillMs } as SiriusEvent, ...commit(s, [{ token, source: "full" }])], s] as const
    }
    yield* Effect.yieldNow // a cancellation point between forward passes
    if (useTree) return [yield* treeStep(s), s] as const
    const n = s.ids.length - s.lastCheck
    const newest = s.draftLogits[s.draftLogits.length - 1]
    const verifyNow =
      n > 1 && (mustVerify(s, s.ids[s.ids.length - 1]!) || policy.verifyEarly({ windowLength: n, correctionPeriod: k, sparseLogits: newest! }))
    if (verifyNow || k === 1) return [yield* verifyStep(s), s] as const
    return [[yield* draftStep(s)], s] as const
  })

  // runs inside Stream.unwrap, whose scope is the stream's: coarse gathers are freed when it ends
  const start = Effect.map(
    Effect.scope,
    (scope): State => ({
      // a tree window holds up to 1 + (k − 1)·w nodes beyond the committed slots
      cache: KvCache.make(config, P + options.maxNewTokens + 1 + (useTree ? (k - 1) * width : 0)),
      mlp: Sparsity.requestMlp(model, options.sparsity, scope),
      ids: [...options.prompt],
      draftLogits: [],
      lastCheck: P,
      tree: undefined,
      text: TextStream.make(),
      rng: Sampler.rng(sampling.seed),
      started: performance.now(),
      prefillMs: 0,
      firstTokenAt: 0,
      advances: [],
      rollbackLengths: [],
      corrections: 0,
      fullForwards: 0,
      sparseForwards: 0,
      draftMs: 0,
      verifyMs: 0,
      finished: undefined,
      done: false
    })
  )

  return Stream.unwrap(
    Effect.map(Effect.andThen(validate(model, options), start), (s) =>
      Stream.flattenIterable(Stream.unfold(s, step as (s: State) => Effect.Effect<readonly [ReadonlyArray<SiriusEvent>, State] | undefined, KernelError>))
    )
  )
}
