/** Types of build.mjs (the simd/ build step), for the tests that check the embedded wasm and the build's rewrites. */
export interface KernelBinaries {
  /** kernels.wat as written (relaxed SIMD: f32x4.relaxed_madd, relaxed int8 dots), `;; @inline` helpers expanded. */
  readonly relaxed: Uint8Array
  /** Each relaxed op lowered to plain SIMD (f32x4.mul + f32x4.add; the dots' plain twins). */
  readonly baseline: Uint8Array
}
export declare const compileWat: (source: string) => Promise<KernelBinaries>
export declare const renderModule: (binaries: KernelBinaries) => string
export declare const lowerRelaxed: (source: string) => string
/** The source with every `;; @inline` function expanded at its calls. */
export declare const inlineFunctions: (source: string) => string
