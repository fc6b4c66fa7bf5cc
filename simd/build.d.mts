/** Types of build.mjs (the simd/ build step), for the test that checks the embedded wasm is up to date. */
export declare const compileWat: (source: string) => Promise<Uint8Array>
export declare const renderModule: (bytes: Uint8Array) => string
