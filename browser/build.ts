/**
 * Build the browser bundle of the library (browser/entry.ts → one ES module) with esbuild, in memory.
 *
 * Node built-ins that src/ imports for file loading (node:fs, node:path) are replaced by an empty module:
 * the page loads models with fetch (browser/load.ts) and never reaches those code paths. gpu.js resolves
 * to its prebuilt browser build (package.json "browser" field). Not minified: gpu.js transpiles kernel
 * source text, and readable kernels make failures readable.
 */
import { build } from "esbuild"
import { fileURLToPath } from "node:url"

export const entryPoint = fileURLToPath(new URL("./entry.ts", import.meta.url))

/** The bundle's JavaScript source. */
export const buildBundle = async (entry: string = entryPoint): Promise<string> => {
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
    logLevel: "silent",
    plugins: [
      {
        name: "node-builtins-stub",
        setup(b) {
          b.onResolve({ filter: /^node:/ }, (args) => ({ path: args.path, namespace: "node-stub" }))
          // CommonJS, so named imports of absent functions resolve to undefined instead of failing the build.
          b.onLoad({ filter: /.*/, namespace: "node-stub" }, () => ({ contents: "module.exports = {}", loader: "js" }))
        }
      }
    ]
  })
  const file = result.outputFiles[0]
  if (file === undefined) throw new Error("esbuild produced no output")
  return file.text
}
