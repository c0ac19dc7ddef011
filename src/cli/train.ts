/**
 * `deno task train`: trains a ResNet on CIFAR-10 into a run folder (see src/train/run_dir.ts), or
 * with --resume continues a run exactly where it stopped.
 */
import { resolve } from "node:path";
import { z } from "zod";
import type { Gpu } from "../gpu/device.ts";
import { requestGpu } from "../gpu/deno_device.ts";
import { CheckpointError } from "../io/safetensors.ts";
import { decodeCheckpoint } from "../model/checkpoint.ts";
import { type ModelConfig, modelConfig } from "../model/config.ts";
import { type KernelChoices, KernelPolicy } from "../ops/policy.ts";
import { kernelPolicyFor } from "../plan/autotune.ts";
import { type ResumePoint, runTraining } from "../train/loop.ts";
import { RECORDS_PER_FILE } from "../data/cifar.ts";
import { FileWriteError, removePendingTemporaryFiles } from "../io/atomic.ts";
import { bestEpoch, type EpochRecord, epochRecordSchema } from "../train/history.ts";
import { resumeTarget, RunDirectory } from "../train/run_dir.ts";
import { checkPrecision } from "../train/precision.ts";
import { checkRecipe, evalViews, trainingPlan, unusedSettings } from "../train/settings.ts";
import { describeAdapter, describeModel } from "./describe.ts";
import { STDERR, terminalEvents } from "./terminal.ts";
import { loadData } from "./data.ts";
import {
  type CommandLine,
  flagName,
  formatFlag,
  helpText,
  parseCommandLine,
  recipeFlags,
  trainCommand,
  type TrainRecipe,
  trainRecipeSchema,
} from "./flags.ts";
import { UsageError } from "../errors.ts";
import { runCli } from "./run.ts";

type TrainFlags = typeof trainCommand.flags;
type ParsedTrainFlags = Extract<CommandLine<TrainFlags>, { help: false }>;

/** What a training checkpoint's `training` metadata holds: all that --resume needs. */
const trainingStateSchema = z.object({
  recipe: trainRecipeSchema,
  data: trainCommand.flags.data.schema,
  evalBatchSize: trainCommand.flags.evalBatchSize.schema,
  testLimit: trainCommand.flags.testLimit.schema,
  history: z.array(epochRecordSchema),
});

/** A run to start or continue, with every setting decided. */
interface RunSettings {
  recipe: TrainRecipe;
  data: string;
  evalBatchSize: number;
  testLimit?: number;
  kernels: ParsedTrainFlags["values"]["kernels"];
  /** The kernel choices a resumed run was computing with, unless --kernels overrides them. */
  storedKernels?: KernelChoices;
  runDir: string;
  stopAfter?: number;
  resume?: ResumePoint;
  /** Whether the run goes on in the folder it was started in, rewriting its files. */
  continuesInPlace: boolean;
}

/** CIFAR-10's training and test images, before --limit and --test-limit. */
const TRAIN_IMAGES = 5 * RECORDS_PER_FILE;
const TEST_IMAGES = RECORDS_PER_FILE;

export async function runTrain(args: string[], log = console.log): Promise<void> {
  const line = parseCommandLine(trainCommand, args);
  if (line.help) return log(helpText(trainCommand));
  const settings = line.values.resume === undefined
    ? newRunSettings(line)
    : await resumedRunSettings(line, line.values.resume);
  const { recipe } = settings;
  // Every check of the flags together comes first, before the data, the run folder and the GPU.
  const stopAfter = lastEpochToRun(settings);
  const model = modelConfig(recipe.model, recipe.width);
  checkImageLimits(recipe.limit ?? TRAIN_IMAGES, settings.testLimit ?? TEST_IMAGES);
  trainingPlan(recipe, recipe.limit ?? TRAIN_IMAGES);

  // The data before the run folder: a download handles its own Ctrl-C (removing what it made),
  // which the run folder's handler, exiting at once, would cut short.
  const data = await loadData(settings.data, { train: recipe.limit, test: settings.testLimit });
  const plan = trainingPlan(recipe, data.train.count);
  const runDir = await RunDirectory.open(settings.runDir, {
    chartTitle: `${describeModel(model)} on CIFAR-10`,
    continuing: settings.continuesInPlace,
    resumeSource: settings.resume?.source,
  });
  const interrupts = releaseOnInterrupt(runDir, () => savedAndNext(runDir, settings));
  const events = terminalEvents(log, { epochs: recipe.epochs, output: STDERR });
  try {
    const gpu = await requestGpu({ largestBuffers: true });
    // Before any plan is built: an f16 run on an adapter without shader-f16 stops here.
    checkPrecision(gpu, recipe.precision);
    log(`adapter: ${describeAdapter(gpu)}`);
    log(`settings: ${describeRecipe(recipe)}`);
    const history = await runTraining({
      gpu,
      model,
      modelName: describeModel(model),
      trainSet: data.train,
      testSet: data.test,
      dataLocation: settings.data,
      epochs: recipe.epochs,
      stopAfter,
      trainer: {
        ...plan,
        policy: await kernelPolicy(gpu, settings, { model, testImages: data.test.count }, log),
      },
      evalBatchSize: settings.evalBatchSize,
      evalViews: evalViews(recipe),
      store: runDir,
      settings: {
        recipe,
        data: settings.data,
        evalBatchSize: settings.evalBatchSize,
        testLimit: settings.testLimit,
      },
      resume: settings.resume,
      events,
    });
    log(bestLine(history, runDir));
    log(`chart: ${runDir.chartPath}`);
    if (stopAfter < recipe.epochs) {
      log(
        `stopped after epoch ${stopAfter} of ${recipe.epochs}: continue with ` +
          `deno task train --resume ${runDir.path}`,
      );
    }
  } catch (error) {
    // A bar cut short by the error is erased before the error is printed.
    events.clear();
    const next = continueCommand(runDir, settings);
    if (error instanceof FileWriteError && next !== undefined) {
      // What was saved before is intact (every file is replaced whole): say how to go on.
      throw new FileWriteError(
        error.path,
        error.code,
        `${error.message}; then continue with ${next}`,
        error,
      );
    }
    throw error;
  } finally {
    interrupts.remove();
    runDir.release();
  }
}

/**
 * "best test accuracy 61.20% after epoch 3: runs/x/best.safetensors", naming the file that holds
 * that epoch's weights, or saying that none does (a checkpoint of the run removed by hand, or
 * not copied along when the run was resumed into another folder).
 */
export function bestLine(history: readonly EpochRecord[], runDir: RunDirectory): string {
  const best = bestEpoch(history)!;
  const accuracy = `best test accuracy ${(best.testAccuracy * 100).toFixed(2)}% after epoch ` +
    best.epoch;
  const path = runDir.checkpointOf(best.epoch);
  if (path !== undefined) return `${accuracy}: ${path}`;
  const held = runDir.bestCheckpointEpoch;
  return `${accuracy} (no checkpoint of that epoch was kept; ${runDir.bestCheckpointPath} ` +
    (held === undefined ? "holds no epoch of this run)" : `holds epoch ${held})`);
}

/**
 * The command that continues the run from what is saved now, if anything is: the run folder
 * once an epoch was saved there, else the checkpoint it was resumed from.
 */
function continueCommand(runDir: RunDirectory, settings: RunSettings): string | undefined {
  if (runDir.epochsSaved > 0) return `deno task train --resume ${runDir.path}`;
  if (settings.resume === undefined) return undefined;
  const { source } = settings.resume;
  if (resolve(source) === resolve(runDir.lastCheckpointPath)) {
    return `deno task train --resume ${runDir.path}`;
  }
  return `deno task train --resume ${source}` +
    (settings.continuesInPlace ? "" : ` --run-dir ${runDir.path}`);
}

/**
 * Until `remove()`: on Ctrl-C (or SIGTERM), removes the temporary files of the writes under way,
 * releases the run folder (removing it if this run made it and saved nothing), prints
 * `whatNext()` and exits. Without it the process would die in the middle of a write, leaving its
 * temporary file behind.
 */
export function releaseOnInterrupt(
  runDir: RunDirectory,
  whatNext: () => string,
): { remove(): void } {
  // Windows has no SIGTERM to listen for.
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  const listeners = signals.map((signal) => {
    const listener = () => {
      // Synchronous up to the exit: no other code runs, so no write starts meanwhile.
      removePendingTemporaryFiles();
      runDir.release();
      const erase = Deno.stderr.isTerminal() ? "\r\x1b[2K" : "";
      console.error(`${erase}stopped by ${signal}: ${whatNext()}`);
      Deno.exit(signal === "SIGINT" ? 130 : 143);
    };
    Deno.addSignalListener(signal, listener);
    return { signal, listener };
  });
  return {
    remove() {
      for (const { signal, listener } of listeners) Deno.removeSignalListener(signal, listener);
    },
  };
}

/** After an interruption: what is saved, and how to go on. */
function savedAndNext(runDir: RunDirectory, settings: RunSettings): string {
  const next = continueCommand(runDir, settings);
  if (next === undefined) return "no epoch had finished, nothing was kept";
  const saved = runDir.epochsSaved > 0
    ? `epoch ${(settings.resume?.history.length ?? 0) + runDir.epochsSaved} is saved`
    : "no new epoch had finished";
  return `${saved}; continue with ${next}`;
}

/** --limit and --test-limit against CIFAR-10's images, as loadData checks them. */
function checkImageLimits(train: number, test: number): void {
  if (train > TRAIN_IMAGES) {
    throw new UsageError(`--limit ${train} is more than the ${TRAIN_IMAGES} training images`);
  }
  if (test > TEST_IMAGES) {
    throw new UsageError(`--test-limit ${test} is more than the ${TEST_IMAGES} test images`);
  }
}

/** --stop-after, checked against the epochs done and planned; by default the last epoch. */
function lastEpochToRun(settings: RunSettings): number {
  const { epochs } = settings.recipe;
  const done = settings.resume?.history.length ?? 0;
  const stopAfter = settings.stopAfter ?? epochs;
  if (stopAfter <= done || stopAfter > epochs) {
    throw new UsageError(
      `--stop-after ${stopAfter} must come after the ${done} epochs done and be at most ` +
        `--epochs ${epochs}`,
    );
  }
  return stopAfter;
}

/** The recipe flags with the values of a parsed command line (preset, then flags given). */
export function newRunSettings(line: ParsedTrainFlags): RunSettings {
  const { values, given } = line;
  const recipe = Object.fromEntries(
    Object.keys(recipeFlags).map((key) => [key, values[key as keyof TrainRecipe]]),
  ) as TrainRecipe;
  for (const [key, purpose] of unusedSettings(recipe)) {
    if (given.has(key)) {
      throw new UsageError(`${flagName(key)} has no effect here: it is for ${purpose}`);
    }
  }
  checkRecipe(recipe);
  return {
    recipe,
    data: values.data,
    evalBatchSize: values.evalBatchSize,
    testLimit: values.testLimit,
    kernels: values.kernels,
    runDir: values.runDir,
    stopAfter: values.stopAfter,
    continuesInPlace: false,
  };
}

/** The settings of the run that `resume` names; only flags that leave its numbers alone apply. */
async function resumedRunSettings(line: ParsedTrainFlags, resume: string): Promise<RunSettings> {
  const { values, given, preset } = line;
  // --precision may repeat the run's own (checked below), like no other recipe flag.
  const fixed = preset === undefined
    ? [...given].find((key) => key in recipeFlags && key !== "precision")
    : "preset";
  if (fixed !== undefined) {
    throw new UsageError(
      `${flagName(fixed)} cannot be given with --resume: a resumed run keeps its settings ` +
        "(start a new run to change them)",
    );
  }
  const target = await resumeTarget(resume);
  const source = target.checkpointPath;
  const checkpoint = decodeCheckpoint(await Deno.readFile(source), source);
  const state = trainingStateSchema.safeParse(checkpoint.metadata?.training);
  const { optimizer } = checkpoint;
  if (!state.success || !optimizer) {
    throw new CheckpointError(
      source,
      "holds no training state (it was not written by deno task train), so it cannot be resumed",
    );
  }
  const { recipe, history } = state.data;
  if (given.has("precision") && values.precision !== recipe.precision) {
    throw new UsageError(
      `--precision ${values.precision} conflicts with the run's ${recipe.precision}: a resumed ` +
        "run keeps its precision (leave out --precision, or start a new run)",
    );
  }
  if (history.length !== checkpoint.metadata?.epoch) {
    throw new CheckpointError(source, "its epoch and its metric history disagree (corrupt file)");
  }
  if (history.length >= recipe.epochs) {
    throw new UsageError(
      `${source} has finished all ${recipe.epochs} epochs of its run: nothing to resume`,
    );
  }
  const runDir = given.has("runDir") ? values.runDir : target.runDir;
  return {
    recipe,
    data: given.has("data") ? values.data : state.data.data,
    evalBatchSize: given.has("evalBatchSize") ? values.evalBatchSize : state.data.evalBatchSize,
    testLimit: given.has("testLimit") ? values.testLimit : state.data.testLimit,
    kernels: values.kernels,
    storedKernels: given.has("kernels") ? undefined : checkpoint.metadata?.kernels,
    runDir,
    stopAfter: values.stopAfter,
    resume: { checkpoint: { ...checkpoint, optimizer }, source, history },
    continuesInPlace: resolve(runDir) === resolve(target.runDir),
  };
}

/** The recipe as flags, leaving out those it does not use. */
function describeRecipe(recipe: TrainRecipe): string {
  const unused = unusedSettings(recipe);
  return Object.entries(recipe)
    .filter(([key, value]) => value !== undefined && !unused.has(key as keyof TrainRecipe))
    .map(([key, value]) => formatFlag(key, value))
    .join(" ");
}

/**
 * The kernel policy: a resumed run computes with the kernels it started with (so its numbers are
 * those of an uninterrupted run) unless --kernels is given; a new run takes --kernels, which may
 * tune the training step and the evaluation at their batch sizes.
 */
async function kernelPolicy(
  gpu: Gpu,
  settings: RunSettings,
  network: { model: ModelConfig; testImages: number },
  log: (line: string) => void,
): Promise<KernelPolicy> {
  return settings.storedKernels
    ? KernelPolicy.restoring(settings.storedKernels, gpu)
    : await kernelPolicyFor(
      gpu,
      settings.kernels,
      {
        model: network.model,
        passes: [
          {
            mode: "train",
            batchSize: settings.recipe.batchSize,
            precision: settings.recipe.precision,
          },
          {
            mode: "eval",
            batchSize: Math.min(settings.evalBatchSize, network.testImages),
            precision: settings.recipe.precision,
            views: evalViews(settings.recipe),
          },
        ],
      },
      log,
      STDERR,
    );
}

if (import.meta.main) await runCli(() => runTrain(Deno.args));
