/**
 * The input pipeline on the GPU (shaders/input_batch.wgsl): the data set is uploaded once as
 * bytes, and each batch is gathered, normalised and augmented by one dispatch, so the CPU's only
 * work per batch is a 12-byte uniform write and its only work per epoch a permutation.
 */
import { BufferLimitError, createBuffer, uploadBuffer, writeBuffer } from "../gpu/buffer.ts";
import type { Gpu } from "../gpu/device.ts";
import { createDispatch, type Dispatch, linearGrid } from "../gpu/dispatch.ts";
import { createTensor, type Tensor } from "../gpu/tensor.ts";
import { expectShape } from "../ops/shape.ts";
import { kernels } from "../shaders.ts";
import { Random } from "../util/random.ts";
import { type CifarSplit, IMAGE_BYTES } from "./cifar.ts";

export type ChannelValues = readonly [number, number, number];

/** The usual per-channel mean and standard deviation of CIFAR-10's training images (RGB, 0..1). */
export const CIFAR10_MEAN: ChannelValues = [0.4914, 0.4822, 0.4465];
export const CIFAR10_STD: ChannelValues = [0.2470, 0.2435, 0.2616];

/** Side of a CIFAR image in pixels. */
const IMAGE_SIZE = 32;
const IMAGE_WORDS = IMAGE_BYTES / 4;
/** The kernel binds two image chunks (see shaders/input_batch.wgsl). */
const MAX_CHUNKS = 2;
/** RandomCrop(32, padding=4): offsets 0..8 into the padded 40x40 image. */
const CROP_CHOICES = 2 * 4 + 1;
/** One invocation per output pixel; 32 to 256 measured alike on lavapipe (bench/input_batch.ts). */
const WORKGROUP_SIZE = 64;

export interface GpuDatasetOptions {
  /**
   * Largest image chunk in bytes; defaults to the device's limit per binding. Tests pass a
   * small value so that a tiny data set is split the way CIFAR-10's training set is.
   */
  maxChunkBytes?: number;
}

/** A CIFAR split resident on the GPU: its images as packed bytes and its labels as u32. */
export class GpuDataset {
  private constructor(
    readonly label: string,
    readonly count: number,
    /** One or two tensors of [images, 768] u32 words, split at an image boundary. */
    readonly imageChunks: readonly Tensor[],
    /** [count] u32 */
    readonly labels: Tensor,
  ) {}

  /**
   * Uploads `split`. A split larger than one binding (CIFAR-10 train: 153.6 MB against WebGPU's
   * default 128 MiB) goes into two chunks; one that would need more is refused.
   */
  static create(
    gpu: Gpu,
    split: CifarSplit,
    label: string,
    options: GpuDatasetOptions = {},
  ): GpuDataset {
    const { count, images, labels } = split;
    if (!Number.isInteger(count) || count <= 0) {
      throw new RangeError(`${label}: a split needs at least one image, got count ${count}`);
    }
    if (images.length !== count * IMAGE_BYTES || labels.length !== count) {
      throw new RangeError(
        `${label}: ${count} images need ${count * IMAGE_BYTES} image bytes and ${count} ` +
          `labels, got ${images.length} and ${labels.length}`,
      );
    }
    const chunkImages = imagesPerChunk(gpu, label, count, options.maxChunkBytes);
    const imageChunks: Tensor[] = [];
    for (let first = 0; first < count; first += chunkImages) {
      const chunkCount = Math.min(chunkImages, count - first);
      const chunkLabel = `${label} images ${imageChunks.length + 1}`;
      const bytes = images.subarray(first * IMAGE_BYTES, (first + chunkCount) * IMAGE_BYTES);
      imageChunks.push({
        label: chunkLabel,
        shape: [chunkCount, IMAGE_WORDS],
        offset: 0,
        buffer: uploadBuffer(gpu, chunkLabel, bytes),
      });
    }
    const labelTensor: Tensor = {
      label: `${label} labels`,
      shape: [count],
      offset: 0,
      buffer: uploadBuffer(gpu, `${label} labels`, Uint32Array.from(labels)),
    };
    return new GpuDataset(label, count, imageChunks, labelTensor);
  }

  /** Images in the first chunk: the kernel reads indices from here on from the second. */
  get firstChunkImages(): number {
    return this.imageChunks[0].shape[0];
  }

  /** GPU memory held by the images and labels. */
  get gpuBytes(): number {
    return [...this.imageChunks, this.labels].reduce((sum, tensor) => sum + tensor.buffer.size, 0);
  }

  destroy(): void {
    for (const tensor of [...this.imageChunks, this.labels]) tensor.buffer.destroy();
  }
}

/** Whole images per chunk, so that `count` images fit in at most MAX_CHUNKS chunks. */
function imagesPerChunk(
  gpu: Gpu,
  label: string,
  count: number,
  maxChunkBytes = Infinity,
): number {
  const limits = gpu.device.limits;
  const chunkBytes = Math.min(
    maxChunkBytes,
    limits.maxStorageBufferBindingSize,
    limits.maxBufferSize,
  );
  const chunkImages = Math.floor(chunkBytes / IMAGE_BYTES);
  const chunks = Math.ceil(count / chunkImages);
  if (chunks > MAX_CHUNKS) {
    throw new BufferLimitError(
      `${label}: ${count} images (${(count * IMAGE_BYTES / 2 ** 20).toFixed(1)} MiB) need ` +
        `${chunks} chunks of at most ${chunkImages} images (${chunkBytes} bytes per binding), ` +
        `more than the ${MAX_CHUNKS} the input kernel binds: request a device with a larger ` +
        `maxStorageBufferBindingSize and maxBufferSize (requestGpu({ requiredLimits })) or ` +
        `load fewer images`,
    );
  }
  return chunkImages;
}

export interface BatchSourceOptions {
  batchSize: number;
  /** Random crop with 4 pixels of black padding and horizontal flip (training only). */
  augment: boolean;
  /** Per-channel (RGB) mean and standard deviation of the pixels scaled to 0..1. */
  mean: ChannelValues;
  std: ChannelValues;
  /** [batchSize, 32, 32, 3] f32 NHWC: the network's input. */
  input: Tensor;
  /** [batchSize] u32 */
  labels: Tensor;
}

/**
 * Fills the network's input and label tensors with batches of one GPU data set. Per epoch the
 * caller uploads an order with `setOrder`; per batch it calls `prepareBatch` and then submits
 * `dispatches` (before the network's forward, in the same pass). The batch's parameters are one
 * uniform, so each batch needs a submit of its own.
 */
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
    readonly dispatches: readonly Dispatch[],
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
    const { batchSize, augment, mean, std, input, labels } = options;
    if (!Number.isInteger(batchSize) || batchSize <= 0 || batchSize > dataset.count) {
      throw new RangeError(
        `${dataset.label}: batch size must be an integer in 1..${dataset.count}, got ${batchSize}`,
      );
    }
    if (
      std.some((value) => !(value > 0 && Number.isFinite(value))) ||
      mean.some((value) => !Number.isFinite(value))
    ) {
      throw new RangeError(
        `${dataset.label}: normalisation needs finite means and positive standard deviations, ` +
          `got mean [${mean}] and std [${std}]`,
      );
    }
    expectShape("input batch", input, [batchSize, IMAGE_SIZE, IMAGE_SIZE, 3]);
    expectShape("input batch", labels, [batchSize]);

    const order = createTensor(gpu, `${dataset.label} order`, [dataset.count]);
    const paramsLabel = `${dataset.label} batch parameters`;
    const params: Tensor = {
      label: paramsLabel,
      shape: [3],
      offset: 0,
      buffer: createBuffer(gpu, {
        label: paramsLabel,
        size: 12,
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      }),
    };
    const [firstChunk, secondChunk = firstChunk] = dataset.imageChunks;
    const dispatch = await createDispatch(gpu, {
      kernel: kernels.inputBatch,
      entryPoint: "gather",
      label: `${dataset.label} input batch`,
      constants: {
        WORKGROUP_SIZE,
        BATCH: batchSize,
        FIRST_CHUNK_IMAGES: dataset.firstChunkImages,
        AUGMENT: augment ? 1 : 0,
        MEAN_R: mean[0],
        MEAN_G: mean[1],
        MEAN_B: mean[2],
        STD_R: std[0],
        STD_G: std[1],
        STD_B: std[2],
      },
      bindings: [firstChunk, secondChunk, dataset.labels, order, params, input, labels],
      workgroups: linearGrid(batchSize * IMAGE_SIZE * IMAGE_SIZE, WORKGROUP_SIZE),
    });
    return new BatchSource(gpu, dataset, order, params, batchSize, [dispatch]);
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
   * the next submit of `dispatches`.
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

/** One sample's augmentation: crop offsets into the padded 40x40 image, and the mirror flag. */
export interface AugmentationDraw {
  /** 0..8; 4 is the uncropped image. */
  offsetX: number;
  offsetY: number;
  flip: boolean;
}

/** The kernel's `augmentation_draw` for data set image `index`, bit for bit. */
export function augmentationDraw(seed: number, epoch: number, index: number): AugmentationDraw {
  const hash = pcgHash(
    (checkU32("index", index) + seedEpochHash(seed, epoch)) >>> 0,
  );
  return {
    offsetX: hash % CROP_CHOICES,
    offsetY: Math.floor(hash / CROP_CHOICES) % CROP_CHOICES,
    flip: (Math.floor(hash / (CROP_CHOICES * CROP_CHOICES)) & 1) === 1,
  };
}

/** A permutation of 0..count-1 (Fisher–Yates), the same for the same (seed, epoch). */
export function epochOrder(seed: number, epoch: number, count: number): Uint32Array<ArrayBuffer> {
  const order = new Uint32Array(count);
  for (let index = 0; index < count; index++) order[index] = index;
  const random = new Random(seedEpochHash(seed, epoch));
  for (let last = count - 1; last > 0; last--) {
    const other = random.integer(last + 1);
    [order[last], order[other]] = [order[other], order[last]];
  }
  return order;
}

/** Mixes (seed, epoch) into one word; the kernel does the same in `augmentation_draw`. */
function seedEpochHash(seed: number, epoch: number): number {
  return pcgHash((checkU32("epoch", epoch) + pcgHash(checkU32("seed", seed))) >>> 0);
}

/** The kernel's `pcg_hash` in u32 arithmetic (Math.imul wraps the products as WGSL does). */
function pcgHash(value: number): number {
  const state = (Math.imul(value, 747796405) + 2891336453) >>> 0;
  const word = Math.imul((state >>> ((state >>> 28) + 4)) ^ state, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

/** The kernel takes seeds, epochs and indices as u32: anything else would be silently wrapped. */
function checkU32(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new RangeError(`${name} must be an integer in 0..2^32-1, got ${value}`);
  }
  return value;
}
