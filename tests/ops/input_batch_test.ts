import assert from "node:assert/strict";
import { BufferLimitError } from "../../src/gpu/buffer.ts";
import { submitDispatches } from "../../src/gpu/dispatch.ts";
import type { Gpu } from "../../src/gpu/device.ts";
import { type CifarSplit, IMAGE_BYTES } from "../../src/data/cifar.ts";
import {
  CIFAR10_MEAN,
  CIFAR10_STD,
  epochOrder,
  GpuDataset,
  type GpuDatasetOptions,
} from "../../src/data/gpu_dataset.ts";
import { type DType, type TensorDesc, tensorDesc } from "../../src/gpu/tensor.ts";
import {
  augmentationDraw,
  BATCH_PARAMS_SHAPE,
  type ChannelValues,
  IMAGE_WORDS,
  inputBatch,
  type InputBatchTensors,
} from "../../src/ops/input_batch.ts";
import { ShapeError } from "../../src/ops/shape.ts";
import { BatchSource } from "../../src/train/batch_source.ts";
import { gpuTest, poisonedActivation, readTensor, u32Tensor } from "../support/gpu.ts";
import { F16_STORAGE } from "../support/tolerances.ts";
import type { ActivationDType } from "../../src/ops/shape.ts";
import { assertAllClose } from "../support/reference/compare.ts";
import { Random } from "../support/reference/random.ts";

/** f32 rounding of /255, − mean and / std: a few ulp of values up to about 2.1. */
const NORMALISE_TOLERANCE = 1e-6;
const SIZE = 32;
const PAD = 4;

function randomSplit(count: number, seed: number): CifarSplit {
  const random = new Random(seed);
  const images = new Uint8Array(count * IMAGE_BYTES);
  for (let i = 0; i < images.length; i++) images[i] = random.integer(256);
  const labels = new Uint8Array(count);
  for (let i = 0; i < count; i++) labels[i] = random.integer(10);
  return { images, labels, count };
}

interface BatchRequest {
  order: Uint32Array;
  batch: number;
  batchSize: number;
  augment: boolean;
  seed: number;
  epoch: number;
  mean: ChannelValues;
  std: ChannelValues;
}

/**
 * f64 reference, written the way torchvision composes it: pad the 32x32 image to 40x40 with
 * zeros, cut the 32x32 window at the draw's offsets, mirror it, then normalise each channel.
 */
function referenceBatch(split: CifarSplit, request: BatchRequest) {
  const { order, batch, batchSize, augment, seed, epoch, mean, std } = request;
  const input = new Float64Array(batchSize * SIZE * SIZE * 3);
  const labels = new Uint32Array(batchSize);
  for (let n = 0; n < batchSize; n++) {
    const index = order[batch * batchSize + n];
    labels[n] = split.labels[index];
    const draw = augment
      ? augmentationDraw(seed, epoch, index)
      : { offsetX: PAD, offsetY: PAD, flip: false };
    const padded = (c: number, py: number, px: number) => {
      const y = py - PAD, x = px - PAD;
      if (y < 0 || y >= SIZE || x < 0 || x >= SIZE) return 0;
      return split.images[index * IMAGE_BYTES + c * SIZE * SIZE + y * SIZE + x];
    };
    for (let y = 0; y < SIZE; y++) {
      for (let x = 0; x < SIZE; x++) {
        const croppedX = draw.flip ? SIZE - 1 - x : x;
        for (let c = 0; c < 3; c++) {
          const raw = padded(c, y + draw.offsetY, croppedX + draw.offsetX);
          input[((n * SIZE + y) * SIZE + x) * 3 + c] = (raw / 255 - mean[c]) / std[c];
        }
      }
    }
  }
  return { input, labels };
}

/** Builds a source over `split` and returns a function producing one batch on the GPU. */
async function gpuBatches(
  gpu: Gpu,
  split: CifarSplit,
  options: { batchSize: number; augment: boolean; dtype?: ActivationDType } & GpuDatasetOptions,
) {
  const dataset = GpuDataset.create(gpu, split, "test split", options);
  const inputShape = [options.batchSize, SIZE, SIZE, 3];
  const input = poisonedActivation(gpu, "input", inputShape, options.dtype ?? "f32");
  const labels = u32Tensor(gpu, "labels", [options.batchSize], [
    ...new Array(options.batchSize).fill(0xffffffff),
  ]);
  const source = await BatchSource.create(gpu, dataset, {
    ...options,
    mean: CIFAR10_MEAN,
    std: CIFAR10_STD,
    input,
    labels,
  });
  return {
    dataset,
    source,
    async batch(batch: number, seed: number, epoch: number) {
      source.prepareBatch(batch, seed, epoch);
      submitDispatches(gpu, source.dispatches);
      return {
        input: await readTensor(gpu, input),
        labels: new Uint32Array((await readTensor(gpu, labels)).buffer),
      };
    },
  };
}

const SPLIT = randomSplit(37, 11);
const BATCH_SIZE = 5;

// 19 images per chunk gives chunks of 19 and 18, and batch 3 of the identity order (images
// 15..19) spans both; the limit is not a multiple of an image, as the device's is not.
const TWO_CHUNKS = 19 * IMAGE_BYTES + 100;

const REFERENCE_CASES = [
  { augment: false, maxChunkBytes: undefined, dtype: "f32" },
  { augment: false, maxChunkBytes: TWO_CHUNKS, dtype: "f32" },
  { augment: true, maxChunkBytes: undefined, dtype: "f32" },
  { augment: true, maxChunkBytes: TWO_CHUNKS, dtype: "f32" },
  // f16 input: the f32 value rounded to f16 once.
  { augment: true, maxChunkBytes: TWO_CHUNKS, dtype: "f16" },
] as const;

for (const { augment, maxChunkBytes, dtype } of REFERENCE_CASES) {
  const chunks = maxChunkBytes === undefined ? "one chunk" : "two chunks";
  gpuTest(
    `input batch: GPU equals the f64 reference, augment ${augment}, ${chunks}, ${dtype}`,
    async (gpu) => {
      const { dataset, source, batch } = await gpuBatches(gpu, SPLIT, {
        batchSize: BATCH_SIZE,
        augment,
        maxChunkBytes,
        dtype,
      });
      assert.equal(dataset.imageChunks.length, maxChunkBytes === undefined ? 1 : 2);
      assert.equal(source.batchesPerEpoch, 7);
      const identity = Uint32Array.from({ length: SPLIT.count }, (_, i) => i);
      const cases = [
        { order: identity, batch: 3, seed: 7, epoch: 0 },
        { order: epochOrder(7, 2, SPLIT.count), batch: 1, seed: 7, epoch: 2 },
        { order: epochOrder(7, 2, SPLIT.count), batch: 5, seed: 7, epoch: 2 },
        { order: epochOrder(0xffffffff, 9, SPLIT.count), batch: 6, seed: 0xffffffff, epoch: 9 },
      ];
      for (const { order, batch: batchIndex, seed, epoch } of cases) {
        source.setOrder(order);
        const actual = await batch(batchIndex, seed, epoch);
        const expected = referenceBatch(SPLIT, {
          order,
          batch: batchIndex,
          batchSize: BATCH_SIZE,
          augment,
          seed,
          epoch,
          mean: CIFAR10_MEAN,
          std: CIFAR10_STD,
        });
        const what = `batch ${batchIndex} of seed ${seed} epoch ${epoch}`;
        const tolerance = dtype === "f16" ? F16_STORAGE : NORMALISE_TOLERANCE;
        assertAllClose(actual.input, expected.input, tolerance, what);
        assert.deepEqual(actual.labels, expected.labels, `${what}: labels`);
      }
      source.destroy();
      dataset.destroy();
    },
  );
}

gpuTest(
  "input batch: a CIFAR-10-train-sized split fills two chunks within the binding limit",
  async (gpu) => {
    const count = 50000;
    // Every byte of image i is i mod 251, so each gathered pixel names its image.
    const images = new Uint8Array(count * IMAGE_BYTES);
    for (let i = 0; i < count; i++) {
      images.fill(i % 251, i * IMAGE_BYTES, (i + 1) * IMAGE_BYTES);
    }
    const split = { images, labels: new Uint8Array(count).map((_, i) => i % 10), count };
    const { dataset, source, batch } = await gpuBatches(gpu, split, {
      batchSize: 8,
      augment: false,
    });
    const limit = gpu.device.limits.maxStorageBufferBindingSize;
    assert.equal(dataset.imageChunks.length, 2);
    assert.ok(dataset.imageChunks.every((chunk) => chunk.buffer.size <= limit));
    const first = dataset.imageChunks[0].shape[0];
    assert.equal(first, Math.floor(Math.min(limit, gpu.device.limits.maxBufferSize) / IMAGE_BYTES));
    assert.equal(dataset.gpuBytes, count * IMAGE_BYTES + count * 4);

    // An order that puts the four images on each side of the chunk boundary in batch 0.
    const order = Uint32Array.from({ length: count }, (_, i) => (i + first - 4) % count);
    source.setOrder(order);
    const actual = await batch(0, 0, 0);
    for (let n = 0; n < 8; n++) {
      const index = first - 4 + n;
      const raw = Math.round(
        (actual.input[n * SIZE * SIZE * 3] * CIFAR10_STD[0] + CIFAR10_MEAN[0]) * 255,
      );
      assert.equal(raw, index % 251, `sample ${n} (image ${index})`);
      assert.equal(actual.labels[n], index % 10);
    }
    source.destroy();
    dataset.destroy();
  },
);

gpuTest(
  "input batch: a split that needs more than two chunks is refused, naming the fix",
  (gpu) => {
    assert.throws(
      () => GpuDataset.create(gpu, SPLIT, "tiny chunks", { maxChunkBytes: 10 * IMAGE_BYTES }),
      (error) =>
        error instanceof BufferLimitError && /4 chunks/.test(error.message) &&
        /maxStorageBufferBindingSize/.test(error.message),
    );
    return Promise.resolve();
  },
);

gpuTest("input batch: orders, batches and seeds outside their ranges are refused", async (gpu) => {
  const { dataset, source } = await gpuBatches(gpu, SPLIT, {
    batchSize: BATCH_SIZE,
    augment: true,
  });
  assert.throws(() => source.prepareBatch(0, 1, 0), /setOrder/);
  assert.throws(() => source.setOrder(new Uint32Array(36)), /all 37 indices/);
  assert.throws(() => source.setOrder(new Uint32Array(37).fill(37)), /order\[0\] = 37/);
  source.setOrder(epochOrder(1, 0, 37));
  assert.throws(() => source.prepareBatch(7, 1, 0), /batch 7 is not in 0..6/);
  assert.throws(() => source.prepareBatch(0, -1, 0), /seed must be an integer/);
  assert.throws(() => source.prepareBatch(0, 1, 2 ** 32), /epoch must be an integer/);
  source.destroy();
  dataset.destroy();
});

Deno.test("input batch: a tensor of the wrong element type is refused, naming it", () => {
  const [count, batch] = [37, 5];
  const expected: Record<Exclude<keyof InputBatchTensors, "imageChunks">, DType> = {
    datasetLabels: "u32",
    order: "u32",
    batchParams: "u32",
    input: "f32",
    labels: "u32",
  };
  const shapes = {
    datasetLabels: [count],
    order: [count],
    batchParams: [...BATCH_PARAMS_SHAPE],
    input: [batch, SIZE, SIZE, 3],
    labels: [batch],
  };
  type Name = keyof typeof expected;
  const chunk = (label: string, images: number, dtype: DType = "u32") =>
    tensorDesc(label, [images, IMAGE_WORDS], dtype);
  /** The kernel's tensors over two chunks, each of its expected type but `wrong`, as `dtype`. */
  const tensors = (wrong?: Name, dtype?: DType): InputBatchTensors => {
    const make = (name: Name): TensorDesc =>
      tensorDesc(name, shapes[name], name === wrong ? dtype : expected[name]);
    return {
      imageChunks: [chunk("images 1", 19), chunk("images 2", 18)],
      datasetLabels: make("datasetLabels"),
      order: make("order"),
      batchParams: make("batchParams"),
      input: make("input"),
      labels: make("labels"),
    };
  };
  const config = { augment: true, mean: CIFAR10_MEAN, std: CIFAR10_STD };
  const refused = (label: string, dtype: DType, wanted: DType) => (error: unknown) =>
    error instanceof ShapeError &&
    error.message === `input batch: ${label} holds ${dtype} elements, expected ${
        // The input may be f32 or f16, the network's activation type.
        label === "input" ? "f32 or f16 activations" : wanted}`;
  for (const name of Object.keys(expected) as Name[]) {
    const dtype = expected[name] === "f32" ? "u32" : "f32";
    assert.throws(
      () => inputBatch(tensors(name, dtype), config),
      refused(name, dtype, expected[name]),
    );
  }
  // Image bytes as f32 words (say, pixels already converted) are refused too, in either chunk.
  const images = tensors();
  assert.throws(
    () =>
      inputBatch(
        { ...images, imageChunks: [chunk("images 1", 19), chunk("images 2", 18, "f32")] },
        config,
      ),
    refused("images 2", "f32", "u32"),
  );
  assert.throws(
    () => inputBatch({ ...images, imageChunks: [chunk("images 1", 37, "i32")] }, config),
    refused("images 1", "i32", "u32"),
  );
  assert.equal(inputBatch(images, config).length, 1);
  assert.equal(inputBatch({ ...images, imageChunks: [chunk("images", 37)] }, config).length, 1);
});

Deno.test("augmentationDraw: flips half the samples and picks each crop offset 1/9 of the time", () => {
  const samples = 90000;
  const flips = [0, 0];
  const offsetCounts = { x: new Array(9).fill(0), y: new Array(9).fill(0) };
  let sameAcrossEpochs = 0;
  for (let index = 0; index < samples; index++) {
    const draw = augmentationDraw(42, 3, index);
    flips[draw.flip ? 1 : 0]++;
    offsetCounts.x[draw.offsetX]++;
    offsetCounts.y[draw.offsetY]++;
    const next = augmentationDraw(42, 4, index);
    if (
      next.offsetX === draw.offsetX && next.offsetY === draw.offsetY && next.flip === draw.flip
    ) sameAcrossEpochs++;
  }
  // Bounds at about five standard deviations of a binomial frequency over 90,000 samples.
  assert.ok(Math.abs(flips[1] / samples - 0.5) < 0.01, `flip rate ${flips[1] / samples}`);
  for (const [axis, counts] of Object.entries(offsetCounts)) {
    counts.forEach((hits, offset) => {
      const frequency = hits / samples;
      assert.ok(Math.abs(frequency - 1 / 9) < 0.006, `offset ${axis} = ${offset}: ${frequency}`);
    });
  }
  // Independent draws in two epochs coincide with probability 1/162.
  const coincidence = sameAcrossEpochs / samples;
  assert.ok(Math.abs(coincidence - 1 / 162) < 0.002, `same draw in two epochs: ${coincidence}`);
  assert.deepEqual(augmentationDraw(42, 3, 5), augmentationDraw(42, 3, 5));
});

Deno.test("epochOrder: a permutation, the same for the same (seed, epoch), new every epoch", () => {
  const count = 1000;
  const order = epochOrder(5, 0, count);
  assert.deepEqual([...order].sort((a, b) => a - b), Array.from({ length: count }, (_, i) => i));
  assert.deepEqual(epochOrder(5, 0, count), order);
  assert.notDeepEqual(epochOrder(5, 1, count), order);
  assert.notDeepEqual(epochOrder(6, 0, count), order);
  assert.deepEqual(epochOrder(5, 0, 1), Uint32Array.of(0));
});
