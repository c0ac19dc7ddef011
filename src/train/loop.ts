/**
 * The epoch loop of a training run, the train command's and the browser page's alike: train an
 * epoch, evaluate on the whole test set, save the epoch to the run's store, report it. It starts
 * fresh or from a checkpoint of the same run; since the data order and the augmentation are
 * functions of (seed, epoch) and the schedule of the step, a run resumed at an epoch boundary
 * computes what the uninterrupted run would have.
 *
 * Platform-free: the epochs go to a RunStore (the CLI's run folder, the page's memory), and what
 * is shown of the run (the terminal's bars, the page's charts) is up to the TrainingEvents.
 */
import type { Gpu } from "../gpu/device.ts";
import type { CifarSplit } from "../data/cifar.ts";
import type { GpuDataset } from "../data/gpu_dataset.ts";
import {
  type Checkpoint,
  CHECKPOINT_FORMAT,
  encodeCheckpoint,
  loadModelStateDict,
  type OptimizerState,
} from "../model/checkpoint.ts";
import type { ModelConfig } from "../model/config.ts";
import { countParameters } from "../model/parameters.ts";
import { ModelWeights } from "../model/weights.ts";
import { formatBytes, formatDuration, formatRate } from "../util/format.ts";
import { isAbort, type TrainingControl } from "./control.ts";
import { type EvaluationProgress, type EvaluationResult, Evaluator } from "./evaluator.ts";
import { type EpochRecord, timeToAccuracy } from "./history.ts";
import type { RunStore } from "./run_store.ts";
import {
  type EpochProgress,
  Trainer,
  type TrainerOptions,
  TrainingDivergedError,
} from "./trainer.ts";

export type { TrainingControl } from "./control.ts";

/** What a run tells as it goes: the CLI draws it on the terminal, the page in its DOM. */
export interface TrainingEvents {
  /** Header and epoch lines (the CLI prints them). */
  log(line: string): void;
  /** Building the plans (compiling kernels) begins; `done(seconds)` when it ends. */
  compiling?(what: string): { done(seconds: number): void } | void;
  /** After every submitted training step (0-based epoch), without waiting for the GPU. */
  step?(epoch: number, progress: EpochProgress): void;
  /** After every submitted evaluation batch. */
  evaluating?(epoch: number, progress: EvaluationProgress): void;
  /**
   * After the epoch is evaluated and saved. Awaited: while it runs, `weights` hold the epoch's
   * parameters and may be used (e.g. a Predictor over a few test images).
   */
  epochEnd?(
    record: EpochRecord,
    test: EvaluationResult,
    weights: ModelWeights,
  ): void | Promise<void>;
}

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
  model: ModelConfig;
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
  /** 2 evaluates with test-time augmentation (each image and its mirror); default 1. */
  evalViews?: 1 | 2;
  /** Where the finished epochs go. */
  store: RunStore;
  /** Stored beside the history in every checkpoint's `training` metadata, for --resume. */
  settings: Record<string, unknown>;
  resume?: ResumePoint;
  events: TrainingEvents;
  /** Pauses and stops the run from outside (the page's buttons). */
  control?: TrainingControl;
}

/**
 * Runs the epochs from the start or the resume point; returns the whole run's history. Aborted
 * through `control`, it returns the epochs finished by then, once the GPU has finished the steps
 * submitted and what the run built is destroyed.
 */
export async function runTraining(options: TrainingRunOptions): Promise<EpochRecord[]> {
  const { gpu, trainer: trainerOptions, resume, store, events } = options;
  const weights = new ModelWeights(gpu, options.model);
  let trainer: Trainer | undefined;
  let evaluator: Evaluator | undefined;
  let averageEvaluator: Evaluator | undefined;
  try {
    // Building the plans compiles their kernels: seconds, with nothing else to show meanwhile.
    const compiling = events.compiling?.("the training and evaluation plans");
    const compileStart = seconds();
    let compileSeconds = 0;
    try {
      trainer = await Trainer.create(gpu, weights, options.trainSet, trainerOptions);
      const evaluate = (model: ModelWeights, data: CifarSplit | GpuDataset) =>
        Evaluator.create(
          gpu,
          model,
          data,
          options.evalBatchSize,
          trainerOptions.policy,
          trainerOptions.precision,
          options.evalViews,
        );
      evaluator = await evaluate(weights, options.testSet);
      // The average is evaluated on the same test images, uploaded once.
      if (trainer.average) {
        averageEvaluator = await evaluate(trainer.average.average, evaluator.dataset);
      }
    } finally {
      compileSeconds = seconds() - compileStart;
      if (compiling) compiling.done(compileSeconds);
    }
    if (resume) {
      loadModelStateDict(weights, resume.checkpoint.tensors, resume.source);
      trainer.importState(resume.checkpoint.optimizer, resume.source);
      await store.restart(resume.history);
    } else {
      weights.initialize(trainerOptions.seed);
      trainer.startAverage();
    }
    const evaluators = { model: evaluator, average: averageEvaluator };
    printHeader(options, trainer, evaluators, compileSeconds);
    return await runEpochs(options, trainer, evaluators);
  } finally {
    trainer?.destroy();
    averageEvaluator?.destroy();
    evaluator?.destroy();
    weights.destroy();
  }
}

/** Seconds on a monotonic clock. */
function seconds(): number {
  return performance.now() / 1000;
}

/** The run's header: the model, the kernels and their compile time, memory, data, run folder. */
/** The evaluation of the model, and with --ema of its weights' moving average. */
interface Evaluators {
  model: Evaluator;
  average?: Evaluator;
}

function printHeader(
  options: TrainingRunOptions,
  trainer: Trainer,
  evaluators: Evaluators,
  compileSeconds: number,
): void {
  const { resume } = options;
  const { log } = options.events;
  const memory = {
    ...trainer.memory(),
    evaluation: evaluators.model.memoryBytes + (evaluators.average?.memoryBytes ?? 0),
  };
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
      ? `run: ${options.store.path}, resuming after epoch ${resume.history.length} from ${resume.source}`
      : `run: ${options.store.path}`,
  );
}

async function runEpochs(
  options: TrainingRunOptions,
  trainer: Trainer,
  evaluators: Evaluators,
): Promise<EpochRecord[]> {
  const { epochs, store, events } = options;
  const history = [...options.resume?.history ?? []];
  // The checkpoint to name if training diverges: the newest one written from finite weights.
  let lastGood = options.resume &&
    { path: options.resume.source, epoch: options.resume.history.length };
  // Time spent paused counts neither in the rate nor in the run's elapsed time.
  const pauses = timePauses(options.control);
  const startedAt = seconds();
  const elapsedBefore = history.at(-1)?.elapsedSeconds ?? 0;
  let trainedSeconds = history.at(-1)?.trainSeconds ?? 0;
  for (let epoch = history.length; epoch < (options.stopAfter ?? epochs); epoch++) {
    const trainStart = seconds();
    const pausedBefore = pauses.seconds();
    let train;
    try {
      train = await trainer.trainEpoch(
        epoch,
        (progress) => events.step?.(epoch, progress),
        pauses.control,
      );
    } catch (error) {
      if (error instanceof TrainingDivergedError) throw diverged(error.message, lastGood);
      // The epoch under way is dropped; those finished are saved.
      if (isAbort(options.control, error)) return history;
      throw error;
    }
    const trainSeconds = seconds() - trainStart - (pauses.seconds() - pausedBefore);
    trainedSeconds += trainSeconds;
    const test = await evaluators.model.evaluate((progress) =>
      events.evaluating?.(epoch, progress)
    );
    const averageTest = await evaluators.average?.evaluate();
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
      ...averageTest && { emaTestLoss: averageTest.loss, emaTestAccuracy: averageTest.accuracy },
      ...train.lossScale && {
        lossScale: train.lossScale.scale,
        skippedSteps: train.lossScale.skippedSteps,
      },
      imagesPerSecond: train.samples / trainSeconds,
      trainSeconds: trainedSeconds,
      timeToAccuracy: timeToAccuracy(
        history.at(-1)?.timeToAccuracy,
        test.accuracy,
        trainedSeconds,
      ),
      elapsedSeconds: elapsedBefore + seconds() - startedAt - pauses.seconds(),
    };
    const best = history.every((earlier) => record.testAccuracy > earlier.testAccuracy);
    history.push(record);
    const checkpoint = await encodeTrainingCheckpoint(options, trainer, history);
    await store.saveEpoch(checkpoint, history, best);
    lastGood = { path: store.lastCheckpointPath, epoch: record.epoch };
    events.log(epochLine(`epoch ${epoch + 1}/${epochs}`, record, history.at(-2)));
    await events.epochEnd?.(record, test, trainer.weights);
  }
  return history;
}

/** `control`, with the seconds its pauses have held the run counted. */
function timePauses(control: TrainingControl | undefined): {
  control?: TrainingControl;
  seconds(): number;
} {
  let paused = 0;
  const whenRunning = control?.whenRunning?.bind(control);
  if (!whenRunning) return { control, seconds: () => paused };
  return {
    control: {
      signal: control?.signal,
      whenRunning: async () => {
        const start = seconds();
        try {
          await whenRunning();
        } finally {
          paused += seconds() - start;
        }
      },
    },
    seconds: () => paused,
  };
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
    await trainer.exportState(),
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
export function epochLine(
  label: string,
  record: EpochRecord,
  previous?: EpochRecord,
): string {
  const percent = (fraction: number) => `${(fraction * 100).toFixed(2)}%`;
  const average = record.emaTestAccuracy === undefined
    ? []
    : [`ema loss ${record.emaTestLoss!.toFixed(4)} acc ${percent(record.emaTestAccuracy)}`];
  // Thresholds reached in this epoch: the training time it took.
  const reached = Object.entries(record.timeToAccuracy ?? {})
    .filter(([threshold]) => !(threshold in (previous?.timeToAccuracy ?? {})))
    .map(([threshold, time]) => `reached ${threshold}% in ${time.toFixed(1)} s of training`);
  const scaling = record.lossScale === undefined ? [] : [
    `loss scale ${record.lossScale} (${record.skippedSteps} step${
      record.skippedSteps === 1 ? "" : "s"
    } skipped)`,
  ];
  return [
    label,
    `train loss ${record.trainLoss.toFixed(4)} acc ${percent(record.trainAccuracy)}`,
    `test loss ${record.testLoss.toFixed(4)} acc ${percent(record.testAccuracy)}`,
    ...average,
    ...scaling,
    formatRate(record.imagesPerSecond, "img"),
    `elapsed ${formatDuration(record.elapsedSeconds)}`,
    ...reached,
  ].join("  ");
}
