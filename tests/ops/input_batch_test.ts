import assert from "node:assert/strict";
import { BufferLimitError } from "../../src/gpu/buffer.ts";
import { submitCommands } from "../../src/gpu/dispatch.ts";
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
  type AugmentationDraw,
  augmentationDraw,
  BATCH_PARAMS_SHAPE,
  type ChannelValues,
  type CropPadding,
  IMAGE_WORDS,
  inputBatch,
  type InputBatchConfig,
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
  padding?: CropPadding;
  cutout?: number;
  views?: 1 | 2;
}

/**
 * numpy's (and so torchvision's) reflect padding of one coordinate, -PAD..SIZE + PAD - 1: mirrored
 * about the edge pixel, which is not repeated.
 */
function reflectIndex(i: number): number {
  if (i < 0) return -i;
  if (i >= SIZE) return 2 * (SIZE - 1) - i;
  return i;
}

/**
 * f64 reference, written the way torchvision composes it: pad the 32x32 image to 40x40 with
 * zeros (or by reflection), cut the 32x32 window at the draw's offsets, mirror it, normalise each
 * channel, then zero Cutout's square, clipped to the image by its loop bounds. A second view is
 * the first one's columns in reverse.
 */
function referenceBatch(split: CifarSplit, request: BatchRequest) {
  const { order, batch, batchSize, augment, seed, epoch, mean, std } = request;
  const { padding = "zero", cutout = 0, views = 1 } = request;
  const input = new Float64Array(views * batchSize * SIZE * SIZE * 3);
  const labels = new Uint32Array(batchSize);
  const at = (n: number, y: number, x: number, c: number) => ((n * SIZE + y) * SIZE + x) * 3 + c;
  for (let n = 0; n < batchSize; n++) {
    const index = order[batch * batchSize + n];
    labels[n] = split.labels[index];
    const draw: AugmentationDraw = augment
      ? augmentationDraw(seed, epoch, index)
      : { offsetX: PAD, offsetY: PAD, flip: false, cutoutX: 0, cutoutY: 0 };
    const padded = (c: number, py: number, px: number) => {
      let y = py - PAD, x = px - PAD;
      if (padding === "reflect") {
        [y, x] = [reflectIndex(y), reflectIndex(x)];
      } else if (y < 0 || y >= SIZE || x < 0 || x >= SIZE) return 0;
      return split.images[index * IMAGE_BYTES + c * SIZE * SIZE + y * SIZE + x];
    };
    for (let y = 0; y < SIZE; y++) {
      for (let x = 0; x < SIZE; x++) {
        const croppedX = draw.flip ? SIZE - 1 - x : x;
        for (let c = 0; c < 3; c++) {
          const raw = padded(c, y + draw.offsetY, croppedX + draw.offsetX);
          input[at(n, y, x, c)] = (raw / 255 - mean[c]) / std[c];
        }
      }
    }
    if (cutout > 0) {
      const top = draw.cutoutY - Math.floor(cutout / 2);
      const left = draw.cutoutX - Math.floor(cutout / 2);
      for (let y = Math.max(top, 0); y < Math.min(top + cutout, SIZE); y++) {
        for (let x = Math.max(left, 0); x < Math.min(left + cutout, SIZE); x++) {
          for (let c = 0; c < 3; c++) input[at(n, y, x, c)] = 0;
        }
      }
    }
    if (views === 2) {
      for (let y = 0; y < SIZE; y++) {
        for (let x = 0; x < SIZE; x++) {
          for (let c = 0; c < 3; c++) {
            input[at(batchSize + n, y, x, c)] = input[at(n, y, SIZE - 1 - x, c)];
          }
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
  options:
    & { batchSize: number; dtype?: ActivationDType }
    & Pick<InputBatchConfig, "augment" | "padding" | "cutout" | "views">
    & GpuDatasetOptions,
) {
  const dataset = GpuDataset.create(gpu, split, "test split", options);
  const inputShape = [(options.views ?? 1) * options.batchSize, SIZE, SIZE, 3];
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
      submitCommands(gpu, source.commands);
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

Deno.test("reflectIndex: numpy's reflect padding, np.pad(arange(32), 4, mode='reflect')", () => {
  const padded = Array.from({ length: SIZE + 2 * PAD }, (_, i) => reflectIndex(i - PAD));
  assert.deepEqual(padded.slice(0, 6), [4, 3, 2, 1, 0, 1]);
  assert.deepEqual(padded.slice(-6), [30, 31, 30, 29, 28, 27]);
});

/** A larger split, for orders that put images with chosen draws in the batches under test. */
const DRAW_SPLIT = randomSplit(300, 23);
/** Two chunks of 150 images. */
const DRAW_TWO_CHUNKS = 150 * IMAGE_BYTES + 100;

/**
 * An order of DRAW_SPLIT's indices beginning with one image per predicate, each the first not yet
 * taken whose draw under (seed, epoch) satisfies it; the rest follow in index order.
 */
function orderWithDraws(
  seed: number,
  epoch: number,
  wanted: readonly ((draw: AugmentationDraw) => boolean)[],
): Uint32Array<ArrayBuffer> {
  const taken: number[] = [];
  for (const [k, wants] of wanted.entries()) {
    const index = Array.from({ length: DRAW_SPLIT.count }, (_, i) => i)
      .find((i) => !taken.includes(i) && wants(augmentationDraw(seed, epoch, i)));
    assert.ok(index !== undefined, `no image of the split draws predicate ${k}`);
    taken.push(index);
  }
  const rest = Array.from({ length: DRAW_SPLIT.count }, (_, i) => i)
    .filter((i) => !taken.includes(i));
  return Uint32Array.from([...taken, ...rest]);
}

/** Crops at both edges of both axes, each mirrored and not. */
const EDGE_CROPS: ((draw: AugmentationDraw) => boolean)[] = [
  (d) => d.offsetX === 0 && !d.flip,
  (d) => d.offsetX === 0 && d.flip,
  (d) => d.offsetX === 8 && !d.flip,
  (d) => d.offsetX === 8 && d.flip,
  (d) => d.offsetY === 0,
  (d) => d.offsetY === 8,
];
/** Cutout centres on and next to each border, where even an 8x8 square is clipped. */
const EDGE_CUTOUTS: ((draw: AugmentationDraw) => boolean)[] = [
  (d) => d.cutoutX === 0,
  (d) => d.cutoutX === 31,
  (d) => d.cutoutY === 0,
  (d) => d.cutoutY === 31,
  (d) => d.cutoutX >= 1 && d.cutoutX <= 3 && d.cutoutY >= 28 && d.cutoutY <= 30,
  (d) => d.cutoutX >= 8 && d.cutoutX <= 23 && d.cutoutY >= 8 && d.cutoutY <= 23,
];

const AUGMENTED_CASES = [
  { padding: "reflect", cutout: 0, dtype: "f32" },
  { padding: "reflect", cutout: 8, dtype: "f32" },
  { padding: "zero", cutout: 5, dtype: "f32" },
  { padding: "zero", cutout: 1, dtype: "f32" },
  { padding: "reflect", cutout: 32, dtype: "f32" },
  { padding: "reflect", cutout: 8, dtype: "f16" },
] as const;

for (const { padding, cutout, dtype } of AUGMENTED_CASES) {
  gpuTest(
    `input batch: GPU equals the f64 reference, ${padding} padding, cutout ${cutout}, ${dtype}`,
    async (gpu) => {
      const batchSize = 8;
      const { dataset, source, batch } = await gpuBatches(gpu, DRAW_SPLIT, {
        batchSize,
        augment: true,
        padding,
        cutout,
        maxChunkBytes: DRAW_TWO_CHUNKS,
        dtype,
      });
      assert.equal(dataset.imageChunks.length, 2);
      for (const [seed, epoch] of [[7, 2], [0xffffffff, 11]]) {
        // Batches 0 and 1 hold the chosen images, batch 30 others from both chunks.
        const order = orderWithDraws(seed, epoch, [...EDGE_CROPS, ...EDGE_CUTOUTS]);
        source.setOrder(order);
        for (const batchIndex of [0, 1, 30]) {
          const actual = await batch(batchIndex, seed, epoch);
          const expected = referenceBatch(DRAW_SPLIT, {
            order,
            batch: batchIndex,
            batchSize,
            augment: true,
            seed,
            epoch,
            mean: CIFAR10_MEAN,
            std: CIFAR10_STD,
            padding,
            cutout,
          });
          const what = `batch ${batchIndex} of seed ${seed} epoch ${epoch}`;
          const tolerance = dtype === "f16" ? F16_STORAGE : NORMALISE_TOLERANCE;
          assertAllClose(actual.input, expected.input, tolerance, what);
          assert.deepEqual(actual.labels, expected.labels, `${what}: labels`);
          // Normalised random bytes are never exactly 0: zeros are Cutout's, and there are some.
          const zeros = expected.input.filter((value) => value === 0).length;
          assert.equal(zeros > 0, cutout > 0, `${what}: ${zeros} zeros`);
          const cutPixels = actual.input.filter((value) => value === 0).length;
          assert.equal(cutPixels, zeros, `${what}: Cutout's zeros`);
        }
      }
      source.destroy();
      dataset.destroy();
    },
  );
}

gpuTest(
  "input batch: Cutout's square, clipped at the borders, counts the pixels it should",
  async (gpu) => {
    // Independent of the reference: the number of zeroed pixels per sample from the centre alone.
    const [seed, epoch, batchSize] = [3, 1, 12];
    for (const cutout of [8, 5]) {
      const { dataset, source, batch } = await gpuBatches(gpu, DRAW_SPLIT, {
        batchSize,
        augment: true,
        padding: "reflect",
        cutout,
      });
      const order = orderWithDraws(seed, epoch, EDGE_CUTOUTS);
      source.setOrder(order);
      const actual = await batch(0, seed, epoch);
      const span = (centre: number) => {
        const first = centre - Math.floor(cutout / 2);
        return Math.min(first + cutout, SIZE) - Math.max(first, 0);
      };
      for (let n = 0; n < batchSize; n++) {
        const draw = augmentationDraw(seed, epoch, order[n]);
        const sample = actual.input.subarray(n * SIZE * SIZE * 3, (n + 1) * SIZE * SIZE * 3);
        const zeros = sample.filter((value) => value === 0).length;
        assert.equal(
          zeros,
          3 * span(draw.cutoutX) * span(draw.cutoutY),
          `cutout ${cutout}, n ${n}`,
        );
      }
      source.destroy();
      dataset.destroy();
    }
  },
);

const VIEW_CASES = [
  { maxChunkBytes: undefined, dtype: "f32" },
  { maxChunkBytes: TWO_CHUNKS, dtype: "f32" },
  { maxChunkBytes: TWO_CHUNKS, dtype: "f16" },
] as const;

for (const { maxChunkBytes, dtype } of VIEW_CASES) {
  const chunks = maxChunkBytes === undefined ? "one chunk" : "two chunks";
  gpuTest(
    `input batch: views 2 appends the mirror images, ${chunks}, ${dtype}`,
    async (gpu) => {
      const { dataset, source, batch } = await gpuBatches(gpu, SPLIT, {
        batchSize: BATCH_SIZE,
        augment: false,
        views: 2,
        maxChunkBytes,
        dtype,
      });
      const identity = Uint32Array.from({ length: SPLIT.count }, (_, i) => i);
      for (
        const [order, batchIndex] of [[identity, 3], [epochOrder(4, 0, SPLIT.count), 6]] as const
      ) {
        source.setOrder(order);
        const actual = await batch(batchIndex, 4, 0);
        const request = {
          order,
          batch: batchIndex,
          batchSize: BATCH_SIZE,
          augment: false,
          seed: 4,
          epoch: 0,
          mean: CIFAR10_MEAN,
          std: CIFAR10_STD,
        };
        const expected = referenceBatch(SPLIT, { ...request, views: 2 });
        const what = `batch ${batchIndex}`;
        const tolerance = dtype === "f16" ? F16_STORAGE : NORMALISE_TOLERANCE;
        assertAllClose(actual.input, expected.input, tolerance, what);
        assert.deepEqual(actual.labels, expected.labels, `${what}: labels`);
        // View 0 is the one-view batch, bit for bit.
        const single = referenceBatch(SPLIT, request).input;
        assert.deepEqual(expected.input.subarray(0, single.length), single);
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

Deno.test("input batch: padding, cutout and views outside their ranges are refused", () => {
  const [count, batch] = [37, 5];
  const tensors = (views: number): InputBatchTensors => ({
    imageChunks: [tensorDesc("images", [count, IMAGE_WORDS], "u32")],
    datasetLabels: tensorDesc("dataset labels", [count], "u32"),
    order: tensorDesc("order", [count], "u32"),
    batchParams: tensorDesc("batch parameters", [...BATCH_PARAMS_SHAPE], "u32"),
    input: tensorDesc("input", [views * batch, SIZE, SIZE, 3], "f32"),
    labels: tensorDesc("labels", [batch], "u32"),
  });
  const config = { augment: true, mean: CIFAR10_MEAN, std: CIFAR10_STD };
  const refused: [Partial<InputBatchConfig>, RegExp][] = [
    [
      { padding: "mirror" as CropPadding },
      /input batch: padding must be "zero" or "reflect", got "mirror"$/,
    ],
    [{ cutout: -1 }, /input batch: cutout must be an integer in 0\.\.32, got -1/],
    [{ cutout: 33 }, /cutout must be an integer in 0\.\.32, got 33/],
    [{ cutout: 2.5 }, /cutout must be an integer in 0\.\.32, got 2.5/],
    [{ cutout: 8, augment: false }, /input batch: cutout 8 is a training augmentation/],
    [{ views: 3 as 2 }, /input batch: views must be 1 or 2, got 3/],
    [{ views: 2 }, /input batch: views 2 .* is for evaluation, without augment/],
  ];
  for (const [change, message] of refused) {
    assert.throws(() => inputBatch(tensors(1), { ...config, ...change }), message);
  }
  // The input holds views * batch images; the labels one per sample.
  assert.throws(
    () => inputBatch(tensors(1), { ...config, augment: false, views: 2 }),
    (error) =>
      error instanceof ShapeError &&
      error.message === "input batch: input has shape [5,32,32,3], expected [10,32,32,3]",
  );
  assert.throws(
    () => inputBatch(tensors(2), config),
    /input batch: input has shape \[10,32,32,3\], expected \[5,32,32,3\]/,
  );
  assert.equal(inputBatch(tensors(2), { ...config, augment: false, views: 2 }).length, 1);
  const ok = { ...config, padding: "reflect", cutout: 32 } as const;
  assert.equal(inputBatch(tensors(1), ok).length, 1);
  assert.equal(inputBatch(tensors(1), { ...config, cutout: 0, augment: false }).length, 1);
});

gpuTest("input batch: a BatchSource whose labels are not [batchSize] is refused", async (gpu) => {
  const dataset = GpuDataset.create(gpu, SPLIT, "test split");
  const input = poisonedActivation(gpu, "input", [BATCH_SIZE, SIZE, SIZE, 3], "f32");
  const labels = u32Tensor(gpu, "labels", [BATCH_SIZE + 1], new Array(BATCH_SIZE + 1).fill(0));
  await assert.rejects(
    BatchSource.create(gpu, dataset, {
      batchSize: BATCH_SIZE,
      augment: false,
      mean: CIFAR10_MEAN,
      std: CIFAR10_STD,
      input,
      labels,
    }),
    /test split: the labels must have shape \[5\] \(the batch size\), got \[6\]/,
  );
  input.buffer.destroy();
  labels.buffer.destroy();
  dataset.destroy();
});

Deno.test("augmentationDraw: the draws of recorded runs stay what they were", () => {
  // Values of the kernel before Cutout (crop and flip) and since (Cutout's centre): a resumed
  // run must redraw them exactly.
  const pinned: [[number, number, number], AugmentationDraw][] = [
    [[0, 0, 0], { offsetX: 7, offsetY: 7, flip: true, cutoutX: 7, cutoutY: 31 }],
    [[42, 3, 5], { offsetX: 1, offsetY: 1, flip: true, cutoutX: 31, cutoutY: 0 }],
    [[7, 2, 49999], { offsetX: 4, offsetY: 6, flip: false, cutoutX: 14, cutoutY: 29 }],
    [[0xffffffff, 17, 123], { offsetX: 8, offsetY: 0, flip: true, cutoutX: 12, cutoutY: 25 }],
    [[1, 0xffffffff, 0xffffffff], {
      offsetX: 4,
      offsetY: 7,
      flip: false,
      cutoutX: 15,
      cutoutY: 21,
    }],
  ];
  for (const [[seed, epoch, index], draw] of pinned) {
    assert.deepEqual(augmentationDraw(seed, epoch, index), draw, `(${seed}, ${epoch}, ${index})`);
  }
});

Deno.test("augmentationDraw: Cutout's centre is uniform, independent of crop and flip", () => {
  const samples = 90000;
  const centres = { x: new Array(SIZE).fill(0), y: new Array(SIZE).fill(0) };
  // Sum of the centre's x per crop offset x and of its y per flip: 15.5 on average if independent.
  const byOffset = Array.from({ length: 9 }, () => ({ sum: 0, count: 0 }));
  const byFlip = [{ sum: 0, count: 0 }, { sum: 0, count: 0 }];
  let sameAcrossEpochs = 0;
  for (let index = 0; index < samples; index++) {
    const draw = augmentationDraw(42, 3, index);
    centres.x[draw.cutoutX]++;
    centres.y[draw.cutoutY]++;
    byOffset[draw.offsetX].sum += draw.cutoutX;
    byOffset[draw.offsetX].count++;
    byFlip[draw.flip ? 1 : 0].sum += draw.cutoutY;
    byFlip[draw.flip ? 1 : 0].count++;
    const next = augmentationDraw(42, 4, index);
    if (next.cutoutX === draw.cutoutX && next.cutoutY === draw.cutoutY) sameAcrossEpochs++;
  }
  // Bounds at about five standard deviations: a frequency of 1/32 over 90,000 samples, and the
  // mean of about 10,000 (45,000) uniform draws of 0..31, standard deviation 9.2.
  for (const [axis, counts] of Object.entries(centres)) {
    counts.forEach((hits, centre) => {
      const frequency = hits / samples;
      assert.ok(Math.abs(frequency - 1 / 32) < 0.003, `centre ${axis} = ${centre}: ${frequency}`);
    });
  }
  byOffset.forEach(({ sum, count }, offset) => {
    assert.ok(
      Math.abs(sum / count - 15.5) < 0.5,
      `mean centre x at offset ${offset}: ${sum / count}`,
    );
  });
  byFlip.forEach(({ sum, count }, flip) => {
    assert.ok(Math.abs(sum / count - 15.5) < 0.25, `mean centre y, flip ${flip}: ${sum / count}`);
  });
  const coincidence = sameAcrossEpochs / samples;
  assert.ok(Math.abs(coincidence - 1 / 1024) < 0.0006, `same centre in two epochs: ${coincidence}`);
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
