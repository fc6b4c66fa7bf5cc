/**
 * Sirius (arXiv 2409.03856; docs/sirius.md): the sparse model drafts, and every `correctionPeriod`
 * k tokens the full model verifies the window in one parallel forward that rewrites the window's KV, keeps
 * the longest accepted prefix, rolls back the rest (tokens and KV) and emits its own token at the first
 * rejected position (or a bonus token when every draft passed).
 *
 * A window is four steps, each a function below: draft (sparse forwards), verify (one full forward over the
 * window), accept (the policy's longest accepted prefix), commit (Request.commit, the one stop rule). Chain
 * and tree drafting share the window bookkeeping (`Window`) and the commit.
 *
 * Invariants (the official code's, kept): the token that opens a window (at `lastCheck`) was produced by the
 * full model; every KV slot below `lastCheck` was written by the full model; only verified tokens are ever
 * committed, and only committed tokens stop generation (a drafted EOS, stop string or a full budget makes
 * the window verify at once, shorter).
 */
import { Effect, type Stream } from "effect"
import * as DraftTree from "./DraftTree.ts"
import * as Forward from "./Forward.ts"
import type { KernelError } from "./Kernels.ts"
import * as KvCache from "./KvCache.ts"
import type { Model } from "./Model.ts"
import * as Policy from "./Policy.ts"
import * as Request from "./Request.ts"
import * as Sparsity from "./Sparsity.ts"

export type { Event as SiriusEvent, SiriusStats, TokenSource } from "./Request.ts"

interface Common extends Request.CommonOptions {
  readonly sparsity: Sparsity.SparsityOptions
  /** k: the window the full model verifies (the token that opens it + k − 1 drafts). Default 16. */
  readonly correctionPeriod?: number
}

/** Chain drafting (the default): one draft per sparse forward; a custom policy may choose the drafts. */
export interface ChainOptions extends Common {
  readonly treeWidth?: 1
  /** Default `Policy.threshold(0.1)`. */
  readonly policy?: Policy.CorrectionPolicy
}

/**
 * Tree drafting (w > 1, docs/sirius.md): the sparse model grows a beam tree, every branch is
 * verified in one full pass with tree attention, and the beam with the longest accepted prefix wins. The
 * beam chooses the drafts, so the policy must not have a `draft`.
 */
export interface TreeOptions extends Common {
  readonly treeWidth: number
  readonly policy?: Policy.TreePolicy
  /** Run the tree machinery even at width 1 (it then equals the chain). */
  readonly drafting?: "tree"
}

export type SiriusOptions = ChainOptions | TreeOptions

/** A Sirius request's state: the request's, plus the open window. */
export interface State extends Request.State {
  readonly k: number
  readonly width: number
  readonly drafting: "chain" | "tree"
  readonly policy: Policy.CheckedPolicy
  readonly parameterDensity: () => number
  /** Chain: the sparse logits of each draft of the open window, in order. */
  readonly draftLogits: Array<Float32Array>
  /** Tree: the open window's draft tree. */
  tree: DraftTree.Tree | undefined
  readonly advances: Array<number> // accepted + 1, per verification
  readonly rollbackLengths: Array<number>
  corrections: number
  draftMs: number
  verifyMs: number
}

const validate = (model: Model, options: SiriusOptions) => {
  const fail = (field: string, message: string) => Effect.fail(new Request.GenerationError({ field, message: `${field}: ${message}` }))
  const k = options.correctionPeriod ?? 16
  const w = options.treeWidth ?? 1
  if (!Number.isInteger(k) || k < 1 || k > 256) return fail("correctionPeriod", `must be an integer in [1, 256] (got ${k})`)
  if (!Number.isInteger(w) || w < 1 || w > 64) return fail("treeWidth", `must be an integer in [1, 64] (got ${w})`)
  if (isTree(options) && options.policy?.draft !== undefined)
    return fail("policy", `${options.policy.name} chooses its own drafts, which tree drafting (treeWidth ${w}) cannot honour: the beam chooses them; use treeWidth 1 or a policy without draft`)
  return Effect.andThen(Request.validate(model, options), Request.validateSparsity(model, options.sparsity))
}

const isTree = (options: SiriusOptions): options is TreeOptions => (options.treeWidth ?? 1) > 1 || ("drafting" in options && options.drafting === "tree")

/**
 * A Sirius request's state, allocated in the current scope (coarse sparsity's gathered weights live as long
 * as it). Together with `Request.prefill` and `step` it lets a caller drive a request by hand (the tests
 * inspect the KV cache between windows this way); `generate` is the stream of the same steps.
 */
export const init = (model: Model, options: SiriusOptions) => {
  const tree = isTree(options)
  const k = options.correctionPeriod ?? 16
  const width = options.treeWidth ?? 1
  // KV slots beyond prompt + budget: the window's last draft (chain), or a whole tree of 1 + (k − 1)·w nodes
  const extra = 1 + (tree ? (k - 1) * width : 0)
  return Effect.map(Request.init(model, options, options.sparsity, extra), (base): State => ({
    ...base,
    k,
    width,
    drafting: tree ? "tree" : "chain",
    policy: Policy.checked(options.policy ?? Policy.threshold(0.1), model.config.vocabSize),
    parameterDensity: () => Sparsity.requestParameterDensity(model, options.sparsity, base.mlp),
    draftLogits: [],
    tree: undefined,
    advances: [],
    rollbackLengths: [],
    corrections: 0,
    draftMs: 0,
    verifyMs: 0
  }))
}

/** The next step after the prefill: a draft (or a tree round), or a verification that closes the window. */
export const step = (s: State): Effect.Effect<ReadonlyArray<Request.Event>, KernelError | Policy.PolicyError> =>
  s.drafting === "tree" ? treeStep(s) : chainStep(s)

/**
 * Generate with Sirius correction. Emits `Prefilled`, `Drafted` per draft, `Verified` per window,
 * `Committed` per verified token (its source: draft, correction or bonus), then `Finished` with SiriusStats.
 */
export const generate = (model: Model, options: SiriusOptions): Stream.Stream<Request.EventOf<"sirius">, Request.GenerationError | KernelError | Policy.PolicyError> =>
  Request.run(validate(model, options), init(model, options), { step, stats }) as Stream.Stream<
    Request.EventOf<"sirius">,
    Request.GenerationError | KernelError | Policy.PolicyError
  >

// ---------------------------------------------------------------------------------------------------
// The window, shared by chain and tree

/** Where the full model's token after the accepted prefix comes from, and what was accepted. */
interface Verdict {
  readonly start: number
  readonly drafts: ReadonlyArray<number>
  /** The accepted drafts, in order, with the full-model logits that scored each. */
  readonly accepted: ReadonlyArray<{ readonly token: number; readonly logits: Float32Array }>
  /** Drafts the window held beyond the accepted ones (its depth − accepted). */
  readonly rollback: number
  /** The full model's logits after the accepted prefix, and the draft it rejected there (none: bonus). */
  readonly nextLogits: Float32Array
  readonly rejected: { readonly draft: number; readonly sparseLogits: Float32Array } | undefined
  readonly t0: number
}

/**
 * Close a window: the full model's token after the accepted prefix (a correction where a draft was
 * rejected, else a bonus), the stats, and the commit of accepted drafts + that token. `s.ids` already ends
 * with the accepted drafts; the KV holds full-model entries for exactly them.
 */
const closeWindow = Effect.fnUntraced(function* (s: State, v: Verdict) {
  const { sampling, rng } = s
  const token = yield* s.policy.correct({ fullLogits: v.nextLogits, rejected: v.rejected, context: s.ids, sampling, rng })
  s.ids.push(token)
  s.lastCheck = v.start + v.accepted.length + 1
  s.advances.push(v.accepted.length + 1)
  if (v.rollback > 0) s.rollbackLengths.push(v.rollback)
  const source: Request.TokenSource = v.rejected !== undefined || v.rollback > 0 ? "correction" : "bonus"
  const verified: Request.Event = {
    _tag: "Verified",
    start: v.start,
    drafts: v.drafts,
    accepted: v.accepted.length,
    rollback: v.rollback,
    token,
    ms: performance.now() - v.t0
  }
  const committed = Request.commit(s, [...v.accepted.map((a) => ({ token: a.token, source: "draft" as const, logits: a.logits })), { token, source, logits: v.nextLogits }])
  if (committed.some((e) => e._tag === "Committed" && e.source === "correction")) s.corrections++
  s.verifyMs += performance.now() - v.t0
  return [verified, ...committed]
})

// ---------------------------------------------------------------------------------------------------
// Chain drafting

/** The chain's next step: draft, or verify when the window is full or must close now. */
const chainStep = (s: State): Effect.Effect<ReadonlyArray<Request.Event>, KernelError | Policy.PolicyError> =>
  Effect.gen(function* () {
    const n = s.ids.length - s.lastCheck // tokens in the window: the full model's, then the drafts
    if (s.k === 1) return yield* verifyChain(s)
    if (n === 1) return [yield* draft(s)]
    if (mustVerify(s)) return yield* verifyChain(s)
    const early = yield* s.policy.verifyEarly({ windowLength: n, correctionPeriod: s.k, sparseLogits: s.draftLogits[s.draftLogits.length - 1]! })
    return early ? yield* verifyChain(s) : [yield* draft(s)]
  })

/** A full window, a drafted EOS, a full budget or a drafted stop string closes the window now. */
const mustVerify = (s: State): boolean => {
  const n = s.ids.length - s.lastCheck
  if (n >= s.k || s.eos.has(s.ids[s.ids.length - 1]!) || Request.committedCount(s) + (n - 1) >= s.options.maxNewTokens) return true
  const tokenizer = s.options.tokenizer
  if (s.stops.length === 0 || tokenizer === undefined) return false
  // the drafts' text after a few committed tokens of context: a stop string may start before the window
  const from = Math.max(s.options.prompt.length, s.lastCheck - 8)
  const pending = tokenizer.decode(s.ids.slice(from))
  return s.stops.some((stop) => pending.includes(stop))
}

/** One sparse forward for the newest token; the policy picks the draft. */
const draft = Effect.fnUntraced(function* (s: State) {
  const t0 = performance.now()
  const last = s.ids.length - 1
  const logits = yield* Forward.forward(s.model, s.cache, Int32Array.of(s.ids[last]!), last, "last", yield* s.mlp.sparse)
  s.sparseForwards++
  const token = yield* s.policy.draft({ sparseLogits: logits, context: s.ids, sampling: s.sampling, rng: s.rng })
  s.ids.push(token)
  s.draftLogits.push(logits)
  s.draftMs += performance.now() - t0
  return { _tag: "Drafted", token, position: s.ids.length - 1 } as Request.Event
})

/**
 * One full forward over the window (it rewrites the window's KV), the longest accepted prefix (draft w_i is
 * scored by the full logits at w_{i−1}; the first rejection stops), the rollback of the rest, then close.
 */
const verifyChain = Effect.fnUntraced(function* (s: State) {
  const t0 = performance.now()
  const start = s.lastCheck
  const window = s.ids.slice(start) // w_0 (full-made), then the drafts
  const n = window.length
  const V = s.model.config.vocabSize
  const logits = yield* Forward.forward(s.model, s.cache, Int32Array.from(window), start, "all") // (n, V)
  s.fullForwards++
  const row = (i: number) => logits.subarray(i * V, (i + 1) * V)
  s.ids.length = start + 1 // the accepted drafts are pushed back one by one: each is the next one's context
  const accepted: Array<{ token: number; logits: Float32Array }> = []
  for (let i = 1; i < n; i++) {
    const ok = yield* s.policy.accept({ draft: window[i]!, fullLogits: row(i - 1), sparseLogits: s.draftLogits[i - 1]!, context: s.ids, sampling: s.sampling, rng: s.rng })
    if (!ok) break
    accepted.push({ token: window[i]!, logits: row(i - 1) })
    s.ids.push(window[i]!)
  }
  const L = accepted.length
  KvCache.truncate(s.cache, start + L + 1)
  const rejected = L < n - 1 ? { draft: window[L + 1]!, sparseLogits: s.draftLogits[L]! } : undefined
  s.draftLogits.length = 0
  return yield* closeWindow(s, { start, drafts: window.slice(1), accepted, rollback: n - 1 - L, nextLogits: row(L), rejected, t0 })
})

// ---------------------------------------------------------------------------------------------------
// Tree drafting

/** The tree's next step: expand the beams, or verify at full depth, when the tree cannot grow, or early. */
const treeStep = (s: State): Effect.Effect<ReadonlyArray<Request.Event>, KernelError | Policy.PolicyError> =>
  Effect.gen(function* () {
    s.tree ??= DraftTree.make(s.ids[s.ids.length - 1]!)
    const tree = s.tree
    const depth = DraftTree.depth(tree)
    const budget = s.options.maxNewTokens - Request.committedCount(s)
    if (depth >= Math.min(s.k - 1, budget) || tree.closed) return yield* verifyTree(s, tree)
    if (depth > 0) {
      const newest = tree.nodes[tree.leaves[0]!]!.sparseLogits!
      if (yield* s.policy.verifyEarly({ windowLength: depth + 1, correctionPeriod: s.k, sparseLogits: newest })) return yield* verifyTree(s, tree)
    }
    return yield* expand(s, tree)
  })

/** One sparse forward over every beam's leaf (tree attention); the best `width` children become the beams. */
const expand = Effect.fnUntraced(function* (s: State, tree: DraftTree.Tree) {
  const t0 = performance.now()
  const leaves = tree.leaves
  const logits = yield* Forward.forward(
    s.model,
    s.cache,
    Int32Array.from(leaves, (i) => tree.nodes[i]!.token),
    s.lastCheck + leaves[0]!,
    "all",
    yield* s.mlp.sparse,
    DraftTree.layout(tree, leaves, s.lastCheck)
  )
  s.sparseForwards++
  const added = DraftTree.expand(tree, logits, s.model.config.vocabSize, s.width, s.eos)
  s.draftMs += performance.now() - t0
  return added.map((i): Request.Event => {
    const n = tree.nodes[i]!
    return { _tag: "Drafted", token: n.token, position: s.lastCheck + n.depth, node: i, parent: n.parent }
  })
})

/**
 * Every node through the full model in one pass (tree attention); each node's draft is judged given its
 * path (depth-first, the path's tokens pushed and popped as context); the final beam with the longest
 * accepted prefix wins and its accepted path is compacted into contiguous KV slots.
 */
const verifyTree = Effect.fnUntraced(function* (s: State, tree: DraftTree.Tree) {
  const t0 = performance.now()
  const start = s.lastCheck
  const V = s.model.config.vocabSize
  const all = tree.nodes.map((_, i) => i)
  const logits = yield* Forward.forward(s.model, s.cache, Int32Array.from(tree.nodes, (n) => n.token), start, "all", Forward.dense, DraftTree.layout(tree, all, start))
  s.fullForwards++
  const row = (i: number) => logits.subarray(i * V, (i + 1) * V)
  const ok = new Array<boolean>(tree.nodes.length).fill(false)
  ok[0] = true
  const children = DraftTree.children(tree)
  // depth-first over accepted nodes: s.ids ends with the path to the node being judged
  const visit = (node: number): Effect.Effect<void, Policy.PolicyError> =>
    Effect.gen(function* () {
      for (const child of children[node]!) {
        const c = tree.nodes[child]!
        ok[child] = yield* s.policy.accept({ draft: c.token, fullLogits: row(node), sparseLogits: c.sparseLogits!, context: s.ids, sampling: s.sampling, rng: s.rng })
        if (!ok[child]) continue
        s.ids.push(c.token)
        yield* visit(child)
        s.ids.pop()
      }
    })
  yield* visit(0)
  const { node, rejected } = DraftTree.winner(tree, ok)
  const path = DraftTree.path(tree, node)
  yield* KvCache.compact(s.model.kernels, s.cache, path.map((i) => start + i), start)
  const accepted = path.slice(1).map((i) => ({ token: tree.nodes[i]!.token, logits: row(tree.nodes[i]!.parent) }))
  s.ids.push(...accepted.map((a) => a.token))
  s.tree = undefined
  const verdict: Verdict = {
    start,
    drafts: tree.nodes.slice(1).map((n) => n.token),
    accepted,
    rollback: DraftTree.depth(tree) - accepted.length,
    nextLogits: row(node),
    rejected: rejected === undefined ? undefined : { draft: tree.nodes[rejected]!.token, sparseLogits: tree.nodes[rejected]!.sparseLogits! },
    t0
  }
  const events = yield* closeWindow(s, verdict)
  s.tree = DraftTree.make(s.ids[s.ids.length - 1]!)
  return events
})

// ---------------------------------------------------------------------------------------------------

const stats = (s: State): Request.SiriusStats => {
  const dSparse = s.parameterDensity()
  // AAL excludes the last period, which stopping truncates (as the paper); with one period, use it.
  const periods = s.advances.length > 1 ? s.advances.slice(0, -1) : s.advances
  const aal = periods.length > 0 ? periods.reduce((a, b) => a + b, 0) / periods.length : 0
  const effectiveDensity = aal > 0 ? ((s.k - 1) * dSparse + 1) / aal : 1
  const base = Request.baseStats(s, dSparse)
  return {
    ...base,
    correctionPeriod: s.k,
    treeWidth: s.width,
    aal,
    effectiveDensity,
    apu: effectiveDensity * Sparsity.parameterCount(s.model.config).total,
    verifications: s.advances.length,
    rollbacks: s.rollbackLengths.length,
    meanRollbackLength: s.rollbackLengths.length > 0 ? s.rollbackLengths.reduce((a, b) => a + b, 0) / s.rollbackLengths.length : 0,
    correctedTokens: s.corrections,
    correctedFraction: base.generatedTokens > 0 ? s.corrections / base.generatedTokens : 0,
    draftMs: s.draftMs,
    verifyMs: s.verifyMs
  }
}
