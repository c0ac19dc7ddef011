/** Epoch records for the run-store tests. */
import type { EpochRecord } from "../../src/train/history.ts";

/** A history whose epochs have these test accuracies. */
export function makeHistory(accuracies: number[]): EpochRecord[] {
  return accuracies.map((testAccuracy, i) => ({
    epoch: i + 1,
    step: 4 * (i + 1),
    lr: 0.1,
    trainLoss: 2 - i / 10,
    trainAccuracy: 0.1 * (i + 1),
    testLoss: 2.1 - i / 10,
    testAccuracy,
    imagesPerSecond: 100 + i,
    elapsedSeconds: 1.25 * (i + 1),
  }));
}
