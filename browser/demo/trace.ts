/**
 * The demo's "Sirius at work" view: a request's events (src/Request.ts) drawn as tokens.
 *
 * Sirius drafts with the sparse model and verifies every k tokens with the full model: each verification
 * window is a box; its drafts appear as they are drafted (grey), then the verification marks the accepted
 * ones (normal), strikes through the rejected ones (red), and appends the full model's own token: a
 * correction where it rejected a draft (highlighted), or a bonus token after a fully accepted window. A
 * tree window (width w > 1) shows every node drafted; after verification the winning path is accepted and
 * every other node struck through. Full and sparse decoding show each token as it is committed.
 *
 * Only the trace lives here: the committed text is the page's output element (page.ts), which never holds
 * drafts or rejected tokens.
 */
import type { Event } from "../../src/Request.ts"

export interface Trace {
  /** Forget the previous request. */
  readonly reset: () => void
  readonly onEvent: (e: Event) => void
}

/** How a token id reads in the trace (special tokens by name, a newline as ⏎). */
export type TokenText = (id: number) => string

interface Window {
  readonly box: HTMLElement
  /** Draft spans in drafting order. */
  readonly drafts: Array<HTMLElement>
  verified: boolean
  /** Tree drafting: the node the winning path has reached (0: the window's root). */
  at: number
  /** Chain drafting: the next draft the committed drafts match. */
  next: number
}

export const makeTrace = (root: HTMLElement, text: TokenText): Trace => {
  let open: Window | undefined

  const token = (id: number, cls: string, title: string): HTMLElement => {
    const span = document.createElement("span")
    span.className = `tok ${cls}`
    span.textContent = text(id)
    span.title = title
    span.dataset.token = String(id)
    return span
  }
  const window = (): Window => {
    if (open !== undefined && !open.verified) return open
    const box = document.createElement("span")
    box.className = "window drafting"
    box.dataset.testid = "window"
    root.append(box)
    open = { box, drafts: [], verified: false, at: 0, next: 0 }
    return open
  }
  const close = (w: Window) => {
    w.box.classList.remove("verifying")
    w.box.classList.add("done")
    if (open === w) open = undefined
  }

  return {
    reset: () => {
      root.replaceChildren()
      open = undefined
    },
    onEvent: (e) => {
      switch (e._tag) {
        case "Drafted": {
          const w = window()
          const span = token(e.token, "draft", `drafted by the sparse model at position ${e.position}${e.node === undefined ? "" : ` (tree node ${e.node}, parent ${e.parent})`}`)
          if (e.node !== undefined) {
            span.dataset.node = String(e.node)
            span.dataset.parent = String(e.parent)
          }
          w.drafts.push(span)
          w.box.append(span)
          root.scrollTop = root.scrollHeight
          return
        }
        case "Verified": {
          const w = window()
          w.verified = true
          w.box.classList.replace("drafting", "verifying")
          w.box.title = `verified by the full model in ${e.ms.toFixed(1)} ms: ${e.accepted} of ${e.drafts.length} drafts accepted${e.rollback > 0 ? `, ${e.rollback} rolled back` : ""}`
          // everything is rejected until the committed drafts say otherwise (chain: the first `accepted`)
          for (const d of w.drafts) d.className = "tok rejected"
          return
        }
        case "Committed": {
          if (e.source === "draft" && open !== undefined && open.verified) {
            const w = open
            const tree = w.drafts.some((d) => d.dataset.node !== undefined)
            const hit = tree
              ? w.drafts.find((d) => d.dataset.parent === String(w.at) && d.dataset.token === String(e.token))
              : w.drafts[w.next]
            if (hit !== undefined) {
              hit.className = "tok accepted"
              hit.title = `drafted by the sparse model, accepted by the full model (position ${e.position})`
              if (tree) w.at = Number(hit.dataset.node)
              w.next++
            }
            return
          }
          if ((e.source === "correction" || e.source === "bonus") && open !== undefined) {
            const w = open
            w.box.append(
              token(e.token, e.source, e.source === "correction" ? `the full model's correction at position ${e.position}` : `the full model's bonus token after an accepted window (position ${e.position})`)
            )
            close(w)
            return
          }
          root.append(token(e.token, e.source, `${e.source === "sparse" ? "the sparse model" : "the full model"} at position ${e.position}`))
          root.scrollTop = root.scrollHeight
          return
        }
        case "Finished":
          // a window that ended with the request (a committed EOS or stop string) has no closing token
          if (open !== undefined && open.verified) close(open)
          return
        default:
          return
      }
    }
  }
}
