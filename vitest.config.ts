import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["reference/**/*.test.ts", "src/**/*.test.ts", "interop/**/*.test.ts", "simd/**/*.test.ts", "gpu/**/*.test.ts", "properties/**/*.test.ts", "examples/**/*.test.ts"],
    exclude: ["node_modules/**", "dist/**"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // 2-core CI machines: two test files at a time, each file in its own fork.
    pool: "forks",
    maxWorkers: 2
  }
})
