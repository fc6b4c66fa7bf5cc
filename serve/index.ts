/**
 * sirius-ts/serve: the OpenAI-compatible server behind `sirius serve`, to run inside your own process:
 * `Server.make(options)` in an Effect scope, or `Server.start(options)` as a Promise handle.
 *
 * @example
 * const server = await Server.start({ model: Bundled.modelDir, kernels: SimdKernels.layer(), port: 0 })
 * await server.ready
 * console.log(server.url) // http://127.0.0.1:<port>
 * await server.close()
 */
export * as Server from "./Server.ts"
export type { Defaults } from "./RequestPlan.ts"
