/**
 * A static server for the browser checks: serves in-memory files (the bundle, the page) and files from
 * directories (a model) on 127.0.0.1 with the cross-origin isolation headers (COOP/COEP) that make
 * SharedArrayBuffer, and so gpu.js's threaded webasm, available to the page.
 */
import { createReadStream, statSync } from "node:fs"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { extname, join, normalize, sep } from "node:path"

export interface StaticServer {
  /** e.g. http://127.0.0.1:41234 */
  readonly url: string
  readonly close: () => Promise<void>
}

const types: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".json": "application/json",
  ".safetensors": "application/octet-stream"
}

const isolation = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
  "Cross-Origin-Resource-Policy": "same-origin",
  "Cache-Control": "no-store"
}

/**
 * @param files  URL path → contents, e.g. { "/index.html": page, "/bundle.js": js }
 * @param mounts URL prefix → directory, e.g. { "/model/": "/tmp/model" }; paths cannot escape the directory
 */
export const serve = (files: Readonly<Record<string, string | Uint8Array>>, mounts: Readonly<Record<string, string>> = {}): Promise<StaticServer> =>
  new Promise((resolve, reject) => {
    const server = createServer((req, res) => {
      const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname)
      const type = types[extname(path)] ?? "application/octet-stream"
      const body = files[path]
      if (body !== undefined) {
        res.writeHead(200, { ...isolation, "Content-Type": type })
        res.end(body)
        return
      }
      for (const [prefix, dir] of Object.entries(mounts)) {
        if (!path.startsWith(prefix)) continue
        const file = normalize(join(dir, path.slice(prefix.length)))
        const stat = file.startsWith(normalize(dir) + sep) ? statSync(file, { throwIfNoEntry: false }) : undefined
        if (stat?.isFile()) {
          res.writeHead(200, { ...isolation, "Content-Type": type, "Content-Length": stat.size })
          createReadStream(file).pipe(res)
          return
        }
      }
      res.writeHead(404, isolation)
      res.end("not found")
    })
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      resolve({
        url: `http://127.0.0.1:${port}`,
        close: () => new Promise<void>((done) => server.close(() => done()))
      })
    })
  })

/** The test page: loads the bundle as a module; `globalThis.sirius` appears once it has run. */
export const indexHtml = `<!doctype html>
<html><head><meta charset="utf-8"><title>sirius-ts browser checks</title></head>
<body><script type="module" src="/bundle.js"></script></body></html>
`
