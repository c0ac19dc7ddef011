/**
 * A training run's folder: metrics.jsonl (one JSON line per epoch), last.safetensors (rewritten
 * every epoch), best.safetensors (the best test accuracy so far) and chart.svg. Every file is
 * replaced whole or appended to by whole lines, so a run stopped at any moment leaves a folder
 * that --resume can continue.
 */
import { dirname, join } from "node:path";
import { z } from "zod";
import { appendJsonLine, writeFileAtomic } from "../io/atomic.ts";
import { UsageError } from "../errors.ts";
import { renderTrainingChart } from "./chart.ts";

/** One epoch's line of metrics.jsonl; a checkpoint's metadata holds every epoch's, in order. */
export const epochRecordSchema = z.object({
  /** From 1. */
  epoch: z.number().int().min(1),
  /** Optimizer steps taken by the end of the epoch. */
  step: z.number().int().min(0),
  /** The learning rate of the epoch's last step. */
  lr: z.number(),
  /** Mean over the epoch's training batches, as the weights changed. */
  trainLoss: z.number(),
  /** Fraction correct, 0..1. */
  trainAccuracy: z.number(),
  /** Over the whole test set, after the epoch. */
  testLoss: z.number(),
  testAccuracy: z.number(),
  /** Training images per second, evaluation not counted. */
  imagesPerSecond: z.number(),
  /** Seconds since the run began, training and evaluation, over every resumed part. */
  elapsedSeconds: z.number(),
});
export type EpochRecord = z.infer<typeof epochRecordSchema>;

const METRICS = "metrics.jsonl";
const LAST = "last.safetensors";
const BEST = "best.safetensors";
const CHART = "chart.svg";

export class RunDirectory {
  readonly metricsPath: string;
  readonly lastCheckpointPath: string;
  readonly bestCheckpointPath: string;
  readonly chartPath: string;

  private constructor(readonly path: string, readonly chartTitle: string) {
    this.metricsPath = join(path, METRICS);
    this.lastCheckpointPath = join(path, LAST);
    this.bestCheckpointPath = join(path, BEST);
    this.chartPath = join(path, CHART);
  }

  /**
   * Opens `path` for a run, creating the folder. A folder that already holds a run is refused
   * unless `resuming` says this is that run going on: its files would be overwritten.
   */
  static async open(path: string, chartTitle: string, resuming: boolean): Promise<RunDirectory> {
    const run = new RunDirectory(path, chartTitle);
    if (!resuming) {
      for (const file of [run.lastCheckpointPath, run.metricsPath]) {
        if (await exists(file)) {
          throw new UsageError(
            `${path} already holds a run (${file}): continue it with --resume ${path}, or ` +
              "choose another --run-dir",
          );
        }
      }
    }
    await Deno.mkdir(path, { recursive: true });
    return run;
  }

  /**
   * Makes metrics.jsonl and the chart say what the checkpoint a run resumes from says, dropping
   * lines of epochs written after it (a run resumed from best.safetensors, or one stopped
   * between its checkpoint and its metrics line).
   */
  async restart(history: readonly EpochRecord[]): Promise<void> {
    await writeFileAtomic(
      this.metricsPath,
      history.map((record) => JSON.stringify(record) + "\n").join(""),
    );
    await this.#writeChart(history);
  }

  /**
   * Records a finished epoch: the checkpoint first (so a metrics line never runs ahead of a
   * checkpoint), also as best.safetensors when `best`, then the metrics line and the chart.
   */
  async saveEpoch(
    checkpoint: Uint8Array,
    history: readonly EpochRecord[],
    best: boolean,
  ): Promise<void> {
    await writeFileAtomic(this.lastCheckpointPath, checkpoint);
    if (best) await writeFileAtomic(this.bestCheckpointPath, checkpoint);
    await appendJsonLine(this.metricsPath, history[history.length - 1]);
    await this.#writeChart(history);
  }

  async #writeChart(history: readonly EpochRecord[]): Promise<void> {
    await writeFileAtomic(this.chartPath, renderTrainingChart(history, this.chartTitle));
  }
}

/** Where --resume continues from: a run folder's last checkpoint, or a checkpoint file. */
export interface ResumeTarget {
  checkpointPath: string;
  /** The folder the checkpoint is in: the run goes on there unless --run-dir says otherwise. */
  runDir: string;
}

export async function resumeTarget(path: string): Promise<ResumeTarget> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new UsageError(`--resume ${path}: no such run folder or checkpoint file`);
    }
    throw error;
  }
  if (!info.isDirectory) return { checkpointPath: path, runDir: dirname(path) };
  const checkpointPath = join(path, LAST);
  if (!await exists(checkpointPath)) {
    throw new UsageError(
      `--resume ${path}: the folder has no ${LAST} (no epoch of that run finished)`,
    );
  }
  return { checkpointPath, runDir: path };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}
