/**
 * Where a training run keeps what it has finished: the CLI's run folder (src/train/run_dir.ts)
 * or, in the browser, the page's memory. The epoch loop (src/train/loop.ts) writes through this
 * interface only, so one loop serves both. Platform-free.
 */
import type { EpochRecord } from "./history.ts";

/** Where a training run keeps its epochs: the CLI's run folder, or the page's memory. */
export interface RunStore {
  /** How messages name the place, e.g. "runs/x" or "this page". */
  readonly path: string;
  /** What a divergence message names as the last good checkpoint. */
  readonly lastCheckpointPath: string;
  /** Makes the store agree with `history`, the epochs of the checkpoint a run resumes from. */
  restart(history: readonly EpochRecord[]): Promise<void>;
  /**
   * Records a finished epoch: its checkpoint, the run's history up to it, and whether it is the
   * best so far (the highest test accuracy).
   */
  saveEpoch(checkpoint: Uint8Array, history: readonly EpochRecord[], best: boolean): Promise<void>;
}

/** The browser's store: the latest and the best checkpoint's bytes, kept in memory. */
export class MemoryRunStore implements RunStore {
  readonly lastCheckpointPath: string;
  /** The checkpoint of the latest epoch saved. */
  last?: Uint8Array;
  /** The checkpoint of the first epoch of the highest test accuracy. */
  best?: Uint8Array;
  /** The run's epochs so far, in order. */
  history: EpochRecord[] = [];

  constructor(readonly path = "memory") {
    this.lastCheckpointPath = `the latest checkpoint in ${path}`;
  }

  /**
   * Takes `history` as the run's (a run resumed from a checkpoint); the checkpoints held before
   * belong to another run, so they are let go.
   */
  restart(history: readonly EpochRecord[]): Promise<void> {
    this.history = [...history];
    this.last = undefined;
    this.best = undefined;
    return Promise.resolve();
  }

  saveEpoch(checkpoint: Uint8Array, history: readonly EpochRecord[], best: boolean): Promise<void> {
    this.last = checkpoint;
    if (best) this.best = checkpoint;
    this.history = [...history];
    return Promise.resolve();
  }
}
