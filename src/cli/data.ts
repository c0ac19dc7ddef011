/**
 * CIFAR-10 as the commands use it: from --data (downloaded there when it is missing, with a
 * progress line on a terminal), optionally cut to its first images for quick runs.
 */
import { type CifarDataset, type CifarSplit, IMAGE_BYTES } from "../data/cifar.ts";
import { loadCifar10 } from "../data/load.ts";
import { UsageError } from "../errors.ts";

export interface ImageLimits {
  /** --limit: training images to keep, all when undefined. */
  train?: number;
  /** --test-limit: test images to keep, all when undefined. */
  test?: number;
}

export async function loadData(location: string, limits: ImageLimits): Promise<CifarDataset> {
  const data = await loadCifar10(location, { download: true, progress: Deno.stderr });
  return {
    ...data,
    train: firstImages(data.train, limits.train, "--limit", "training"),
    test: firstImages(data.test, limits.test, "--test-limit", "test"),
  };
}

function firstImages(
  split: CifarSplit,
  limit: number | undefined,
  flag: string,
  what: string,
): CifarSplit {
  if (limit === undefined) return split;
  if (limit > split.count) {
    throw new UsageError(`${flag} ${limit} is more than the ${split.count} ${what} images`);
  }
  return {
    images: split.images.subarray(0, limit * IMAGE_BYTES),
    labels: split.labels.subarray(0, limit),
    count: limit,
  };
}
