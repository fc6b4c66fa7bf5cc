// The package as users get it: build, `npm pack`, install the tarball into a scratch app OFFLINE (npm ci
// against a lockfile taken from this repository's, so every tarball comes from the npm cache `npm ci`
// filled), then under plain `node` (no vitest resolver): import every subpath export, run a short
// generation with Client on the simd backend, and `tsc --strict` a small app that uses the Effect, Promise
// and fp-ts APIs against the installed effect. A plain install (sirius-ts + effect) must run no install
// script and bring no GPU package. `sirius serve` runs from the installed package in a child process: the
// real port for --port 0, answers, and a graceful shutdown on SIGTERM.
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { createHash } from "node:crypto"
import { Effect } from "effect"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import type { LlamaConfig } from "../src/Config.ts"
import { randomWeights, shapes, writeHfCheckpoint } from "../testing/RandomModel.ts"

const root = resolve(".")
const work = mkdtempSync(join(tmpdir(), "sirius-pack-"))
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
  name: string
  version: string
  exports: Record<string, unknown>
  dependencies: Record<string, string>
  peerDependencies: Record<string, string>
  peerDependenciesMeta: Record<string, { optional?: boolean }>
}
const tarball = join(work, `${pkg.name}-${pkg.version}.tgz`)

const sh = (cmd: string, args: ReadonlyArray<string>, cwd: string) => {
  try {
    return execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, npm_config_fund: "false", npm_config_audit: "false" } })
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string }
    throw new Error(`${cmd} ${args.join(" ")} failed in ${cwd}:\n${err.stdout ?? ""}\n${err.stderr ?? err.message}`)
  }
}

type LockEntry = { version: string; integrity?: string; resolved?: string; dependencies?: Record<string, string>; optionalDependencies?: Record<string, string>; peerDependencies?: Record<string, string>; peerDependenciesMeta?: Record<string, { optional?: boolean }> } & Record<string, unknown>
const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8")) as { packages: Record<string, LockEntry> }

/** Where Node would find `dep` from the package at `from` (a lockfile path): the nearest node_modules up. */
const locate = (from: string, dep: string): string | undefined => {
  for (let at = from; ; ) {
    const candidate = `${at === "" ? "" : `${at}/`}node_modules/${dep}`
    if (lock.packages[candidate] !== undefined) return candidate
    if (at === "") return undefined
    const i = at.lastIndexOf("/node_modules/")
    at = i < 0 ? "" : at.slice(0, i)
  }
}

/**
 * Install `deps` (name → version, or the tarball for sirius-ts) into `app` with `npm ci --offline`: the
 * lockfile holds the tarball's entry and the closure of its and the deps' dependencies (and required
 * peers) as this repository's lockfile resolved them.
 */
const install = (app: string, deps: Record<string, string>, extraArgs: ReadonlyArray<string> = []) => {
  const packed = JSON.parse(sh("tar", ["-xOzf", tarball, "package/package.json"], work)) as LockEntry & { name: string }
  const packages: Record<string, LockEntry> = {}
  const visit = (path: string, entry: LockEntry) => {
    if (packages[path] !== undefined) return
    const { dev: _dev, devOptional: _devOptional, peer: _peer, optional: _optional, ...clean } = entry
    packages[path] = clean as LockEntry
    const required = { ...entry.dependencies, ...entry.optionalDependencies }
    for (const [peer, range] of Object.entries(entry.peerDependencies ?? {})) if (entry.peerDependenciesMeta?.[peer]?.optional !== true) required[peer] = range
    for (const dep of Object.keys(required)) {
      const at = locate(path.startsWith("node_modules/sirius-ts") ? "" : path, dep)
      if (at !== undefined) visit(at, lock.packages[at]!)
      else if (entry.optionalDependencies?.[dep] === undefined) throw new Error(`${dep} (needed by ${path || "the app"}) is not in package-lock.json`)
    }
  }
  const integrity = `sha512-${createHash("sha512").update(readFileSync(tarball)).digest("base64")}`
  const rootDeps: Record<string, string> = {}
  for (const [name, version] of Object.entries(deps)) {
    if (name === pkg.name) {
      rootDeps[name] = `file:${tarball}`
      const { scripts: _scripts, devDependencies: _dev, exports: _exports, files: _files, name: _name, ...meta } = packed as Record<string, unknown>
      visit(`node_modules/${name}`, { ...(meta as LockEntry), resolved: `file:${tarball}`, integrity })
    } else {
      rootDeps[name] = version
      visit(`node_modules/${name}`, lock.packages[`node_modules/${name}`]!)
    }
  }
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "scratch-app", private: true, type: "module", dependencies: rootDeps }, null, 2))
  writeFileSync(join(app, "package-lock.json"), JSON.stringify({ name: "scratch-app", lockfileVersion: 3, requires: true, packages: { "": { name: "scratch-app", dependencies: rootDeps }, ...packages } }, null, 2))
  sh("npm", ["ci", "--offline", "--no-audit", "--no-fund", ...extraArgs], app)
}

/** The app with a plain install (sirius-ts + effect), installed once. */
const plainApp = (): string => {
  const app = join(work, "plain")
  if (existsSync(join(app, "node_modules"))) return app
  mkdirSync(app, { recursive: true })
  install(app, { [pkg.name]: "tarball", effect: lock.packages["node_modules/effect"]!.version })
  return app
}

/** Every package.json under node_modules (scoped and nested included). */
const installedPackages = (dir: string): Array<{ name: string; scripts?: Record<string, string> }> => {
  const out: Array<{ name: string; scripts?: Record<string, string> }> = []
  const walk = (nm: string) => {
    for (const name of readdirSync(nm, { withFileTypes: true })) {
      if (!name.isDirectory() || name.name.startsWith(".")) continue
      if (name.name.startsWith("@")) {
        for (const inner of readdirSync(join(nm, name.name))) visitPackage(join(nm, name.name, inner))
      } else visitPackage(join(nm, name.name))
    }
  }
  const visitPackage = (dir: string) => {
    try {
      out.push(JSON.parse(readFileSync(join(dir, "package.json"), "utf8")))
    } catch {
      return
    }
    try {
      walk(join(dir, "node_modules"))
    } catch {
      // no nested node_modules
    }
  }
  walk(join(dir, "node_modules"))
  return out
}

beforeAll(() => {
  sh("npm", ["run", "build"], root)
  sh("npm", ["pack", "--ignore-scripts", "--pack-destination", work], root)
}, 300_000)

describe("the npm package", () => {
  it("ships dist/, bin/, the bundled models and their test splits, and nothing of tests or training", () => {
    const files = sh("tar", ["-tzf", tarball], work).trim().split("\n").map((f) => f.replace(/^package\//, ""))
    for (const f of ["dist/src/index.js", "dist/src/index.d.ts", "dist/cli/main.js", "bin/sirius.js", "models/sirius-tiny-arith/model.safetensors", "models/sirius-tiny-arith/tokenizer.json", "data/arith/test.jsonl", "models/sirius-tiny-gsm/model.safetensors", "models/sirius-tiny-gsm/eval.json", "data/gsm/test.jsonl", "CHANGELOG.md", "README.md"])
      expect(files).toContain(f)
    expect(files.filter((f) => /\.test\.|^training\/|^properties\/|^scripts\/|^dist\/scripts\/|^dist\/examples\/|^tmp\//.test(f))).toEqual([])
  })

  it("a plain install runs no install script and brings no GPU or oracle package", () => {
    const app = plainApp()
    const installed = installedPackages(app)
    expect(installed.map((p) => p.name)).toContain(pkg.name)
    const withScripts = installed.filter((p) => p.scripts?.install !== undefined || p.scripts?.preinstall !== undefined || p.scripts?.postinstall !== undefined)
    expect(withScripts.map((p) => p.name)).toEqual([])
    for (const absent of ["gpu.js", "webgpu", "gl", "node-llama-cpp", "fast-check", "fp-ts"]) expect(installed.map((p) => p.name)).not.toContain(absent)
    // the CLI runs from the installed package: the bundled model answers with no flags but the prompt
    const out = sh("node", [join(app, "node_modules", pkg.name, "bin", "sirius.js"), "generate", "--prompt", "Q: Ann has 26 pens. She buys 13 more. She buys 2 more. How many pens now?\nA:", "--json"], app)
    expect(JSON.parse(out).text).toContain("The answer is 41.")
    expect(sh("node", [join(app, "node_modules", pkg.name, "bin", "sirius.js"), "--version"], app).trim()).toBe(pkg.version)
  }, 180_000)

  it("under plain node every subpath export imports, Client generates on simd, and tsc --strict accepts an app using the Effect, Promise and fp-ts APIs", () => {
    const app = join(work, "full")
    mkdirSync(app)
    const version = (name: string) => lock.packages[`node_modules/${name}`]!.version
    // the optional peers too; --ignore-scripts keeps gpu.js's optional native `gl` from building
    install(app, { [pkg.name]: "tarball", effect: version("effect"), "fp-ts": version("fp-ts"), "fast-check": version("fast-check"), "gpu.js": version("gpu.js"), typescript: version("typescript"), "@types/node": version("@types/node") }, ["--ignore-scripts"])
    const subpaths = Object.keys(pkg.exports).filter((k) => k !== "./package.json").map((k) => (k === "." ? pkg.name : `${pkg.name}/${k.slice(2)}`))
    writeFileSync(
      join(app, "check.mjs"),
      `
import { Bundled, Client } from "${pkg.name}"
import { SimdKernels } from "${pkg.name}/simd"
const loaded = {}
for (const path of ${JSON.stringify(subpaths)}) loaded[path] = Object.keys(await import(path)).length
const client = await Client.open(Bundled.modelDir, { kernels: SimdKernels.layer({ threads: 1 }) })
const out = await client.generate({ prompt: "Q: Tom has 23 apples. He buys 15 more. He gives away 9. How many apples now?\\nA:", mode: "sirius" })
await client.close()
console.log(JSON.stringify({ loaded, text: out.text, backend: client.backend, aal: out.stats.aal }))
`
    )
    const result = JSON.parse(sh("node", ["check.mjs"], app).trim()) as { loaded: Record<string, number>; text: string; backend: string; aal: number }
    for (const path of subpaths) expect(result.loaded[path], path).toBeGreaterThan(0)
    expect(result.text).toContain("The answer is 29.")
    expect(result.backend).toMatch(/^simd\(1 thread/)
    expect(result.aal).toBeGreaterThan(1)

    writeFileSync(
      join(app, "tsconfig.json"),
      JSON.stringify({ compilerOptions: { strict: true, exactOptionalPropertyTypes: true, module: "nodenext", moduleResolution: "nodenext", target: "es2022", noEmit: true, skipLibCheck: false, types: ["node"] }, include: ["app.ts"] })
    )
    writeFileSync(
      join(app, "app.ts"),
      `
import { Effect, Stream } from "effect"
import * as E from "fp-ts/lib/Either.js"
import { Bundled, Checkpoint, Client, Model, Policy, Sirius } from "${pkg.name}"
import { generate } from "${pkg.name}/fp-ts"
import { SimdKernels } from "${pkg.name}/simd"

// Effect: the README's example
export const program = Effect.gen(function* () {
  const checkpoint = yield* Checkpoint.loadCheckpoint(Bundled.modelDir)
  const model = yield* Model.fromCheckpoint(checkpoint)
  return yield* Sirius.generate(model, {
    prompt: checkpoint.tokenizer!.encode("Q: ...\\nA:"),
    maxNewTokens: 96,
    eosTokenIds: checkpoint.eosTokenIds,
    tokenizer: checkpoint.tokenizer,
    sparsity: { granularity: "coarse", density: 0.5 },
    correctionPeriod: 16
  }).pipe(
    Stream.filter((e) => e._tag === "Committed"),
    Stream.runFold(() => "", (text, e) => text + (e._tag === "Committed" ? e.text : ""))
  )
}).pipe(Effect.provide(SimdKernels.layer({ threads: 2 })))

// Promise: any Kernels layer, stats typed by mode, tagged rejections
export const promise = async (): Promise<number> => {
  const client = await Client.open(Bundled.modelDir, { kernels: SimdKernels.layer() })
  try {
    const out = await client.generate({ prompt: "Q: ...\\nA:", mode: "sirius", policy: Policy.greedyExact })
    return out.stats.aal
  } catch (e) {
    const error = e as Client.ClientError
    if (error._tag === "AbortedError") return 0
    throw error
  } finally {
    await client.close()
  }
}

// fp-ts: TaskEither with the tagged union on the left
export const fp = async (client: Client.Client): Promise<string> => {
  const r = await generate(client)({ prompt: "Q: ...\\nA:" })()
  return E.isLeft(r) ? r.left._tag : r.right.text
}
`
    )
    sh("node", [join(app, "node_modules", "typescript", "bin", "tsc"), "-p", app], app)
  }, 240_000)

  describe("sirius serve from the installed package", () => {
    // a random model that never emits EOS and takes about 5 ms a token: requests last as long as asked
    const slow: LlamaConfig = { ...shapes.tiny, hiddenSize: 256, intermediateSize: 1024, numHiddenLayers: 4, numAttentionHeads: 8, numKeyValueHeads: 4, headDim: 32, maxPositionEmbeddings: 2048, eosTokenIds: [] }
    const model = join(work, "slow-model")

    /** Start `sirius serve` and wait for its `listening on` line. */
    const serve = async (...args: Array<string>) => {
      const child = spawn("node", [join(plainApp(), "node_modules", pkg.name, "bin", "sirius.js"), "serve", "--model", model, "--port", "0", "--threads", "1", ...args], {
        cwd: plainApp(),
        stdio: ["ignore", "pipe", "pipe"]
      })
      let out = ""
      let err = ""
      child.stdout!.on("data", (d: Buffer) => void (out += d.toString()))
      child.stderr!.on("data", (d: Buffer) => void (err += d.toString()))
      const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
      for (let i = 0; i < 300 && !/listening on /.test(out); i++) await new Promise((r) => setTimeout(r, 50))
      const url = /^listening on (http:\/\/127\.0\.0\.1:(\d+))\n$/.exec(out)
      expect(url, `stdout: ${out}\nstderr: ${err}`).not.toBeNull()
      for (let i = 0; i < 300 && (await fetch(`${url![1]}/health`)).status !== 200; i++) await new Promise((r) => setTimeout(r, 50))
      return { child, url: url![1]!, port: Number(url![2]), exited, output: () => ({ out, err }) }
    }

    /** A streamed completion of `tokens` tokens: resolves with the SSE text once it ends; `started` once the first chunk arrived. */
    const stream = (url: string, tokens: number) => {
      let started: () => void = () => {}
      const first = new Promise<void>((r) => (started = r))
      const done = fetch(`${url}/v1/completions`, { method: "POST", body: JSON.stringify({ prompt: [5, 6, 7], max_tokens: tokens, stream: true, logprobs: 0 }) }).then(async (r) => {
        const reader = r.body!.getReader()
        let text = ""
        for (;;) {
          const next = await reader.read().catch(() => ({ done: true as const, value: undefined }))
          if (next.done) return text
          text += new TextDecoder().decode(next.value)
          started()
        }
      })
      return { first, done }
    }

    const kill = (child: ChildProcess) => child.kill("SIGTERM")

    it("--port 0 prints the real port; SIGTERM stops accepting, lets the in-flight request finish, exits 0", async () => {
      await Effect.runPromise(writeHfCheckpoint(model, slow, randomWeights(slow, { seed: 9 })))
      const s = await serve()
      expect(s.port).toBeGreaterThan(0)
      const inflight = stream(s.url, 300)
      await inflight.first
      kill(s.child)
      await new Promise((r) => setTimeout(r, 200))
      await expect(fetch(`${s.url}/health`)).rejects.toThrow() // no longer accepting
      const text = await inflight.done
      expect(text.endsWith("data: [DONE]\n\n")).toBe(true)
      expect(text.split("\n\n").filter((m) => m.startsWith("data: {")).length).toBe(301) // 300 tokens and the finish
      expect(await s.exited).toBe(0)
      const { err } = s.output()
      expect(err).toContain("SIGTERM: shutting down")
      expect(err).toMatch(/INFO POST \/v1\/completions 200 full prompt=3 completion=300 finish=length \d+ms\n/)
    }, 60_000)

    it("past --shutdown-timeout, the in-flight request is cancelled and the process still exits 0", async () => {
      const s = await serve("--shutdown-timeout", "0.3")
      const inflight = stream(s.url, 1900)
      await inflight.first
      const killed = performance.now()
      kill(s.child)
      const text = await inflight.done
      expect(text).not.toContain("[DONE]") // cut off
      expect(await s.exited).toBe(0)
      expect(performance.now() - killed).toBeLessThan(5000)
    }, 60_000)
  })
})
