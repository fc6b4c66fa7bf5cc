/**
 * An Effect HTTP app that embeds sirius-ts behind its own route (not `sirius serve`): the model is a
 * service built once by a Layer, and `POST /solve {"question": "..."}` answers an arithmetic question
 * with the bundled model in Sirius mode, streaming the answer as plain text as it is verified. A client
 * that disconnects interrupts its generation (routes are interruptible; the request's stream frees its
 * KV cache and gathers). In your project the imports are `from "sirius-ts"` and `from "sirius-ts/simd"`.
 *
 * Run: npm run build && node dist/examples/serve-effect-app.js [--port 3000]
 *      curl -N localhost:3000/solve -d '{"question": "Tom has 23 apples. He buys 15 more. How many apples now?"}'
 */
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { Context, Effect, Layer, Schema, Stream } from "effect"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import { createServer } from "node:http"
import { parseArgs } from "node:util"
import { SimdKernels } from "../simd/index.ts"
import * as Bundled from "../src/Bundled.ts"
import { loadCheckpoint } from "../src/Checkpoint.ts"
import * as Client from "../src/Client.ts"
import * as Model from "../src/Model.ts"

/** The loaded model, shared by every request. */
export class Solver extends Context.Service<
  Solver,
  { readonly answer: (question: string) => Stream.Stream<string, Client.ClientError> }
>()("examples/Solver") {
  /** Load the bundled model on the simd backend once; `answer` streams the committed text of a Sirius request. */
  static readonly layer = Layer.effect(
    Solver,
    Effect.gen(function* () {
      const checkpoint = yield* loadCheckpoint(Bundled.modelDir)
      const model = yield* Model.fromCheckpoint(checkpoint)
      return {
        answer: (question: string) =>
          Client.requestStream(checkpoint, model, { prompt: `Q: ${question}\nA:`, mode: "sirius", maxNewTokens: 96 }).pipe(
            Stream.filter((e) => e._tag === "Committed"),
            Stream.map((e) => (e._tag === "Committed" ? e.text : ""))
          )
      }
    })
  ).pipe(Layer.provide(SimdKernels.layer({ threads: 2 })))
}

const Question = Schema.Struct({ question: Schema.String.check(Schema.isMinLength(1)) })

/** POST /solve: the answer as text/plain, streamed; a bad body is a 400. */
export const routes = HttpRouter.add(
  "POST",
  "/solve",
  Effect.gen(function* () {
    const solver = yield* Solver
    const body = yield* HttpServerRequest.schemaBodyJson(Question)
    return HttpServerResponse.stream(Stream.encodeText(solver.answer(body.question)), { contentType: "text/plain; charset=utf-8" })
  }).pipe(Effect.catchTag("SchemaError", (e) => Effect.succeed(HttpServerResponse.text(`${e.message}\n`, { status: 400 }))))
)

/** The app on a port (0: any free one). */
export const app = (port: number) =>
  HttpRouter.serve(routes).pipe(Layer.provide(Solver.layer), Layer.provideMerge(NodeHttpServer.layer(() => createServer(), { port, host: "127.0.0.1" })))

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { port: { type: "string", default: "3000" } } })
  NodeRuntime.runMain(Layer.launch(app(Number(values.port))))
}
