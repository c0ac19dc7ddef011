/**
 * A CIFAR-10 archive in the official binary layout (full-size batch files, as the loader demands)
 * whose first images a tiny ResNet learns in a few steps: each class has its own colour, under
 * noise. The images past the first ones the tests use are black, so the 180 MB archive gzips to
 * a few hundred kilobytes.
 */
import { gzipSync } from "node:zlib";
import { type CifarSplit, IMAGE_BYTES, RECORDS_PER_FILE } from "../../src/data/cifar.ts";
import { archiveEntries, binaryBatch, makeTar } from "../support/data_fixtures.ts";
import { DEFAULT_CLASS_NAMES } from "../../src/data/cifar.ts";

/** Images of each batch file that carry their class's colour; the rest are black. */
export const COLOURED_IMAGES = 512;

/** One colour per class, far apart (RGB). */
const CLASS_COLOURS = [
  [230, 25, 75],
  [60, 180, 75],
  [255, 225, 25],
  [0, 130, 200],
  [245, 130, 48],
  [145, 30, 180],
  [70, 240, 240],
  [240, 50, 230],
  [128, 128, 0],
  [128, 128, 128],
];

/** A batch file's records: labels from a seeded generator, the first images coloured. */
export function learnableSplit(seed: number, count = RECORDS_PER_FILE): CifarSplit {
  let state = (seed * 2654435761) >>> 0;
  const next = () => (state = (state * 1664525 + 1013904223) >>> 0) >>> 24;
  const labels = Uint8Array.from({ length: count }, () => next() % 10);
  const images = new Uint8Array(count * IMAGE_BYTES);
  for (let i = 0; i < Math.min(count, COLOURED_IMAGES); i++) {
    const colour = CLASS_COLOURS[labels[i]];
    for (let c = 0; c < 3; c++) {
      for (let p = 0; p < 1024; p++) {
        const noisy = colour[c] + (next() % 97) - 48;
        images[i * IMAGE_BYTES + c * 1024 + p] = Math.max(0, Math.min(255, noisy));
      }
    }
  }
  return { images, labels, count };
}

/** Seeds of the five training batch files and the test file. */
const TRAIN_SEEDS = [11, 12, 13, 14, 15];
const TEST_SEED = 16;

/** The test file's split, to compare what the page shows against. */
export function learnableTestSplit(): CifarSplit {
  return learnableSplit(TEST_SEED);
}

/** cifar-10-binary.tar.gz of the learnable data set. */
export function learnableArchive(): Uint8Array {
  const files = new Map<string, Uint8Array>();
  TRAIN_SEEDS.forEach((seed, i) => {
    files.set(`data_batch_${i + 1}.bin`, binaryBatch(learnableSplit(seed)));
  });
  files.set("test_batch.bin", binaryBatch(learnableTestSplit()));
  files.set("batches.meta.txt", new TextEncoder().encode(DEFAULT_CLASS_NAMES.join("\n") + "\n\n"));
  const tar = makeTar(archiveEntries("cifar-10-batches-bin", files));
  return new Uint8Array(gzipSync(tar, { level: 1 }));
}
