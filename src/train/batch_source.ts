/**
 * Fills a network's input and label tensors with batches of one GPU data set through the input
 * batch kernel (src/ops/input_batch.ts). Per epoch the caller uploads an order with `setOrder`; per
 * batch it calls `prepareBatch` and then submits `commands` (before the network's forward, in the
 * same pass). The batch's parameters are one uniform, so each batch needs a submit of its own; the
 * CPU's only work per batch is that 12-byte write.
 */
import { createBuffer, writeBuffer } from "../gpu/buffer.ts";
import type { Gpu } from "../gpu/device.ts";
import type { Command } from "../gpu/dispatch.ts";
import { byteSize, createTensor, type Tensor } from "../gpu/tensor.ts";
import type { GpuDataset } from "../data/gpu_dataset.ts";
import {
  BATCH_PARAMS_SHAPE,
  type ChannelValues,
  checkU32,
  type CropPadding,
  inputBatch,
} from "../ops/input_batch.ts";
import { materialize } from "../plan/materialize.ts";

export interface BatchSourceOptions {
  batchSize: number;
  /** Random crop with 4 pixels of padding and horizontal flip (training only). */
  augment: boolean;
  /** The crop's padding, black ("zero", the default) or mirrored ("reflect"); read with augment. */
  padding?: CropPadding;
  /** Side of Cutout's square, 0..32 (with augment only); default 0, no Cutout. */
  cutout?: number;
  /** 2 adds each image's mirror as a second view (evaluation, without augment); default 1. */
  views?: 1 | 2;
  /** Per-channel (RGB) mean and standard deviation of the pixels scaled to 0..1. */
  mean: ChannelValues;
  std: ChannelValues;
  /**
   * [views * batchSize, 32, 32, 3] NHWC, f32 or f16 (the activation type): the network's input,
   * view v of sample n at row v * batchSize + n.
   */
  input: Tensor;
  /** [batchSize] u32 */
  labels: Tensor;
}

export class BatchSource {
  readonly #gpu: Gpu;
  readonly #dataset: GpuDataset;
  readonly #order: Tensor;
  readonly #params: Tensor;
  /** Staging for the uniform's (order offset, seed, epoch); writeBuffer copies it at once. */
  readonly #paramValues = new Uint32Array(3);
  #hasOrder = false;

  private constructor(
    gpu: Gpu,
    dataset: GpuDataset,
    order: Tensor,
    params: Tensor,
    readonly batchSize: number,
    readonly commands: readonly Command[],
  ) {
    this.#gpu = gpu;
    this.#dataset = dataset;
    this.#order = order;
    this.#params = params;
  }

  static async create(
    gpu: Gpu,
    dataset: GpuDataset,
    options: BatchSourceOptions,
  ): Promise<BatchSource> {
    const { batchSize, augment, padding, cutout, views, mean, std, input, labels } = options;
    if (!Number.isInteger(batchSize) || batchSize <= 0 || batchSize > dataset.count) {
      throw new RangeError(
        `${dataset.label}: batch size must be an integer in 1..${dataset.count}, got ${batchSize}`,
      );
    }
    // The kernel takes its batch from the labels; the order offsets come from batchSize.
    if (labels.shape.length !== 1 || labels.shape[0] !== batchSize) {
      throw new RangeError(
        `${dataset.label}: the labels must have shape [${batchSize}] (the batch size), got ` +
          `[${labels.shape}]`,
      );
    }
    const order = createTensor(gpu, `${dataset.label} order`, [dataset.count], "u32");
    const paramsLabel = `${dataset.label} batch parameters`;
    const params: Tensor = {
      label: paramsLabel,
      shape: BATCH_PARAMS_SHAPE,
      dtype: "u32",
      offset: 0,
      buffer: createBuffer(gpu, {
        label: paramsLabel,
        size: byteSize({ shape: BATCH_PARAMS_SHAPE, dtype: "u32" }),
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      }),
    };
    const calls = inputBatch({
      imageChunks: dataset.imageChunks,
      datasetLabels: dataset.labels,
      order,
      batchParams: params,
      input,
      labels,
    }, { augment, padding, cutout, views, mean, std });
    const { commands } = await materialize(gpu, calls, { label: `${dataset.label} input` });
    return new BatchSource(gpu, dataset, order, params, batchSize, commands);
  }

  /** Full batches per epoch; the last `count % batchSize` images of each order are left out. */
  get batchesPerEpoch(): number {
    return Math.floor(this.#dataset.count / this.batchSize);
  }

  /** GPU memory held beside the data set: the order and the uniform. */
  get gpuBytes(): number {
    return this.#order.buffer.size + this.#params.buffer.size;
  }

  /** Uploads the epoch's order of data set indices (`epochOrder`, or the identity to evaluate). */
  setOrder(order: Uint32Array<ArrayBuffer>): void {
    const count = this.#dataset.count;
    if (order.length !== count) {
      throw new RangeError(
        `${this.#dataset.label}: an order must hold all ${count} indices, got ${order.length}`,
      );
    }
    // A bad index would not fault on the GPU (reads are clamped) but train on the wrong image.
    const outOfRange = order.findIndex((index) => index >= count);
    if (outOfRange >= 0) {
      throw new RangeError(
        `${this.#dataset.label}: order[${outOfRange}] = ${order[outOfRange]} is not an index ` +
          `below ${count}`,
      );
    }
    writeBuffer(this.#gpu, this.#order.buffer, order, this.#order.offset);
    this.#hasOrder = true;
  }

  /**
   * Selects batch `batch` of the current order and the augmentation draws of (seed, epoch) for
   * the next submit of `commands`.
   */
  prepareBatch(batch: number, seed: number, epoch: number): void {
    if (!this.#hasOrder) {
      throw new Error(`${this.#dataset.label}: call setOrder before the first prepareBatch`);
    }
    if (!Number.isInteger(batch) || batch < 0 || batch >= this.batchesPerEpoch) {
      throw new RangeError(
        `${this.#dataset.label}: batch ${batch} is not in 0..${this.batchesPerEpoch - 1} ` +
          `(${this.#dataset.count} images in batches of ${this.batchSize})`,
      );
    }
    this.#paramValues.set([
      batch * this.batchSize,
      checkU32("seed", seed),
      checkU32("epoch", epoch),
    ]);
    writeBuffer(this.#gpu, this.#params.buffer, this.#paramValues, this.#params.offset);
  }

  /** Frees the order and the uniform; the data set and the output tensors belong to the caller. */
  destroy(): void {
    this.#order.buffer.destroy();
    this.#params.buffer.destroy();
  }
}
