/**
 * sirius-ts/ai: an `effect/ai` LanguageModel provider backed by sirius-ts (SiriusLanguageModel), so Effect
 * programs use `LanguageModel.generateText` / `streamText` on a local model with sparsity and Sirius.
 */
export * as SiriusLanguageModel from "./SiriusLanguageModel.ts"
