/**
 * Training-step and evaluation throughput of whole networks on synthetic data: forward, backward
 * and optimizer time apart, images/s, and the plan's GPU memory; activations in f32 or
 * (`--precision f16`, with loss scaling) f16. A ResNet trains with Adam at batch 128, ResNet-9 as
 * `--preset fast94` trains it (`benchRecipe`).
 *
 *   deno run --allow-read --allow-env bench/training_step.ts [--quick] [--precision f16]
 */
import { parseArgs } from "node:util";
import type { Gpu } from "../src/gpu/device.ts";
import { requestGpu } from "../src/gpu/deno_device.ts";
import { createTensor, type Tensor, tensorFromData } from "../src/gpu/tensor.ts";
import { parseCommandLine, trainCommand } from "../src/cli/flags.ts";
import { modelConfig, type ModelName } from "../src/model/config.ts";
import { ModelWeights } from "../src/model/weights.ts";
import type { CropPadding } from "../src/ops/input_batch.ts";
import { Optimizer, type OptimizerConfig } from "../src/train/optimizer.ts";
import { trainingPlan } from "../src/train/settings.ts";
import { KernelPolicy } from "../src/ops/policy.ts";
import type { ActivationDType } from "../src/ops/shape.ts";
import { checkPrecision } from "../src/train/precision.ts";
import { createMetrics } from "../src/ops/softmax_cross_entropy.ts";
import { StepPlan } from "../src/plan/plan.ts";
import { Random } from "../src/util/random.ts";
import { formatTable, timeSubmits } from "./timing.ts";

/**
 * What the benchmarks train a model with. A ResNet: Adam at lr 1e-4, batch 128, zero-padded crops,
 * as they always have, so that figures stay comparable with earlier runs. ResNet-9: what
 * `deno task train --preset fast94` runs (SGD with Nesterov momentum and coupled weight decay,
 * reflect-padded crops, Cutout, label smoothing) at its batch of 512, read from the preset itself.
 * The speed depends on which kernels these settings run, not on their values.
 */
export interface BenchRecipe {
  batchSize: number;
  optimizer: OptimizerConfig;
  padding: CropPadding;
  cutout: number;
  labelSmoothing: number;
}

/**
 * Timed trials per measurement, each at least `minMs` long; the figures are their medians, as
 * bench/pytorch_resnet.py's are of its trials, so that the side-by-side scripts compare the same
 * statistic (one trial caught a burst of the shared machine's other load as often as not).
 */
const TRIALS = 3;

/** CIFAR-10's training images: the schedule's step count, which the speed does not depend on. */
const TRAIN_IMAGES = 50_000;

export function benchRecipe(model: ModelName): BenchRecipe {
  if (model !== "resnet9") {
    return {
      batchSize: 128,
      optimizer: { kind: "adam", lr: 1e-4 },
      padding: "zero",
      cutout: 0,
      labelSmoothing: 0,
    };
  }
  const line = parseCommandLine(trainCommand, ["--preset", "fast94"]);
  if (line.help) throw new Error("benchRecipe: the fast94 preset parsed as a request for help");
  const plan = trainingPlan(line.values, TRAIN_IMAGES);
  return {
    batchSize: plan.batchSize,
    optimizer: plan.optimizer,
    padding: plan.padding ?? "zero",
    cutout: plan.cutout ?? 0,
    labelSmoothing: plan.labelSmoothing ?? 0,
  };
}

/** "Adam", "AdamW", "SGD" or "SGD (Nesterov)", for the tables' titles. */
export function describeOptimizer(config: OptimizerConfig): string {
  switch (config.kind) {
    case "adam":
      return "Adam";
    case "adamw":
      return "AdamW";
    case "sgd":
      return config.nesterov ? "SGD (Nesterov)" : "SGD";
  }
}

export interface TrainingStepBenchOptions {
  /** Default ResNet-18 at widths 1/4 and 1. */
  models?: { model: ModelName; width: number }[];
  /** Default: the model's (`benchRecipe`). */
  batchSize?: number;
  /** Shortest timed trial per measurement (the median of TRIALS is reported), in milliseconds. */
  minMs?: number;
  /** Picks the kernel variants (default: the adapter's). */
  policy?: KernelPolicy;
  /** The activations' element type (default f32); f16 trains with loss scaling. */
  precision?: ActivationDType;
}

export interface TrainingStepBenchRow {
  model: string;
  adapter: string;
  precision: ActivationDType;
  batchSize: number;
  /** `describeOptimizer`'s words for the step's optimizer. */
  optimizer: string;
  forwardMs: number;
  backwardMs: number;
  optimizerMs: number;
  trainImagesPerSecond: number;
  evalImagesPerSecond: number;
  /** Bytes: parameters + gradients + Adam state + activations (after reuse) + workspaces. */
  trainingMemory: number;
  activations: number;
  activationsWithoutReuse: number;
}

function syntheticBatch(
  gpu: Gpu,
  batchSize: number,
  precision: ActivationDType,
): { input: Tensor; labels: Tensor } {
  const random = new Random(1);
  const pixels = Array.from({ length: batchSize * 32 * 32 * 3 }, () => random.normal());
  const images = precision === "f16" ? Float16Array.from(pixels) : Float32Array.from(pixels);
  const labels = Uint32Array.from({ length: batchSize }, () => random.integer(10));
  return {
    input: tensorFromData(gpu, "input", [batchSize, 32, 32, 3], images),
    labels: tensorFromData(gpu, "labels", [batchSize], labels),
  };
}

export async function benchTrainingStep(
  gpu: Gpu,
  options: TrainingStepBenchOptions = {},
): Promise<TrainingStepBenchRow[]> {
  const {
    models = [{ model: "resnet18", width: 0.25 }, { model: "resnet18", width: 1 }],
    minMs = 2000,
    policy = KernelPolicy.forAdapter(gpu),
    precision = "f32",
  } = options;
  checkPrecision(gpu, precision);
  const rows: TrainingStepBenchRow[] = [];
  for (const { model, width } of models) {
    const recipe = benchRecipe(model);
    const batchSize = options.batchSize ?? recipe.batchSize;
    const weights = new ModelWeights(gpu, modelConfig(model, width));
    weights.initialize(0);
    const { input, labels } = syntheticBatch(gpu, batchSize, precision);
    const metrics = createMetrics(gpu);
    const confusion = createTensor(gpu, "confusion", [10, 10], "u32");
    const optimizer = await Optimizer.create(
      gpu,
      { params: weights.params, grads: weights.grads, size: weights.parameterLayout.size },
      recipe.optimizer,
      precision === "f16" ? { lossScaling: {} } : {},
    );
    const train = await StepPlan.build(
      gpu,
      weights,
      "train",
      {
        input,
        labels,
        metrics,
        lossScale: optimizer.lossScale,
      },
      policy,
      { labelSmoothing: recipe.labelSmoothing },
    );
    const evaluation = await StepPlan.build(gpu, weights, "eval", {
      input,
      labels,
      metrics,
      confusion,
    }, policy);
    const prepare = () => optimizer.prepareStep(recipe.optimizer.lr);
    const forward = train.commands.slice(0, train.forwardDispatches);
    const timing = { minMs, trials: TRIALS };
    const forwardMs = await timeSubmits(gpu, [forward], timing);
    const stepMs = await timeSubmits(gpu, [train.commands, optimizer.commands], {
      ...timing,
      beforeEach: prepare,
    });
    const optimizerMs = await timeSubmits(gpu, [optimizer.commands], {
      ...timing,
      beforeEach: prepare,
    });
    const evalMs = await timeSubmits(gpu, [evaluation.commands], timing);
    rows.push({
      model: `${model} width ${width}`,
      adapter: gpu.adapterName,
      precision,
      batchSize,
      optimizer: describeOptimizer(recipe.optimizer),
      forwardMs,
      backwardMs: stepMs - forwardMs - optimizerMs,
      optimizerMs,
      trainImagesPerSecond: batchSize / stepMs * 1000,
      evalImagesPerSecond: batchSize / evalMs * 1000,
      trainingMemory: weights.params.size + weights.grads.size + weights.state.size +
        optimizer.stateBytes() +
        train.memory.activations + train.memory.workspaces,
      activations: train.memory.activations,
      activationsWithoutReuse: train.memory.activationsWithoutReuse,
    });
    for (const plan of [train, evaluation]) plan.destroy();
    optimizer.destroy();
    weights.destroy();
    for (const tensor of [input, labels, metrics, confusion]) tensor.buffer.destroy();
  }
  return rows;
}

export function trainingStepTable(rows: TrainingStepBenchRow[]): string {
  const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);
  return formatTable(
    [
      "model",
      "activations",
      "batch",
      "optimizer",
      "forward ms",
      "backward ms",
      "optimizer ms",
      "train img/s",
      "eval img/s",
      "memory MiB",
      "activations MiB (no reuse)",
    ],
    rows.map((row) => [
      row.model,
      row.precision,
      row.batchSize,
      row.optimizer,
      row.forwardMs.toFixed(0),
      row.backwardMs.toFixed(0),
      row.optimizerMs.toFixed(1),
      row.trainImagesPerSecond.toFixed(1),
      row.evalImagesPerSecond.toFixed(1),
      mib(row.trainingMemory),
      `${mib(row.activations)} (${mib(row.activationsWithoutReuse)})`,
    ]),
  );
}

if (import.meta.main) {
  const gpu = await requestGpu({ largestBuffers: true });
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean", default: false },
      precision: { type: "string", default: "f32" },
    },
  });
  const { quick, precision } = values;
  if (precision !== "f32" && precision !== "f16") {
    throw new Error(`--precision ${precision}: use f32 or f16`);
  }
  console.log(`adapter: ${gpu.adapterName}`);
  const policy = KernelPolicy.forAdapter(gpu);
  const rows = await benchTrainingStep(
    gpu,
    quick
      ? {
        models: [{ model: "resnet18", width: 0.125 }],
        batchSize: 32,
        minMs: 200,
        policy,
        precision,
      }
      : { policy, precision },
  );
  console.log(`kernels: ${policy.describe()}`);
  console.log(trainingStepTable(rows));
}
