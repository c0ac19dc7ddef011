/**
 * Test-set evaluation on the GPU: the whole split resident, batches gathered by the input
 * kernel, the evaluation plan (BN running statistics, no backward), loss, accuracy and the
 * confusion matrix accumulated on the GPU and read back once.
 */
import { readBuffer, writeBuffer } from "../gpu/buffer.ts";
import type { Gpu } from "../gpu/device.ts";
import { createTensor, type Tensor } from "../gpu/tensor.ts";
import type { CifarSplit } from "../data/cifar.ts";
import { GpuDataset } from "../data/gpu_dataset.ts";
import type { KernelPolicy } from "../ops/policy.ts";
import { createMetrics, readMetrics, resetMetrics } from "../ops/softmax_cross_entropy.ts";
import type { ModelWeights } from "../model/weights.ts";
import { EvalPipeline } from "./eval_pipeline.ts";
import type { ActivationDType } from "../ops/shape.ts";
import { checkPrecision } from "./precision.ts";

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

interface BatchedPipeline {
  pipeline: EvalPipeline;
  batches: number;
  /** Images in each of its batches. */
  batchSize: number;
}

/** Where an evaluation stands: reported after every submitted batch. */
export interface EvaluationProgress {
  /** Batches submitted to the GPU so far. */
  submitted: number;
  /** Batches known to be done, as of the latest wait for the GPU. */
  done: number;
  /** Batches in the whole evaluation. */
  batches: number;
  /** Images in the submitted batches. */
  images: number;
}

export class Evaluator {
  readonly #gpu: Gpu;
  /** The split on the GPU; another Evaluator of the same split may share it. */
  readonly dataset: GpuDataset;
  readonly #ownsDataset: boolean;
  readonly #metrics: Tensor;
  readonly #confusion: Tensor;
  readonly #pipelines: BatchedPipeline[];
  readonly #classes: number;

  private constructor(
    gpu: Gpu,
    dataset: GpuDataset,
    ownsDataset: boolean,
    metrics: Tensor,
    confusion: Tensor,
    pipelines: BatchedPipeline[],
  ) {
    this.#gpu = gpu;
    this.dataset = dataset;
    this.#ownsDataset = ownsDataset;
    this.#metrics = metrics;
    this.#confusion = confusion;
    this.#pipelines = pipelines;
    this.#classes = confusion.shape[0];
  }

  /**
   * `data` is a split, uploaded here, or the GpuDataset of another Evaluator of the same split
   * (say, of the weights' moving average), shared and left to its owner.
   */
  static async create(
    gpu: Gpu,
    weights: ModelWeights,
    data: CifarSplit | GpuDataset,
    batchSize: number,
    policy: KernelPolicy,
    precision: ActivationDType = "f32",
    views: 1 | 2 = 1,
  ): Promise<Evaluator> {
    checkPrecision(gpu, precision);
    const classes = weights.architecture.config.classes;
    const ownsDataset = !(data instanceof GpuDataset);
    const dataset = ownsDataset ? GpuDataset.create(gpu, data, "evaluation images") : data;
    const metrics = createMetrics(gpu, "evaluation metrics");
    const confusion = createTensor(gpu, "confusion matrix", [classes, classes], "u32");
    const size = Math.min(batchSize, dataset.count);
    const full = Math.floor(dataset.count / size);
    const remainder = dataset.count - full * size;
    const pipelines: BatchedPipeline[] = [];
    // The test set is covered exactly: full batches, then one smaller plan for what is left.
    for (const [batch, batches, first] of [[size, full, 0], [remainder, 1, full * size]]) {
      if (batch === 0) continue;
      const pipeline = await EvalPipeline.create(gpu, weights, dataset, policy, {
        batchSize: batch,
        first,
        metrics,
        confusion,
        precision,
        views,
      });
      pipelines.push({ pipeline, batches, batchSize: batch });
    }
    return new Evaluator(gpu, dataset, ownsDataset, metrics, confusion, pipelines);
  }

  /** Bytes of GPU memory the evaluation holds beyond the model's weights. */
  get memoryBytes(): number {
    return (this.#ownsDataset ? this.dataset.gpuBytes : 0) +
      this.#pipelines.reduce((sum, { pipeline }) => sum + pipeline.memoryBytes, 0);
  }

  /** Batches in one evaluation of the split. */
  get batches(): number {
    return this.#pipelines.reduce((sum, { batches }) => sum + batches, 0);
  }

  /**
   * Evaluates the split. With `onProgress`, every batch is reported as it is submitted, and the
   * GPU is waited for about every tenth of the batches (each wait costs milliseconds) to learn
   * how many are done.
   */
  async evaluate(
    onProgress?: (progress: EvaluationProgress) => void,
  ): Promise<EvaluationResult> {
    resetMetrics(this.#gpu, this.#metrics);
    writeBuffer(this.#gpu, this.#confusion.buffer, new Uint32Array(this.#classes ** 2));
    const waitEvery = Math.max(1, Math.ceil(this.batches / 10));
    const progress: EvaluationProgress = {
      submitted: 0,
      done: 0,
      batches: this.batches,
      images: 0,
    };
    for (const { pipeline, batches, batchSize } of this.#pipelines) {
      for (let batch = 0; batch < batches; batch++) {
        this.#gpu.device.queue.submit([pipeline.encode(batch).finish()]);
        progress.submitted++;
        progress.images += batchSize;
        if (!onProgress) continue;
        // Reported before any wait, so the first batch shows at once.
        onProgress({ ...progress });
        if (progress.submitted % waitEvery === 0) {
          await this.#gpu.device.queue.onSubmittedWorkDone();
          progress.done = progress.submitted;
          onProgress({ ...progress });
        }
      }
    }
    const metrics = await readMetrics(this.#gpu, this.#metrics);
    if (progress.done < progress.submitted) onProgress?.({ ...progress, done: progress.submitted });
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
    for (const { pipeline } of this.#pipelines) pipeline.destroy();
    if (this.#ownsDataset) this.dataset.destroy();
    this.#metrics.buffer.destroy();
    this.#confusion.buffer.destroy();
  }
}
