/** Types of build.mjs (the simd/ build step), for the test that checks the embedded wasm is up to date. */
export interface KernelBinaries {
  /** kernels.wat as written (relaxed SIMD: f32x4.relaxed_madd). */
  readonly relaxed: Uint8Array
  /** Each relaxed_madd lowered to f32x4.mul + f32x4.add (plain SIMD). */
  readonly baseline: Uint8Array
}
export declare const compileWat: (source: string) => Promise<KernelBinaries>
export declare const renderModule: (binaries: KernelBinaries) => string
export declare const lowerRelaxed: (source: string) => string
