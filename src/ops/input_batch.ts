/**
 * The input batch (shaders/input_batch.wgsl): one call gathers a batch of a GPU-resident CIFAR data
 * set by an order of indices, normalises it and (for training) augments it with a random crop
 * (zero or reflect padding), a horizontal flip and optionally Cutout, drawn from a stateless hash
 * of (seed, epoch, index); for evaluation it can add each image's mirror as a second view
 * (test-time augmentation). `augmentationDraw` is the kernel's draw on the CPU, bit for bit.
 */
import {
  type KernelCall,
  kernelCall,
  linearGrid,
  read,
  uniform,
  write,
} from "../gpu/kernel_call.ts";
import type { TensorDesc } from "../gpu/tensor.ts";
import { activationKernel, kernels } from "../shaders.ts";
import { activationDtype, expectTensor, ShapeError } from "./shape.ts";

/** Side of a CIFAR image in pixels. */
export const IMAGE_SIZE = 32;
/** u32 words of one image's 3072 bytes. */
export const IMAGE_WORDS = 768;
/** The per-batch uniform: (order offset, seed, epoch), u32 each. */
export const BATCH_PARAMS_SHAPE = [3] as const;
/** RandomCrop(32, padding=4): offsets 0..8 into the padded 40x40 image. */
const CROP_CHOICES = 2 * 4 + 1;
/** The kernel's CUTOUT_SALT: Cutout's hash is pcg_hash(crop hash ^ salt). */
const CUTOUT_SALT = 0x9e3779b9;
/** One invocation per output pixel; 32 to 256 measured alike on lavapipe (bench/input_batch.ts). */
const WORKGROUP_SIZE = 64;

export type ChannelValues = readonly [number, number, number];

export interface InputBatchTensors {
  /**
   * The data set's images, [images, 768] u32 words, in one or two chunks split at an image
   * boundary (WebGPU caps a binding at 128 MiB, below CIFAR-10 train's 153.6 MB).
   */
  imageChunks: readonly TensorDesc[];
  /** [count] u32 */
  datasetLabels: TensorDesc;
  /** [count] u32: a permutation of the data set's indices. */
  order: TensorDesc;
  /** u32 [3] uniform: BATCH_PARAMS_SHAPE. */
  batchParams: TensorDesc;
  /**
   * [views * batch, 32, 32, 3] NHWC, f32 or f16 (the network's activation type): the network's
   * input; rows batch..2 * batch - 1 are the mirror images of rows 0..batch - 1 when views is 2.
   */
  input: TensorDesc;
  /** [batch] u32: the labels, once whatever the views. */
  labels: TensorDesc;
}

/** How RandomCrop pads: black pixels (raw 0), or torchvision's padding_mode="reflect". */
export type CropPadding = "zero" | "reflect";

export interface InputBatchConfig {
  /** Random crop with 4 pixels of padding and horizontal flip (training only). */
  augment: boolean;
  /** The crop's padding (read with augment only); default "zero". */
  padding?: CropPadding;
  /**
   * Side of Cutout's square (0..32, with augment only), set to 0 after normalisation after the crop
   * and flip; default 0, no Cutout.
   */
  cutout?: number;
  /** 2 adds each image's mirror as a second view (evaluation only, without augment); default 1. */
  views?: 1 | 2;
  /** Per-channel (RGB) mean and standard deviation of the pixels scaled to 0..1. */
  mean: ChannelValues;
  std: ChannelValues;
}

export function inputBatch(t: InputBatchTensors, config: InputBatchConfig): KernelCall[] {
  const op = "input batch";
  const { imageChunks, datasetLabels, order, batchParams, input, labels } = t;
  if (imageChunks.length < 1 || imageChunks.length > 2) {
    throw new ShapeError(
      `${op}: the kernel binds one or two image chunks, got ${imageChunks.length}`,
    );
  }
  const count = imageChunks.reduce((sum, chunk) => sum + chunk.shape[0], 0);
  for (const chunk of imageChunks) expectTensor(op, chunk, [chunk.shape[0], IMAGE_WORDS], "u32");
  expectTensor(op, datasetLabels, [count], "u32");
  expectTensor(op, order, [count], "u32");
  expectTensor(op, batchParams, BATCH_PARAMS_SHAPE, "u32");
  const { augment, padding = "zero", cutout = 0, views = 1, mean, std } = config;
  checkAugmentation(augment, padding, cutout, views);
  const dtype = activationDtype(op, input);
  const batch = labels.shape[0];
  expectTensor(op, labels, [batch], "u32");
  expectTensor(op, input, [views * batch, IMAGE_SIZE, IMAGE_SIZE, 3], dtype);
  if (
    std.some((value) => !(value > 0 && Number.isFinite(value))) ||
    mean.some((value) => !Number.isFinite(value))
  ) {
    throw new RangeError(
      `${op}: normalisation needs finite means and positive standard deviations, got mean ` +
        `[${mean}] and std [${std}]`,
    );
  }
  // A one-chunk data set binds its chunk twice; both bindings are read-only.
  const [firstChunk, secondChunk = firstChunk] = imageChunks;
  return [kernelCall({
    kernel: activationKernel(kernels.inputBatch, dtype),
    entryPoint: "gather",
    workgroupSize: WORKGROUP_SIZE,
    constants: {
      BATCH: batch,
      FIRST_CHUNK_IMAGES: firstChunk.shape[0],
      AUGMENT: augment ? 1 : 0,
      REFLECT_PADDING: padding === "reflect" ? 1 : 0,
      CUTOUT: cutout,
      VIEWS: views,
      MEAN_R: mean[0],
      MEAN_G: mean[1],
      MEAN_B: mean[2],
      STD_R: std[0],
      STD_G: std[1],
      STD_B: std[2],
    },
    grid: linearGrid(views * batch * IMAGE_SIZE * IMAGE_SIZE, WORKGROUP_SIZE),
    bindings: [
      read(firstChunk),
      read(secondChunk),
      read(datasetLabels),
      read(order),
      uniform(batchParams),
      write(input),
      write(labels),
    ],
  })];
}

/**
 * The augmentation options the kernel takes: a padding it knows, a Cutout side in 0..32 and 1 or 2
 * views; Cutout is a training augmentation and the mirror view an evaluation one. Exported for
 * callers that check a recipe before building anything.
 */
export function checkAugmentation(
  augment: boolean,
  padding: CropPadding,
  cutout: number,
  views: number,
): void {
  const op = "input batch";
  if (padding !== "zero" && padding !== "reflect") {
    throw new RangeError(
      `${op}: padding must be "zero" or "reflect", got ${JSON.stringify(padding)}`,
    );
  }
  if (!Number.isInteger(cutout) || cutout < 0 || cutout > IMAGE_SIZE) {
    throw new RangeError(`${op}: cutout must be an integer in 0..${IMAGE_SIZE}, got ${cutout}`);
  }
  if (cutout > 0 && !augment) {
    throw new RangeError(`${op}: cutout ${cutout} is a training augmentation, it needs augment`);
  }
  if (views !== 1 && views !== 2) {
    throw new RangeError(`${op}: views must be 1 or 2, got ${views}`);
  }
  if (views === 2 && augment) {
    throw new RangeError(
      `${op}: views 2 (the image and its mirror) is for evaluation, without augment`,
    );
  }
}

/**
 * One sample's augmentation: crop offsets into the padded 40x40 image, the mirror flag, and the
 * centre of Cutout's square in the cropped and mirrored image (drawn whether Cutout is on or not).
 */
export interface AugmentationDraw {
  /** 0..8; 4 is the uncropped image. */
  offsetX: number;
  offsetY: number;
  flip: boolean;
  /** 0..31: Cutout's square of side S spans columns cutoutX - floor(S / 2) + 0..S - 1. */
  cutoutX: number;
  /** 0..31, rows alike. */
  cutoutY: number;
}

/** The kernel's `augmentation_draw` for data set image `index`, bit for bit. */
export function augmentationDraw(seed: number, epoch: number, index: number): AugmentationDraw {
  const hash = pcgHash(
    (checkU32("index", index) + seedEpochHash(seed, epoch)) >>> 0,
  );
  const cutoutHash = pcgHash((hash ^ CUTOUT_SALT) >>> 0);
  return {
    offsetX: hash % CROP_CHOICES,
    offsetY: Math.floor(hash / CROP_CHOICES) % CROP_CHOICES,
    flip: (Math.floor(hash / (CROP_CHOICES * CROP_CHOICES)) & 1) === 1,
    cutoutX: cutoutHash % IMAGE_SIZE,
    cutoutY: Math.floor(cutoutHash / IMAGE_SIZE) % IMAGE_SIZE,
  };
}

/** Mixes (seed, epoch) into one word; the kernel does the same in `augmentation_draw`. */
export function seedEpochHash(seed: number, epoch: number): number {
  return pcgHash((checkU32("epoch", epoch) + pcgHash(checkU32("seed", seed))) >>> 0);
}

/** The kernel's `pcg_hash` in u32 arithmetic (Math.imul wraps the products as WGSL does). */
function pcgHash(value: number): number {
  const state = (Math.imul(value, 747796405) + 2891336453) >>> 0;
  const word = Math.imul((state >>> ((state >>> 28) + 4)) ^ state, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

/** The kernel takes seeds, epochs and indices as u32: anything else would be silently wrapped. */
export function checkU32(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new RangeError(`${name} must be an integer in 0..2^32-1, got ${value}`);
  }
  return value;
}
