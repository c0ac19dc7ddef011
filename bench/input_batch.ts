/**
 * Time to produce one batch with the GPU input pipeline (src/data/gpu_dataset.ts): gather from a
 * CIFAR-10-train-sized data set resident on the GPU, normalise and augment. Batches are
 * submitted back to back, one submit each as in training, and timed to the GPU's completion.
 *
 *   deno run --allow-env bench/input_batch.ts
 */
import { IMAGE_BYTES } from "../src/data/cifar.ts";
import { CIFAR10_MEAN, CIFAR10_STD, epochOrder, GpuDataset } from "../src/data/gpu_dataset.ts";
import type { Gpu } from "../src/gpu/device.ts";
import { requestGpu } from "../src/gpu/deno_device.ts";
import { submitCommands } from "../src/gpu/dispatch.ts";
import { createTensor } from "../src/gpu/tensor.ts";
import { BatchSource } from "../src/train/batch_source.ts";
import { Random } from "../src/util/random.ts";

export interface InputBatchBenchOptions {
  batchSize?: number;
  /** Images in the synthetic data set; CIFAR-10 train's 50,000 need two chunks. */
  images?: number;
  /** Timed batches per configuration, after as many untimed ones to warm up. */
  batches?: number;
}

export interface InputBatchBenchRow {
  name: string;
  adapter: string;
  batchSize: number;
  msPerBatch: number;
  imagesPerSecond: number;
}

export async function benchInputBatch(
  gpu: Gpu,
  options: InputBatchBenchOptions = {},
): Promise<InputBatchBenchRow[]> {
  const { batchSize = 128, images = 50000, batches = 50 } = options;
  const dataset = GpuDataset.create(gpu, randomSplit(images), "bench split");
  const input = createTensor(gpu, "input", [batchSize, 32, 32, 3]);
  const labels = createTensor(gpu, "labels", [batchSize], "u32");
  const rows: InputBatchBenchRow[] = [];
  for (const augment of [true, false]) {
    const source = await BatchSource.create(gpu, dataset, {
      batchSize,
      augment,
      mean: CIFAR10_MEAN,
      std: CIFAR10_STD,
      input,
      labels,
    });
    source.setOrder(epochOrder(0, 0, images));
    const runBatches = async (first: number) => {
      for (let batch = first; batch < first + batches; batch++) {
        source.prepareBatch(batch % source.batchesPerEpoch, 0, 0);
        submitCommands(gpu, source.commands);
      }
      await gpu.device.queue.onSubmittedWorkDone();
    };
    await runBatches(0);
    const start = performance.now();
    await runBatches(batches);
    const msPerBatch = (performance.now() - start) / batches;
    rows.push({
      name: `input batch ${batchSize}${augment ? " augmented" : ""} of ${images} images`,
      adapter: gpu.adapterName,
      batchSize,
      msPerBatch,
      imagesPerSecond: batchSize / msPerBatch * 1000,
    });
    source.destroy();
  }
  dataset.destroy();
  input.buffer.destroy();
  labels.buffer.destroy();
  return rows;
}

/** Random pixels: the kernel's speed does not depend on them, only the footprint does. */
function randomSplit(count: number) {
  const random = new Random(1);
  const words = new Uint32Array(count * IMAGE_BYTES / 4);
  for (let i = 0; i < words.length; i++) words[i] = random.nextUint32();
  const labels = Uint8Array.from({ length: count }, () => random.integer(10));
  return { images: new Uint8Array(words.buffer), labels, count };
}

if (import.meta.main) {
  const gpu = await requestGpu();
  console.log(`adapter: ${gpu.adapterName}${gpu.isFallbackAdapter ? " (software)" : ""}`);
  for (const row of await benchInputBatch(gpu)) {
    console.log(
      `${row.name}: ${row.msPerBatch.toFixed(3)} ms per batch, ` +
        `${Math.round(row.imagesPerSecond)} images/s`,
    );
  }
  gpu.device.destroy();
}
