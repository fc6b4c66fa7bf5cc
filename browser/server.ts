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
  ".jsonl": "application/x-ndjson",
  ".svg": "image/svg+xml",
  ".png": "image/png",
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
 * @param listen port (default 0: any free port) and host (default 127.0.0.1)
 */
export const serve = (
  files: Readonly<Record<string, string | Uint8Array>>,
  mounts: Readonly<Record<string, string>> = {},
  listen: { readonly port?: number; readonly host?: string } = {}
): Promise<StaticServer> =>
  new Promise((resolve, reject) => {
    const server = createServer((req, res) => {
      const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname)
      // a page's path may have no extension ("/", "/bench")
      const type = types[extname(path)] ?? (extname(path) === "" ? types[".html"]! : "application/octet-stream")
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
    const host = listen.host ?? "127.0.0.1"
    server.listen(listen.port ?? 0, host, () => {
      const { port } = server.address() as AddressInfo
      resolve({
        url: `http://${host.includes(":") ? `[${host}]` : host}:${port}`,
        close: () => new Promise<void>((done) => server.close(() => done()))
      })
    })
  })

/** The test page: loads the bundle as a module; `globalThis.sirius` appears once it has run. */
export const indexHtml = `<!doctype html>
<html><head><meta charset="utf-8"><title>sirius-ts browser checks</title></head>
<body><script type="module" src="/bundle.js"></script></body></html>
`
