/**
 * Class probabilities for a handful of images. The images become a GPU data set of their own,
 * which the input kernel normalises as in training (no augmentation) for an evaluation plan that
 * writes its logits out; the softmax and the ranking are done on the CPU.
 */
import { readFloat32 } from "../gpu/buffer.ts";
import type { Gpu } from "../gpu/device.ts";
import { createTensor, type Tensor } from "../gpu/tensor.ts";
import { IMAGE_BYTES } from "../data/cifar.ts";
import { GpuDataset } from "../data/gpu_dataset.ts";
import type { KernelPolicy } from "../ops/policy.ts";
import { createMetrics } from "../ops/softmax_cross_entropy.ts";
import type { ModelWeights } from "../model/weights.ts";
import { EvalPipeline } from "./eval_pipeline.ts";
import type { ActivationDType } from "../ops/shape.ts";
import { checkPrecision } from "./precision.ts";

/** Images per step: enough to amortise the dispatches, few enough to keep activations small. */
const DEFAULT_MAX_BATCH = 64;

export interface PredictorOptions {
  /** The most images per step (default 64); tests make it small to exercise the batching. */
  maxBatch?: number;
  /** The activations' element type (default f32; f16 needs shader-f16). */
  precision?: ActivationDType;
}

export interface ClassProbability {
  classIndex: number;
  probability: number;
}

export class Predictor {
  readonly #gpu: Gpu;
  readonly #count: number;
  readonly #classes: number;
  readonly #dataset: GpuDataset;
  readonly #pipeline: EvalPipeline;
  readonly #logits: Tensor;
  /** Every batch's logits, copied out after each step: [padded count, classes]. */
  readonly #allLogits: Tensor;
  /** The plan's other outputs (metrics, confusion), which prediction does not read. */
  readonly #unread: Tensor[];

  private constructor(
    gpu: Gpu,
    count: number,
    classes: number,
    parts: {
      dataset: GpuDataset;
      pipeline: EvalPipeline;
      logits: Tensor;
      allLogits: Tensor;
      unread: Tensor[];
    },
  ) {
    this.#gpu = gpu;
    this.#count = count;
    this.#classes = classes;
    this.#dataset = parts.dataset;
    this.#pipeline = parts.pipeline;
    this.#logits = parts.logits;
    this.#allLogits = parts.allLogits;
    this.#unread = parts.unread;
  }

  /** Uploads `images` (CIFAR planes, IMAGE_BYTES each) and builds the plan that scores them. */
  static async create(
    gpu: Gpu,
    weights: ModelWeights,
    images: Uint8Array[],
    policy: KernelPolicy,
    options: PredictorOptions = {},
  ): Promise<Predictor> {
    const count = images.length;
    if (count === 0) throw new RangeError("predict: no images given");
    const precision = options.precision ?? "f32";
    checkPrecision(gpu, precision);
    const classes = weights.architecture.config.classes;
    const batch = Math.min(count, options.maxBatch ?? DEFAULT_MAX_BATCH);
    const padded = Math.ceil(count / batch) * batch;
    // The plan is static, so the last batch is filled up with copies of the last image, whose
    // logits are dropped.
    const pixels = new Uint8Array(padded * IMAGE_BYTES);
    for (let i = 0; i < padded; i++) pixels.set(images[Math.min(i, count - 1)], i * IMAGE_BYTES);
    const dataset = GpuDataset.create(
      gpu,
      { images: pixels, labels: new Uint8Array(padded), count: padded },
      "prediction images",
    );
    const logits = createTensor(gpu, "prediction logits", [batch, classes]);
    const metrics = createMetrics(gpu, "prediction metrics");
    const confusion = createTensor(gpu, "prediction confusion", [classes, classes], "u32");
    const pipeline = await EvalPipeline.create(gpu, weights, dataset, policy, {
      batchSize: batch,
      first: 0,
      metrics,
      confusion,
      logits,
      precision,
    });
    return new Predictor(gpu, count, classes, {
      dataset,
      pipeline,
      logits,
      allLogits: createTensor(gpu, "prediction logits, all batches", [padded, classes]),
      unread: [metrics, confusion],
    });
  }

  /** The logits of each image, in the order given. */
  async logits(): Promise<Float32Array[]> {
    const rowBytes = this.#classes * 4;
    const batchBytes = this.#pipeline.source.batchSize * rowBytes;
    for (let batch = 0; batch < this.#pipeline.source.batchesPerEpoch; batch++) {
      const encoder = this.#pipeline.encode(batch);
      encoder.copyBufferToBuffer(
        this.#logits.buffer,
        this.#logits.offset,
        this.#allLogits.buffer,
        batch * batchBytes,
        batchBytes,
      );
      this.#gpu.device.queue.submit([encoder.finish()]);
    }
    const values = await readFloat32(
      this.#gpu,
      this.#allLogits.buffer,
      0,
      this.#count * this.#classes,
    );
    return Array.from(
      { length: this.#count },
      (_, i) => values.subarray(i * this.#classes, (i + 1) * this.#classes),
    );
  }

  destroy(): void {
    this.#pipeline.destroy();
    this.#dataset.destroy();
    for (const tensor of [this.#logits, this.#allLogits, ...this.#unread]) tensor.buffer.destroy();
  }
}

/** The softmax of `logits`, in f64 and shifted by the maximum so that no exponential overflows. */
export function softmax(logits: ArrayLike<number>): number[] {
  const values = Array.from(logits);
  const max = Math.max(...values);
  const exps = values.map((value) => Math.exp(value - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((value) => value / sum);
}

/** The `k` likeliest classes, likeliest first. */
export function topClasses(logits: ArrayLike<number>, k: number): ClassProbability[] {
  return softmax(logits)
    .map((probability, classIndex) => ({ classIndex, probability }))
    .sort((a, b) => b.probability - a.probability)
    .slice(0, k);
}
