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
  /** Training images per second, evaluation not counted. */
  imagesPerSecond: z.number(),
  /** Seconds since the run began, training and evaluation, over every resumed part. */
  elapsedSeconds: z.number(),
});
export type EpochRecord = z.infer<typeof epochRecordSchema>;

/** The first epoch of the highest test accuracy: the one best.safetensors holds. */
export function bestEpoch(history: readonly EpochRecord[]): EpochRecord | undefined {
  return history.reduce<EpochRecord | undefined>(
    (best, record) => best === undefined || record.testAccuracy > best.testAccuracy ? record : best,
    undefined,
  );
}
