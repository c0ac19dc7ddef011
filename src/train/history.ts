/**
 * A run's history: one record per epoch, as metrics.jsonl lines and in every checkpoint's
 * metadata. Platform-free: the CLI's run folder and the browser page keep the same records.
 */
import * as z from "zod/mini";

/** One epoch's line of metrics.jsonl; a checkpoint's metadata holds every epoch's, in order. */
export const epochRecordSchema = z.object({
  /** From 1. */
  epoch: z.number().check(z.int(), z.minimum(1)),
  /** Optimizer steps taken by the end of the epoch. */
  step: z.number().check(z.int(), z.minimum(0)),
  /** The learning rate of the epoch's last step. */
  lr: z.number(),
  /** Mean over the epoch's training batches, as the weights changed. */
  trainLoss: z.number(),
  /** Fraction correct, 0..1. */
  trainAccuracy: z.number(),
  /** Over the whole test set, after the epoch. */
  testLoss: z.number(),
  testAccuracy: z.number(),
  /** f16 training: the loss scale at the end of the epoch (src/train/loss_scale.ts). */
  lossScale: z.optional(z.number().check(z.positive())),
  /** f16 training: steps skipped for an overflow since the run began. */
  skippedSteps: z.optional(z.number().check(z.int(), z.minimum(0))),
  /** With --ema: the moving average of the weights over the whole test set, after the epoch. */
  emaTestLoss: z.optional(z.number()),
  emaTestAccuracy: z.optional(z.number()),
  /** Training images per second, evaluation not counted. */
  imagesPerSecond: z.number(),
  /**
   * Seconds spent training since the run began (evaluation, saving and compiling not counted),
   * over every resumed part. Absent from records of runs before it was recorded.
   */
  trainSeconds: z.optional(z.number()),
  /**
   * For each accuracy threshold the test accuracy has reached by this epoch ("90", "93", "94" for
   * 90%, 93%, 94%): the training seconds (`trainSeconds`) at the end of the first epoch that
   * reached it.
   */
  timeToAccuracy: z.optional(z.record(z.string(), z.number())),
  /** Seconds since the run began, training and evaluation, over every resumed part. */
  elapsedSeconds: z.number(),
});
export type EpochRecord = z.infer<typeof epochRecordSchema>;

/** The test accuracies whose time to reach the epoch records note, in percent. */
export const ACCURACY_THRESHOLDS = [90, 93, 94] as const;

/**
 * The thresholds reached so far: `earlier`'s, and those `testAccuracy` reaches now at
 * `trainSeconds`.
 */
export function timeToAccuracy(
  earlier: Readonly<Record<string, number>> | undefined,
  testAccuracy: number,
  trainSeconds: number,
): Record<string, number> {
  const reached = { ...earlier };
  for (const threshold of ACCURACY_THRESHOLDS) {
    // Accuracies are counts over the test set: 0.94 * 10000 is 9400 correct, not 9399.99.
    if (!(threshold in reached) && Math.round(testAccuracy * 1e6) >= threshold * 1e4) {
      reached[threshold] = trainSeconds;
    }
  }
  return reached;
}

/** The first epoch of the highest test accuracy: the one best.safetensors holds. */
export function bestEpoch(history: readonly EpochRecord[]): EpochRecord | undefined {
  return history.reduce<EpochRecord | undefined>(
    (best, record) => best === undefined || record.testAccuracy > best.testAccuracy ? record : best,
    undefined,
  );
}
