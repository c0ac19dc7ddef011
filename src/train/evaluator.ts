/**
 * Test-set evaluation on the GPU: the whole split resident, batches gathered by the input
 * kernel, the evaluation plan (BN running statistics, no backward), loss, accuracy and the
 * confusion matrix accumulated on the GPU and read back once.
 */
import { readBuffer, writeBuffer } from "../gpu/buffer.ts";
import type { Gpu } from "../gpu/device.ts";
import { encodeDispatches } from "../gpu/dispatch.ts";
import { createTensor, type Tensor } from "../gpu/tensor.ts";
import type { CifarSplit } from "../data/cifar.ts";
import { BatchSource, CIFAR10_MEAN, CIFAR10_STD, GpuDataset } from "../data/gpu_dataset.ts";
import { createMetrics, readMetrics, resetMetrics } from "../ops/softmax_cross_entropy.ts";
import type { ModelWeights } from "../model/weights.ts";
import { StepPlan } from "../plan/plan.ts";

export interface EvaluationResult {
  /** Mean cross-entropy over the split. */
  loss: number;
  /** Fraction correct, 0..1. */
  accuracy: number;
  count: number;
  /** confusion[true][predicted] counts. */
  confusion: number[][];
  /** Fraction correct per true class. */
  perClassAccuracy: number[];
}

/** One batch size's plan and the input kernel that feeds it. */
interface EvalBatchPlan {
  plan: StepPlan;
  source: BatchSource;
  batches: number;
  tensors: Tensor[];
}

export class Evaluator {
  readonly #gpu: Gpu;
  readonly #dataset: GpuDataset;
  readonly #metrics: Tensor;
  readonly #confusion: Tensor;
  readonly #plans: EvalBatchPlan[];
  readonly #classes: number;

  private constructor(
    gpu: Gpu,
    dataset: GpuDataset,
    metrics: Tensor,
    confusion: Tensor,
    plans: EvalBatchPlan[],
    classes: number,
  ) {
    this.#gpu = gpu;
    this.#dataset = dataset;
    this.#metrics = metrics;
    this.#confusion = confusion;
    this.#plans = plans;
    this.#classes = classes;
  }

  static async create(
    gpu: Gpu,
    weights: ModelWeights,
    split: CifarSplit,
    batchSize: number,
  ): Promise<Evaluator> {
    const classes = weights.architecture.config.classes;
    const dataset = GpuDataset.create(gpu, split, "evaluation images");
    const metrics = createMetrics(gpu, "evaluation metrics");
    const confusion = createTensor(gpu, "confusion matrix", [classes, classes]);
    const size = Math.min(batchSize, split.count);
    const full = Math.floor(split.count / size);
    const remainder = split.count - full * size;
    const plans: EvalBatchPlan[] = [];
    // The test set is covered exactly: full batches, then one smaller plan for what is left.
    for (const [batch, batches, first] of [[size, full, 0], [remainder, 1, full * size]]) {
      if (batch === 0) continue;
      const input = createTensor(gpu, `evaluation input (batch ${batch})`, [batch, 32, 32, 3]);
      const labels = createTensor(gpu, `evaluation labels (batch ${batch})`, [batch]);
      const source = await BatchSource.create(gpu, dataset, {
        batchSize: batch,
        augment: false,
        mean: CIFAR10_MEAN,
        std: CIFAR10_STD,
        input,
        labels,
      });
      // Batch b reads order[b * batch ...]: the identity, rotated so that batch 0 starts at
      // this plan's first image (the remainder plan's is the tail of the split).
      source.setOrder(
        Uint32Array.from({ length: split.count }, (_, i) => (first + i) % split.count),
      );
      const plan = await StepPlan.build(gpu, weights, "eval", {
        input,
        labels,
        metrics,
        confusion,
      });
      plans.push({ plan, source, batches, tensors: [input, labels] });
    }
    return new Evaluator(gpu, dataset, metrics, confusion, plans, classes);
  }

  /** Bytes of GPU memory the evaluation holds beyond the model's weights. */
  get memoryBytes(): number {
    return this.#dataset.gpuBytes + this.#plans.reduce(
      (sum, { plan, tensors }) =>
        sum + plan.memory.activations + plan.memory.workspaces +
        tensors.reduce((s, t) => s + t.buffer.size, 0),
      0,
    );
  }

  async evaluate(): Promise<EvaluationResult> {
    resetMetrics(this.#gpu, this.#metrics);
    writeBuffer(this.#gpu, this.#confusion.buffer, new Uint32Array(this.#classes ** 2));
    for (const { plan, source, batches } of this.#plans) {
      for (let batch = 0; batch < batches; batch++) {
        // The uniform write is ordered before this submit, so each batch reads its own offset.
        source.prepareBatch(batch, 0, 0);
        const encoder = this.#gpu.device.createCommandEncoder();
        const pass = encoder.beginComputePass();
        encodeDispatches(pass, source.dispatches);
        encodeDispatches(pass, plan.dispatches);
        pass.end();
        this.#gpu.device.queue.submit([encoder.finish()]);
      }
    }
    const metrics = await readMetrics(this.#gpu, this.#metrics);
    const counts = new Uint32Array(await readBuffer(this.#gpu, this.#confusion.buffer));
    const confusion = Array.from(
      { length: this.#classes },
      (_, row) => Array.from(counts.subarray(row * this.#classes, (row + 1) * this.#classes)),
    );
    return {
      loss: metrics.lossSum / metrics.samples,
      accuracy: metrics.correct / metrics.samples,
      count: metrics.samples,
      confusion,
      perClassAccuracy: confusion.map((row, i) =>
        row[i] / Math.max(1, row.reduce((a, b) => a + b, 0))
      ),
    };
  }

  destroy(): void {
    for (const { plan, tensors } of this.#plans) {
      plan.destroy();
      for (const tensor of tensors) tensor.buffer.destroy();
    }
    this.#dataset.destroy();
    this.#metrics.buffer.destroy();
    this.#confusion.buffer.destroy();
  }
}
