/**
 * A CIFAR split resident on the GPU, uploaded once as bytes, and the order of each epoch: the
 * input batch kernel (src/ops/input_batch.ts) gathers every batch from it, so no image passes
 * through the CPU per batch.
 */
import { BufferLimitError, uploadBuffer } from "../gpu/buffer.ts";
import type { Gpu } from "../gpu/device.ts";
import { type Tensor, tensorFromData } from "../gpu/tensor.ts";
import { type ChannelValues, IMAGE_WORDS, seedEpochHash } from "../ops/input_batch.ts";

import { Random } from "../util/random.ts";
import { type CifarSplit, IMAGE_BYTES } from "./cifar.ts";

/** The usual per-channel mean and standard deviation of CIFAR-10's training images (RGB, 0..1). */
export const CIFAR10_MEAN: ChannelValues = [0.4914, 0.4822, 0.4465];
export const CIFAR10_STD: ChannelValues = [0.2470, 0.2435, 0.2616];

/** The kernel binds two image chunks (see shaders/input_batch.wgsl). */
const MAX_CHUNKS = 2;

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
      // The bytes as they are, read by the kernel as little-endian u32 words.
      imageChunks.push({
        label: chunkLabel,
        shape: [chunkCount, IMAGE_WORDS],
        dtype: "u32",
        offset: 0,
        buffer: uploadBuffer(gpu, chunkLabel, bytes),
      });
    }
    const labelTensor = tensorFromData(gpu, `${label} labels`, [count], Uint32Array.from(labels));
    return new GpuDataset(label, count, imageChunks, labelTensor);
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
