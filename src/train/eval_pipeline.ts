/**
 * The input kernel feeding an evaluation plan: batches of a GPU-resident data set gathered and
 * normalised (no augmentation) into the plan's input, one submit per batch. The evaluator and
 * the predictor both run on it.
 */
import type { Gpu } from "../gpu/device.ts";
import { encodeCommands } from "../gpu/dispatch.ts";
import { createTensor, type Tensor } from "../gpu/tensor.ts";
import { CIFAR10_MEAN, CIFAR10_STD, type GpuDataset } from "../data/gpu_dataset.ts";
import type { ModelWeights } from "../model/weights.ts";
import type { KernelPolicy } from "../ops/policy.ts";
import type { ActivationDType } from "../ops/shape.ts";
import { StepPlan } from "../plan/plan.ts";
import { BatchSource } from "./batch_source.ts";

export interface EvalPipelineOptions {
  batchSize: number;
  /** Index of the data set's image that batch 0 starts at; batches follow in order. */
  first: number;
  metrics: Tensor;
  confusion: Tensor;
  /** Where the plan writes its logits, when the caller reads them. */
  logits?: Tensor;
  /** The activations' element type (default f32; f16 needs shader-f16). */
  precision?: ActivationDType;
  /**
   * 2 for test-time augmentation with flips: each image and its mirror go through the network,
   * and the loss averages their logits. Default 1.
   */
  views?: 1 | 2;
}

export class EvalPipeline {
  readonly plan: StepPlan;
  readonly source: BatchSource;
  readonly #gpu: Gpu;
  readonly #tensors: Tensor[];

  private constructor(gpu: Gpu, plan: StepPlan, source: BatchSource, tensors: Tensor[]) {
    this.#gpu = gpu;
    this.plan = plan;
    this.source = source;
    this.#tensors = tensors;
  }

  static async create(
    gpu: Gpu,
    weights: ModelWeights,
    dataset: GpuDataset,
    policy: KernelPolicy,
    options: EvalPipelineOptions,
  ): Promise<EvalPipeline> {
    const { batchSize, first, metrics, confusion, logits, views = 1 } = options;
    const input = createTensor(
      gpu,
      `evaluation input (batch ${batchSize}${views > 1 ? `, ${views} views` : ""})`,
      [views * batchSize, 32, 32, 3],
      options.precision ?? "f32",
    );
    const labels = createTensor(gpu, `evaluation labels (batch ${batchSize})`, [batchSize], "u32");
    const source = await BatchSource.create(gpu, dataset, {
      batchSize,
      augment: false,
      views,
      mean: CIFAR10_MEAN,
      std: CIFAR10_STD,
      input,
      labels,
    });
    // Batch b reads order[b * batchSize ...]: the identity, rotated so that batch 0 starts at
    // `first` (a remainder plan's batch is the tail of the data set).
    source.setOrder(
      Uint32Array.from({ length: dataset.count }, (_, i) => (first + i) % dataset.count),
    );
    const plan = await StepPlan.build(
      gpu,
      weights,
      "eval",
      {
        input,
        labels,
        metrics,
        confusion,
        logits,
      },
      policy,
      { views },
    );
    return new EvalPipeline(gpu, plan, source, [input, labels]);
  }

  /**
   * An encoder holding batch `batch`'s input kernel and forward pass, for the caller to add to
   * (copies of the logits) and submit. The batch's uniform is written now, ordered before that
   * submit.
   */
  encode(batch: number): GPUCommandEncoder {
    this.source.prepareBatch(batch, 0, 0);
    const encoder = this.#gpu.device.createCommandEncoder();
    encodeCommands(encoder, [...this.source.commands, ...this.plan.commands]);
    return encoder;
  }

  /** Bytes of GPU memory beyond the model's weights and the data set. */
  get memoryBytes(): number {
    return this.plan.memory.activations + this.plan.memory.workspaces + this.source.gpuBytes +
      this.#tensors.reduce((sum, tensor) => sum + tensor.buffer.size, 0);
  }

  destroy(): void {
    this.plan.destroy();
    this.source.destroy();
    for (const tensor of this.#tensors) tensor.buffer.destroy();
  }
}
