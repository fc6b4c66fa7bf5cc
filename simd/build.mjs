#!/usr/bin/env node
/**
 * Build step of the simd/ backend: compile kernels.wat with the wabt npm package into TWO binaries and
 * embed both as base64 in kernels.wasm.ts, so the backend loads them without touching the file system
 * (works from src, from dist/, in workers and in bundles):
 *
 *   relaxed   kernels.wat as written, features `simd`, `threads` and `relaxed_simd`: every multiply-add
 *             is `f32x4.relaxed_madd`, which V8 on x64 lowers to one FMA instruction when the CPU has FMA3
 *   baseline  the same source with each `(f32x4.relaxed_madd a b c)` rewritten to
 *             `(f32x4.add (f32x4.mul a b) c)` and each relaxed int8 dot product to a call of its plain-SIMD
 *             twin (see RELAXED), features `simd` and `threads` only: for hosts that do not accept relaxed
 *             SIMD (Node 20 keeps it behind --experimental-wasm-relaxed-simd)
 *
 * Both are built after expanding the `;; @inline` helpers at their calls (see inlineFunctions).
 * (The features are passed to both parseWat and validate: without them v128, shared memory, atomics and
 * relaxed_madd are rejected.) SimdRuntime.ts picks the relaxed binary when the host validates it.
 *
 *   node simd/build.mjs          write simd/kernels.wasm.ts
 *   node simd/build.mjs --check  exit 1 if simd/kernels.wasm.ts is not what kernels.wat compiles to
 *
 * The output is a pure function of kernels.wat and the pinned wabt version (no names section, no
 * timestamps), so the generated file is reproducible and checked in.
 */
import { readFileSync, writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import wabtInit from "wabt"

const here = dirname(fileURLToPath(import.meta.url))
const watPath = join(here, "kernels.wat")
const outPath = join(here, "kernels.wasm.ts")

/**
 * The relaxed-SIMD operations kernels.wat uses and their baseline lowering: each folded `(op a b [c])`
 * becomes the template with its operands lowered recursively. The integer dot products become calls of
 * plain-SIMD functions defined in kernels.wat itself ($plainDotI8x16I7x16 and its i32 twin), which compute
 * exactly what the relaxed op computes for a second operand in 0..127 (the only inputs the kernels give
 * it), so the lanes, and the kernels' results, are the same in both binaries up to the FMA. A relaxed
 * swizzle (only ever given indices 0..15, where it is defined) becomes the plain swizzle.
 */
const RELAXED = [
  { op: "(f32x4.relaxed_madd", arity: 3, lower: ([a, b, c]) => `(f32x4.add (f32x4.mul ${a} ${b}) ${c})` },
  { op: "(i16x8.relaxed_dot_i8x16_i7x16_s", arity: 2, lower: ([a, b]) => `(call $plainDotI8x16I7x16 ${a} ${b})` },
  { op: "(i8x16.relaxed_swizzle", arity: 2, lower: ([a, b]) => `(i8x16.swizzle ${a} ${b})` },
  { op: "(i32x4.relaxed_dot_i8x16_i7x16_add_s", arity: 3, lower: ([a, b, c]) => `(i32x4.add (call $plainDotI8x16I7x16AddS ${a} ${b}) ${c})` }
]

/** Index just past the s-expression or atom starting at `i` (skips `;;` line comments inside parens). */
const skipExpr = (s, i) => {
  if (s[i] !== "(") {
    while (i < s.length && !/[\s()]/.test(s[i])) i++
    return i
  }
  let depth = 0
  for (; i < s.length; i++) {
    const c = s[i]
    if (c === ";" && s[i + 1] === ";") {
      while (i < s.length && s[i] !== "\n") i++
    } else if (c === "(") depth++
    else if (c === ")" && --depth === 0) return i + 1
  }
  throw new Error("kernels.wat: unbalanced parentheses")
}

/** Index of the next non-space, non-comment character at or after `i`. */
const skipSpace = (s, i) => {
  for (;;) {
    while (i < s.length && /\s/.test(s[i])) i++
    if (s[i] === ";" && s[i + 1] === ";") {
      while (i < s.length && s[i] !== "\n") i++
    } else return i
  }
}

/** The first relaxed operation at or after `from` outside a `;;` comment: [index, rule], or undefined. */
const nextRelaxed = (source, from) => {
  let best
  for (const rule of RELAXED) {
    let at = source.indexOf(rule.op, from)
    while (at >= 0) {
      const inComment = source.slice(source.lastIndexOf("\n", at) + 1, at).includes(";;")
      if (!inComment && /[\s;]/.test(source[at + rule.op.length] ?? "")) break
      at = source.indexOf(rule.op, at + rule.op.length)
    }
    if (at >= 0 && (best === undefined || at < best[0])) best = [at, rule]
  }
  return best
}

/**
 * The baseline source: every folded relaxed operation of RELAXED rewritten to plain SIMD, operands lowered
 * recursively (`;;` comments are left alone). Only the folded form is supported: a flat (stack-form)
 * relaxed op stays and fails the baseline's validation.
 */
export const lowerRelaxed = (source) => {
  let out = ""
  let i = 0
  for (;;) {
    const found = nextRelaxed(source, i)
    if (found === undefined) return out + source.slice(i)
    const [at, rule] = found
    const operands = []
    let j = at + rule.op.length
    for (let k = 0; k < rule.arity; k++) {
      j = skipSpace(source, j)
      const end = skipExpr(source, j)
      if (end === j) throw new Error(`kernels.wat: ${rule.op.slice(1)} at ${at} needs ${rule.arity} folded operands`)
      operands.push(lowerRelaxed(source.slice(j, end)))
      j = end
    }
    j = skipSpace(source, j)
    if (source[j] !== ")") throw new Error(`kernels.wat: ${rule.op.slice(1)} at ${at} has more than ${rule.arity} operands`)
    out += source.slice(i, at) + rule.lower(operands)
    i = j + 1
  }
}

// ---- inlining ----
//
// V8 (13.6) did not inline the kernels' small helpers (a block's dot product, an f16 scale), which left a
// call per block per row in the hot loops (measured 2–4× slower). A function whose definition is preceded
// by a `;; @inline` comment line is expanded at every call instead: `(call $f a b)` becomes
//   (block $f__N (result T) (local.set $f__N__a a) (local.set $f__N__b b) body)
// with the body's params, locals and labels renamed by the suffix __N, `(return x)` turned into
// `(br $f__N x)`, and the new locals declared in the caller. An inlined function's own locals are not
// re-zeroed per expansion: it must set each before reading it (all of ours do). Nested inline calls are
// expanded too; the definitions stay in the module (unused).

/** Top-level `(func ...)` forms: { name, start, end, inline, header items, body } of the module text. */
const parseFuncs = (source) => {
  const funcs = []
  let i = source.indexOf("(func ")
  while (i >= 0) {
    const end = skipExpr(source, i)
    const name = /^\(func (\$[\w.]+)/.exec(source.slice(i, i + 200))?.[1] ?? ""
    const before = source.slice(source.lastIndexOf("\n", source.lastIndexOf("\n", i) - 1) + 1, i)
    const items = []
    let j = skipSpace(source, i + 5 + (name ? name.length + 1 : 0))
    // header: (export ...) (param $x T) (result T) (local $x T), in that order
    while (source[j] === "(" && /^\((export|param|result|local)[\s)]/.test(source.slice(j, j + 8))) {
      const e = skipExpr(source, j)
      items.push(source.slice(j, e))
      j = skipSpace(source, e)
    }
    funcs.push({ name, start: i, end, inline: name !== "" && /;; @inline\s*$/.test(before), items, headerEnd: j, body: source.slice(j, end - 1) })
    i = source.indexOf("(func ", end)
  }
  return funcs
}

const declared = (items, kind) =>
  items.filter((it) => it.startsWith(`(${kind} `)).map((it) => {
    const m = /^\(\w+ (\$[\w.]+) (\w+)\)$/.exec(it)
    if (!m) throw new Error(`kernels.wat: cannot inline through ${it}`)
    return { name: m[1], type: m[2] }
  })

/** Expand every call of an inline function in `text`; new locals are pushed onto `locals`. */
const expandCalls = (text, inl, locals, counter) => {
  let out = ""
  let i = 0
  for (;;) {
    const at = text.indexOf("(call $", i)
    if (at < 0) return out + text.slice(i)
    const name = /^\(call (\$[\w.]+)/.exec(text.slice(at, at + 200))[1]
    const f = inl.get(name)
    if (!f) {
      out += text.slice(i, at + 6 + name.length)
      i = at + 6 + name.length
      continue
    }
    const n = counter.next++
    const suffix = `__${n}`
    const args = []
    let j = at + 6 + name.length
    for (let k = 0; k < f.params.length; k++) {
      j = skipSpace(text, j)
      const e = skipExpr(text, j)
      args.push(expandCalls(text.slice(j, e), inl, locals, counter))
      j = e
    }
    j = skipSpace(text, j)
    if (text[j] !== ")") throw new Error(`kernels.wat: call ${name} takes ${f.params.length} operands`)
    // rename params, locals and labels of the body
    const renamed = new Set([...f.params, ...f.locals].map((v) => v.name))
    for (const m of f.body.matchAll(/\((?:block|loop) (\$[\w.]+)/g)) renamed.add(m[1])
    let body = f.body.replace(/\$[\w.]+/g, (v) => (renamed.has(v) ? v + suffix : v))
    body = body.replace(/\(return /g, `(br ${name}${suffix} `)
    body = expandCalls(body, inl, locals, counter)
    for (const v of [...f.params, ...f.locals]) locals.push(`(local ${v.name}${suffix} ${v.type})`)
    const sets = f.params.map((p, k) => `(local.set ${p.name}${suffix} ${args[k]})`).join(" ")
    out += text.slice(i, at) + `(block ${name}${suffix}${f.result ? ` (result ${f.result})` : ""} ${sets} ${body})`
    i = j + 1
  }
}

/** kernels.wat with every `;; @inline` function expanded at its calls (see above). */
export const inlineFunctions = (source) => {
  const funcs = parseFuncs(source)
  const inl = new Map(
    funcs.filter((f) => f.inline).map((f) => [f.name, { params: declared(f.items, "param"), locals: declared(f.items, "local"), result: /^\(result (\w+)\)$/.exec(f.items.find((it) => it.startsWith("(result")) ?? "")?.[1], body: f.body }])
  )
  const counter = { next: 0 }
  let out = ""
  let at = 0
  for (const f of funcs) {
    if (f.inline) continue
    const locals = []
    const body = expandCalls(f.body, inl, locals, counter)
    if (locals.length === 0) continue
    out += source.slice(at, f.headerEnd) + locals.join(" ") + "\n    " + body + ")"
    at = f.end
  }
  return out + source.slice(at)
}

const toBinary = (wabt, source, features) => {
  const module = wabt.parseWat("kernels.wat", source, features)
  try {
    // validate takes the feature set too (missing from wabt's .d.ts): without it, shared memory fails
    module.validate(features)
    return module.toBinary({ log: false, write_debug_names: false }).buffer
  } finally {
    module.destroy()
  }
}

/** Compile WAT text to the two binaries: `relaxed` (relaxed_madd kept) and `baseline` (lowered). */
export const compileWat = async (source) => {
  const wabt = await wabtInit()
  const inlined = inlineFunctions(source)
  return {
    relaxed: toBinary(wabt, inlined, { simd: true, threads: true, relaxed_simd: true }),
    baseline: toBinary(wabt, lowerRelaxed(inlined), { simd: true, threads: true })
  }
}

const base64Lines = (bytes) => {
  const lines = Buffer.from(bytes).toString("base64").match(/.{1,120}/g) ?? []
  return lines.map((l) => `  "${l}"`).join(" +\n")
}

/** The text of kernels.wasm.ts for the two binaries. */
export const renderModule = ({ relaxed, baseline }) =>
  [
    "// GENERATED by `node simd/build.mjs` from simd/kernels.wat (wabt). Do not edit.",
    `// relaxed: features simd + threads + relaxed_simd, ${relaxed.length} bytes of wasm.`,
    "export const kernelsRelaxedWasmBase64: string =",
    base64Lines(relaxed),
    "",
    `// baseline: relaxed_madd lowered to f32x4.mul + f32x4.add, relaxed int8 dots to plain SIMD; features simd + threads, ${baseline.length} bytes of wasm.`,
    "export const kernelsBaselineWasmBase64: string =",
    base64Lines(baseline),
    ""
  ].join("\n")

const main = async () => {
  const text = renderModule(await compileWat(readFileSync(watPath, "utf8")))
  if (process.argv.includes("--check")) {
    const current = readFileSync(outPath, "utf8")
    if (current !== text) {
      console.error("simd/kernels.wasm.ts is stale: run `node simd/build.mjs`")
      process.exit(1)
    }
    console.log("simd/kernels.wasm.ts is up to date")
    return
  }
  writeFileSync(outPath, text)
  console.log(`wrote ${outPath}`)
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main()
