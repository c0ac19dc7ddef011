/**
 * The epoch loop of the train command: train an epoch, evaluate on the whole test set, record the
 * epoch in the run folder, print one line. It starts fresh or from a checkpoint of the same run;
 * since the data order and the augmentation are functions of (seed, epoch) and the schedule of
 * the step, a run resumed at an epoch boundary computes what the uninterrupted run would have.
 */
import type { Gpu } from "../gpu/device.ts";
import type { CifarSplit } from "../data/cifar.ts";
import {
  type Checkpoint,
  CHECKPOINT_FORMAT,
  encodeCheckpoint,
  loadModelStateDict,
  type OptimizerState,
} from "../model/checkpoint.ts";
import type { ResNetConfig } from "../model/config.ts";
import { countParameters } from "../model/parameters.ts";
import { ModelWeights } from "../model/weights.ts";
import { evaluateWithProgress, Evaluator } from "./evaluator.ts";
import {
  compilingKernels,
  formatBytes,
  formatDuration,
  formatRate,
  ProgressBar,
  type ProgressOutput,
} from "./progress.ts";
import type { EpochRecord } from "./history.ts";
import type { RunDirectory } from "./run_dir.ts";
import { Trainer, type TrainerOptions, TrainingDivergedError } from "./trainer.ts";

/** Where a resumed run picks up: a checkpoint of it, with its optimizer state. */
export interface ResumePoint {
  checkpoint: Checkpoint & { optimizer: OptimizerState };
  /** The checkpoint's path, for messages. */
  source: string;
  /** Its epochs so far, from its metadata. */
  history: EpochRecord[];
}

export interface TrainingRunOptions {
  gpu: Gpu;
  model: ResNetConfig;
  /** How the header names the model, e.g. "resnet18 width 0.25". */
  modelName: string;
  trainSet: CifarSplit;
  testSet: CifarSplit;
  /** Where the data came from, for the header. */
  dataLocation: string;
  epochs: number;
  /** Stop after this epoch (from 1), to be resumed later; default `epochs`. */
  stopAfter?: number;
  trainer: Omit<TrainerOptions, "readEvery">;
  evalBatchSize: number;
  runDir: RunDirectory;
  /** Stored beside the history in every checkpoint's `training` metadata, for --resume. */
  settings: Record<string, unknown>;
  resume?: ResumePoint;
  log: (line: string) => void;
  /**
   * Where the progress bars and the "compiling kernels" line are drawn (default stderr, only
   * when it is a terminal).
   */
  progressOutput?: ProgressOutput;
}

/** Runs the epochs from the start or the resume point; returns the whole run's history. */
export async function runTraining(options: TrainingRunOptions): Promise<EpochRecord[]> {
  const { gpu, trainer: trainerOptions, resume, runDir } = options;
  const weights = new ModelWeights(gpu, options.model);
  let trainer: Trainer | undefined;
  let evaluator: Evaluator | undefined;
  try {
    // Building the plans compiles their kernels: seconds, with nothing else to show meanwhile.
    const compiled = await compilingKernels("the training and evaluation plans", async () => {
      trainer = await Trainer.create(gpu, weights, options.trainSet, trainerOptions);
      evaluator = await Evaluator.create(
        gpu,
        weights,
        options.testSet,
        options.evalBatchSize,
        trainerOptions.policy,
      );
      return { trainer, evaluator };
    }, { output: options.progressOutput });
    trainer = compiled.value.trainer;
    evaluator = compiled.value.evaluator;
    if (resume) {
      loadModelStateDict(weights, resume.checkpoint.tensors, resume.source);
      trainer.optimizer.importState(resume.checkpoint.optimizer);
      await runDir.restart(resume.history);
    } else {
      weights.initialize(trainerOptions.seed);
    }
    printHeader(options, trainer, evaluator, compiled.seconds);
    return await runEpochs(options, trainer, evaluator);
  } finally {
    trainer?.destroy();
    evaluator?.destroy();
    weights.destroy();
  }
}

/** The run's header: the model, the kernels and their compile time, memory, data, run folder. */
function printHeader(
  options: TrainingRunOptions,
  trainer: Trainer,
  evaluator: Evaluator,
  compileSeconds: number,
): void {
  const { log, resume } = options;
  const memory = { ...trainer.memory(), evaluation: evaluator.memoryBytes };
  const total = Object.values(memory).reduce((sum, bytes) => sum + bytes, 0);
  const parts = Object.entries(memory).map(([what, bytes]) => `${what} ${formatBytes(bytes)}`);
  const parameters = countParameters(trainer.weights.architecture).toLocaleString("en-US");
  log(`model: ${options.modelName}, ${parameters} parameters`);
  log(`kernels: ${options.trainer.policy.describe()}`);
  log(`kernels compiled in ${compileSeconds.toFixed(1)} s (training and evaluation plans)`);
  log(`GPU memory: ${formatBytes(total)} planned (${parts.join(", ")})`);
  log(
    `data: ${options.dataLocation} (${options.trainSet.count} training images, ` +
      `${options.testSet.count} test images)`,
  );
  log(
    resume
      ? `run: ${options.runDir.path}, resuming after epoch ${resume.history.length} from ${resume.source}`
      : `run: ${options.runDir.path}`,
  );
}

async function runEpochs(
  options: TrainingRunOptions,
  trainer: Trainer,
  evaluator: Evaluator,
): Promise<EpochRecord[]> {
  const { epochs, runDir, log } = options;
  const history = [...options.resume?.history ?? []];
  // The checkpoint to name if training diverges: the newest one written from finite weights.
  let lastGood = options.resume &&
    { path: options.resume.source, epoch: options.resume.history.length };
  const startedAt = performance.now() / 1000;
  const elapsedBefore = history.at(-1)?.elapsedSeconds ?? 0;
  for (let epoch = history.length; epoch < (options.stopAfter ?? epochs); epoch++) {
    const label = `epoch ${epoch + 1}/${epochs}`;
    const bar = new ProgressBar(label, trainer.stepsPerEpoch, { output: options.progressOutput });
    const trainStart = performance.now() / 1000;
    let train;
    try {
      train = await trainer.trainEpoch(epoch, ({ submitted, done, metrics }) =>
        bar.update({
          submitted,
          done,
          items: submitted * trainer.batchSize,
          loss: metrics && metrics.samples > 0 ? metrics.lossSum / metrics.samples : undefined,
        }));
    } catch (error) {
      bar.clear();
      if (error instanceof TrainingDivergedError) throw diverged(error.message, lastGood);
      throw error;
    }
    bar.clear();
    const trainSeconds = performance.now() / 1000 - trainStart;
    const test = await evaluateWithProgress(evaluator, `${label} test`, options.progressOutput);
    // The last step's update is not in the training loss: it may still have broken the weights.
    if (!Number.isFinite(test.loss)) {
      throw diverged(
        `the test loss became ${test.loss} after epoch ${epoch + 1}: lower the learning rate ` +
          "(--lr) or use a schedule with warm-up",
        lastGood,
      );
    }
    const record: EpochRecord = {
      epoch: epoch + 1,
      step: trainer.optimizer.step,
      lr: options.trainer.schedule(trainer.optimizer.step - 1),
      trainLoss: train.lossSum / train.samples,
      trainAccuracy: train.correct / train.samples,
      testLoss: test.loss,
      testAccuracy: test.accuracy,
      ...train.lossScale && {
        lossScale: train.lossScale.scale,
        skippedSteps: train.lossScale.skippedSteps,
      },
      imagesPerSecond: train.samples / trainSeconds,
      elapsedSeconds: elapsedBefore + performance.now() / 1000 - startedAt,
    };
    const best = history.every((earlier) => record.testAccuracy > earlier.testAccuracy);
    history.push(record);
    const checkpoint = await encodeTrainingCheckpoint(options, trainer, history);
    await runDir.saveEpoch(checkpoint, history, best);
    lastGood = { path: runDir.lastCheckpointPath, epoch: record.epoch };
    log(epochLine(label, record));
  }
  return history;
}

/** Weights, optimizer state, and in the metadata all that --resume needs. */
async function encodeTrainingCheckpoint(
  options: TrainingRunOptions,
  trainer: Trainer,
  history: EpochRecord[],
): Promise<Uint8Array> {
  const { epoch, step } = history[history.length - 1];
  return await encodeCheckpoint(
    trainer.weights,
    {
      format: CHECKPOINT_FORMAT,
      model: options.model,
      epoch,
      step,
      seed: options.trainer.seed,
      training: { ...options.settings, history },
      kernels: options.trainer.policy.choices(),
    },
    await trainer.optimizer.exportState(),
  );
}

/** The divergence, and which checkpoint is still good (it was never overwritten). */
function diverged(
  problem: string,
  lastGood: { path: string; epoch: number } | undefined,
): TrainingDivergedError {
  const keep = lastGood
    ? `the last good checkpoint is ${lastGood.path} (epoch ${lastGood.epoch}), left as it was`
    : "nothing was saved, since no epoch ended with finite weights";
  return new TrainingDivergedError(`${problem}; ${keep}`);
}

/**
 * "epoch 2/4  train loss 1.2345 acc 55.10%  test loss 1.1111 acc 60.02%  563 img/s  1:23", with
 * "loss scale 32768 (3 steps skipped)" before the rate in f16 training (skipped: since the run
 * began).
 */
export function epochLine(label: string, record: EpochRecord): string {
  const percent = (fraction: number) => `${(fraction * 100).toFixed(2)}%`;
  const scaling = record.lossScale === undefined ? [] : [
    `loss scale ${record.lossScale} (${record.skippedSteps} step${
      record.skippedSteps === 1 ? "" : "s"
    } skipped)`,
  ];
  return [
    label,
    `train loss ${record.trainLoss.toFixed(4)} acc ${percent(record.trainAccuracy)}`,
    `test loss ${record.testLoss.toFixed(4)} acc ${percent(record.testAccuracy)}`,
    ...scaling,
    formatRate(record.imagesPerSecond, "img"),
    `elapsed ${formatDuration(record.elapsedSeconds)}`,
  ].join("  ");
}
