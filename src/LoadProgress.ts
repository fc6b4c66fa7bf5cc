/**
 * LoadProgress: how far loading a model has come, for progress bars. Loading has two phases: reading the
 * checkpoint's tensors from disk (Checkpoint.loadCheckpoint), then making them resident on the backend
 * (Model.fromCheckpoint: packing, uploading). Each reports after every tensor.
 */
export interface LoadProgress {
  readonly phase: "read" | "upload"
  /** The file being read (read phase), or the backend's name (upload phase). */
  readonly source: string
  readonly tensors: number
  readonly totalTensors: number
  readonly bytes: number
  readonly totalBytes: number
}

export type OnProgress = (progress: LoadProgress) => void
