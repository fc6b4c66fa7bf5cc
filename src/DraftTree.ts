/**
 * DraftTree: the beam tree Sirius's sparse model drafts when treeWidth w > 1 (docs/sirius.md),
 * flattened into KV slots for tree attention.
 *
 * Node 0 is the window's root (the full model's token at `lastCheck`); node i lives in KV slot
 * lastCheck + i at RoPE position lastCheck + depth(i) and attends to the committed context, its ancestors
 * and itself. Each round expands every leaf by its top-w children (tempered log-probabilities, drafted EOS
 * excluded), pools the candidates by cumulative score and keeps the best w as the new leaves: they are
 * appended in score order, so a round's leaves always occupy consecutive slots. Verification runs every node
 * through the full model in one pass; the winner is the final beam with the longest accepted prefix (ties
 * to the higher score), and that prefix is compacted into contiguous slots.
 */
import { acceptanceTemperature } from "./Policy.ts"

export interface Node {
  readonly token: number
  /** Parent node index; −1 for the root. */
  readonly parent: number
  readonly depth: number
  /** Cumulative tempered log-probability under the sparse model (0 at the root). */
  readonly score: number
  /** The sparse logits this node was drafted from (its parent's output); undefined for the root. */
  readonly sparseLogits: Float32Array | undefined
}

export interface Tree {
  readonly nodes: Array<Node>
  /** Current beams (node indices, consecutive, best score first). */
  leaves: Array<number>
  /** No candidate survived the last round (all excluded): the tree cannot grow. */
  closed: boolean
}

export const make = (root: number): Tree => ({
  nodes: [{ token: root, parent: -1, depth: 0, score: 0, sparseLogits: undefined }],
  leaves: [0],
  closed: false
})

export const depth = (tree: Tree): number => tree.nodes[tree.leaves[0]!]!.depth

/** Node indices from the root to `i`, inclusive. */
export const path = (tree: Tree, i: number): Array<number> => {
  const out: Array<number> = []
  for (let n = i; n >= 0; n = tree.nodes[n]!.parent) out.push(n)
  return out.reverse()
}

/**
 * Positions and visibility for running `nodes` (consecutive indices) whose slots start at lastCheck + nodes[0]:
 * mask (T, lastCheck + nodes[0] + T), a row per node: the context, its ancestors and itself.
 */
export const layout = (tree: Tree, nodes: ReadonlyArray<number>, lastCheck: number): { positions: Int32Array; mask: Uint8Array } => {
  const T = nodes.length
  const S = lastCheck + nodes[0]! + T
  const mask = new Uint8Array(T * S)
  const positions = new Int32Array(T)
  nodes.forEach((node, t) => {
    mask.fill(1, t * S, t * S + lastCheck)
    for (const n of path(tree, node)) mask[t * S + lastCheck + n] = 1
    positions[t] = lastCheck + tree.nodes[node]!.depth
  })
  return { positions, mask }
}

/** log softmax(logits / τ) for every id, float64. */
const temperedLogProbs = (logits: Float32Array): Float64Array => {
  let max = -Infinity
  for (const v of logits) max = Math.max(max, v / acceptanceTemperature)
  let sum = 0
  for (const v of logits) sum += Math.exp(v / acceptanceTemperature - max)
  const lse = max + Math.log(sum)
  return Float64Array.from(logits, (v) => v / acceptanceTemperature - lse)
}

/**
 * One round: the sparse logits (leaves.length, V) of the current leaves → the best `width` children, added
 * as nodes and made the new leaves. Returns the new node indices (empty when every candidate was excluded).
 */
export const expand = (tree: Tree, logits: Float32Array, vocab: number, width: number, exclude: ReadonlySet<number>): Array<number> => {
  const candidates: Array<{ token: number; parent: number; score: number; row: number }> = []
  tree.leaves.forEach((leaf, row) => {
    const lp = temperedLogProbs(logits.subarray(row * vocab, (row + 1) * vocab))
    const order = Array.from({ length: vocab }, (_, id) => id)
      .filter((id) => !exclude.has(id))
      .sort((a, b) => lp[b]! - lp[a]! || a - b)
      .slice(0, width)
    for (const token of order) candidates.push({ token, parent: leaf, score: tree.nodes[leaf]!.score + lp[token]!, row })
  })
  candidates.sort((a, b) => b.score - a.score)
  const kept = candidates.slice(0, width)
  const added = kept.map((c) => {
    tree.nodes.push({
      token: c.token,
      parent: c.parent,
      depth: tree.nodes[c.parent]!.depth + 1,
      score: c.score,
      sparseLogits: logits.slice(c.row * vocab, (c.row + 1) * vocab)
    })
    return tree.nodes.length - 1
  })
  if (added.length > 0) tree.leaves = added
  else tree.closed = true
  return added
}

/** Each node's children, in index order (the order rounds added them). */
export const children = (tree: Tree): Array<Array<number>> => {
  const out = tree.nodes.map((): Array<number> => [])
  tree.nodes.forEach((n, i) => {
    if (n.parent >= 0) out[n.parent]!.push(i)
  })
  return out
}

/**
 * The verification verdict from `ok` (ok[i]: node i's path is accepted up to and including i; ok[0] true).
 * Only the final beams (the last round's leaves) compete, as in the official code: each beam's accepted
 * prefix is its path from the root up to the first rejected node; the longest wins, ties to the higher
 * beam score (leaves are kept best first). A longer accepted path on a pruned dead end does not count.
 * Returns the winning beam's last accepted node and the beam's next node (rejected), if any.
 */
export const winner = (tree: Tree, ok: ReadonlyArray<boolean>): { node: number; rejected: number | undefined } => {
  let best: { path: Array<number>; accepted: number } | undefined
  for (const leaf of tree.leaves) {
    const p = path(tree, leaf)
    let accepted = 0
    while (accepted + 1 < p.length && ok[p[accepted + 1]!] === true) accepted++
    if (best === undefined || accepted > best.accepted) best = { path: p, accepted }
  }
  const { path: p, accepted } = best!
  return { node: p[accepted]!, rejected: p[accepted + 1] }
}
