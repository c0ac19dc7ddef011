/**
 * The training loop's engine: the training split resident on the GPU, the static training plan,
 * the optimizer over the parameter arena, and one submit per step. The CPU's work per step is
 * two tiny uniform writes and the encoding; per epoch, one shuffled order upload.
 */
import { UserError } from "../errors.ts";
import type { Gpu } from "../gpu/device.ts";
import { createTensor, type Tensor } from "../gpu/tensor.ts";
import type { CifarSplit } from "../data/cifar.ts";
import { CIFAR10_MEAN, CIFAR10_STD, epochOrder, GpuDataset } from "../data/gpu_dataset.ts";
import {
  createMetrics,
  type Metrics,
  readMetrics,
  resetMetrics,
} from "../ops/softmax_cross_entropy.ts";
import type { KernelPolicy } from "../ops/policy.ts";
import type { CropPadding } from "../ops/input_batch.ts";
import type { ActivationDType } from "../ops/shape.ts";
import type { ModelWeights } from "../model/weights.ts";
import { StepPlan } from "../plan/plan.ts";
import { BatchSource } from "./batch_source.ts";
import { type TrainingControl, untilRunning } from "./control.ts";
import type { LossScaleConfig, LossScaleState } from "./loss_scale.ts";
import { checkPrecision } from "./precision.ts";
import { Optimizer, type OptimizerConfig } from "./optimizer.ts";
import type { Schedule } from "./schedule.ts";
import { type StepReadback, StepRunner } from "./step_runner.ts";
import { AVERAGE_STATE_NAMES, WeightAverage } from "./weight_average.ts";
import type { OptimizerState } from "../model/checkpoint.ts";

export interface TrainerOptions {
  batchSize: number;
  /** Random crop and flip (src/ops/input_batch.ts), with `padding` and `cutout`. */
  augment: boolean;
  /** What the crop's padding holds; default zero (black). */
  padding?: CropPadding;
  /** Cutout's side in pixels; default 0 (off). */
  cutout?: number;
  /** Label smoothing of the loss; default 0. */
  labelSmoothing?: number;
  /** Decay of the exponential moving average of the weights kept beside them; default none. */
  ema?: number;
  optimizer: OptimizerConfig;
  /** Learning rate per optimizer step. */
  schedule: Schedule;
  /** Seeds the data order and the augmentation draws. */
  seed: number;
  /** Read the running metrics back every this many steps. */
  readEvery?: number;
  /** Picks the kernel variants of the plan. */
  policy: KernelPolicy;
  /**
   * The element type of activations and their gradients (default f32). f16 needs `shader-f16`
   * and trains with dynamic loss scaling.
   */
  precision?: ActivationDType;
  /** f16 only: loss-scaling settings other than GradScaler's defaults (tests). */
  lossScaling?: LossScaleConfig;
}

/** An epoch's metrics, and with loss scaling the scale and skipped-step count at its end. */
export interface EpochMetrics extends Metrics {
  lossScale?: LossScaleState;
}

/** Where an epoch stands: reported after every submitted step, without waiting for the GPU. */
export interface EpochProgress {
  /** Steps submitted to the GPU so far. */
  submitted: number;
  /** Steps known to be done: those the latest readback covers (the GPU may be further on). */
  done: number;
  steps: number;
  /** Images in the submitted steps. */
  images: number;
  /** Metrics summed over the `done` steps; undefined before the first readback. */
  metrics?: Metrics;
  /** With loss scaling: the state as of the latest readback. */
  lossScale?: LossScaleState;
}

/** Raised when the loss stops being finite; the message says what to change. */
export class TrainingDivergedError extends UserError {
  override name = "TrainingDivergedError";
}

export class Trainer {
  readonly weights: ModelWeights;
  readonly optimizer: Optimizer;
  /** With `ema`: the moving average of the weights. */
  readonly average?: WeightAverage;
  readonly plan: StepPlan;
  readonly stepsPerEpoch: number;
  readonly batchSize: number;
  readonly #gpu: Gpu;
  readonly #options: TrainerOptions;
  readonly #dataset: GpuDataset;
  readonly #source: BatchSource;
  readonly #metrics: Tensor;
  readonly #tensors: Tensor[];
  readonly #runner: StepRunner;

  private constructor(
    gpu: Gpu,
    weights: ModelWeights,
    options: TrainerOptions,
    parts: {
      dataset: GpuDataset;
      source: BatchSource;
      plan: StepPlan;
      optimizer: Optimizer;
      average?: WeightAverage;
      metrics: Tensor;
      tensors: Tensor[];
    },
  ) {
    this.average = parts.average;
    this.#gpu = gpu;
    this.weights = weights;
    this.#options = options;
    this.#dataset = parts.dataset;
    this.#source = parts.source;
    this.plan = parts.plan;
    this.optimizer = parts.optimizer;
    this.#metrics = parts.metrics;
    this.#tensors = parts.tensors;
    this.batchSize = options.batchSize;
    // Like PyTorch's drop_last: every step sees a full batch, so the plan stays static.
    this.stepsPerEpoch = Math.floor(parts.dataset.count / options.batchSize);
    this.#runner = new StepRunner(gpu, parts.metrics, {
      readEvery: options.readEvery,
      lossScale: parts.optimizer.lossScale,
    });
  }

  static async create(
    gpu: Gpu,
    weights: ModelWeights,
    split: CifarSplit,
    options: TrainerOptions,
  ): Promise<Trainer> {
    if (split.count < options.batchSize) {
      throw new RangeError(
        `the training set has ${split.count} images, fewer than one batch of ${options.batchSize}: use a smaller --batch-size`,
      );
    }
    const precision = options.precision ?? "f32";
    checkPrecision(gpu, precision);
    if (options.lossScaling && precision !== "f16") {
      throw new RangeError("trainer: loss scaling is for f16 training (precision f16)");
    }
    const dataset = GpuDataset.create(gpu, split, "training images");
    const n = options.batchSize;
    const input = createTensor(gpu, "training input", [n, 32, 32, 3], precision);
    const labels = createTensor(gpu, "training labels", [n], "u32");
    const metrics = createMetrics(gpu, "training metrics");
    const source = await BatchSource.create(gpu, dataset, {
      batchSize: n,
      augment: options.augment,
      padding: options.padding,
      cutout: options.cutout,
      mean: CIFAR10_MEAN,
      std: CIFAR10_STD,
      input,
      labels,
    });
    // f16 gradients need loss scaling (f32 ones have the range not to).
    const optimizer = await Optimizer.create(
      gpu,
      { params: weights.params, grads: weights.grads, size: weights.parameterLayout.size },
      options.optimizer,
      precision === "f16" ? { lossScaling: options.lossScaling ?? {} } : {},
    );
    const plan = await StepPlan.build(
      gpu,
      weights,
      "train",
      { input, labels, metrics, lossScale: optimizer.lossScale },
      options.policy,
      { labelSmoothing: options.labelSmoothing },
    );
    const average = options.ema === undefined
      ? undefined
      : await WeightAverage.create(gpu, weights, options.ema);
    return new Trainer(gpu, weights, options, {
      dataset,
      source,
      plan,
      optimizer,
      average,
      metrics,
      tensors: [input, labels],
    });
  }

  /** GPU memory by purpose, in bytes. */
  memory(): Record<string, number> {
    const w = this.weights;
    return {
      parameters: w.params.size,
      gradients: w.grads.size,
      "batch-norm statistics": w.state.size + w.counters.size,
      "optimizer state": this.optimizer.stateBytes(),
      ...this.average && {
        "weight average": this.average.average.params.size + this.average.average.state.size,
      },
      activations: this.plan.memory.activations,
      workspaces: this.plan.memory.workspaces,
      "training images": this.#dataset.gpuBytes,
      "input batch": this.#tensors.reduce((sum, t) => sum + t.buffer.size, 0),
    };
  }

  /**
   * Trains one epoch (0-based `epoch` picks the data order) and returns its metrics summed over
   * every step. Throws TrainingDivergedError as soon as a readback shows a non-finite loss.
   * `onProgress` hears of every step as it is submitted (the GPU is not waited for), with the
   * steps done and the metrics as of the latest readback. Between steps `control` may hold the
   * epoch paused, or abort it: then the steps submitted are waited for and the abort's reason is
   * thrown.
   */
  async trainEpoch(
    epoch: number,
    onProgress?: (progress: EpochProgress) => void,
    control?: TrainingControl,
  ): Promise<EpochMetrics> {
    resetMetrics(this.#gpu, this.#metrics);
    this.#source.setOrder(epochOrder(this.#options.seed, epoch, this.#dataset.count));
    this.#runner.restart();
    const groups = [
      this.#source.commands,
      this.plan.commands,
      this.optimizer.commands,
      this.average?.commands ?? [],
    ];
    let latest: StepReadback | undefined;
    try {
      for (let step = 0; step < this.stepsPerEpoch; step++) {
        await untilRunning(control);
        this.#source.prepareBatch(step, this.#options.seed, epoch);
        this.optimizer.prepareStep(this.#options.schedule(this.optimizer.step));
        this.#runner.submit(groups);
        // Reported before any wait, so the first step shows at once.
        onProgress?.(this.#progress(step + 1, latest));
        const readback = await this.#runner.collect();
        if (readback) {
          latest = { ...readback, metrics: this.#check(readback.metrics, epoch, step + 1) };
          onProgress?.(this.#progress(step + 1, latest));
        }
      }
    } catch (error) {
      // Nothing may still run on the GPU when the caller destroys what the steps use.
      await this.#runner.drain().catch(() => {
        // The error that stopped the epoch is the one to report.
      });
      throw error;
    }
    await this.#runner.drain();
    const metrics = this.#check(
      await readMetrics(this.#gpu, this.#metrics),
      epoch,
      this.stepsPerEpoch,
    );
    const lossScale = await this.optimizer.readLossScale();
    onProgress?.(this.#progress(this.stepsPerEpoch, { metrics, lossScale }));
    return lossScale ? { ...metrics, lossScale } : metrics;
  }

  #progress(submitted: number, readback: StepReadback | undefined): EpochProgress {
    // The metrics count the images of the steps they cover: full batches only.
    const done = readback ? readback.metrics.samples / this.batchSize : 0;
    return {
      submitted,
      done,
      steps: this.stepsPerEpoch,
      images: submitted * this.batchSize,
      metrics: readback?.metrics,
      lossScale: readback?.lossScale,
    };
  }

  /** `metrics`, unless its loss is not finite: then training stops. */
  #check(metrics: Metrics, epoch: number, step: number): Metrics {
    if (!Number.isFinite(metrics.lossSum)) {
      throw new TrainingDivergedError(
        `the training loss became ${metrics.lossSum} in epoch ${
          epoch + 1
        } (by step ${step} of ${this.stepsPerEpoch}): ` +
          "lower the learning rate (--lr) or use a schedule with warm-up",
      );
    }
    return metrics;
  }

  /**
   * Call once the model's weights are set (initialised or loaded): a new run's average starts
   * at them.
   */
  startAverage(): void {
    this.average?.restart();
  }

  /** The optimizer's state, and the weight average's arenas among its buffers. */
  async exportState(): Promise<OptimizerState> {
    const state = await this.optimizer.exportState();
    if (this.average) Object.assign(state.buffers, await this.average.exportState());
    return state;
  }

  /** Restores what exportState saved; `source` names the checkpoint in errors. */
  importState(state: OptimizerState, source: string): void {
    const names: string[] = Object.values(AVERAGE_STATE_NAMES);
    const buffers = Object.fromEntries(
      Object.entries(state.buffers).filter(([name]) => !names.includes(name)),
    );
    this.optimizer.importState({ ...state, buffers });
    this.average?.importState(state.buffers, source);
  }

  destroy(): void {
    this.average?.destroy();
    this.#runner.destroy();
    this.plan.destroy();
    this.optimizer.destroy();
    this.#source.destroy();
    this.#dataset.destroy();
    for (const tensor of [...this.#tensors, this.#metrics]) tensor.buffer.destroy();
  }
}
