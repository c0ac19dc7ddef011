/**
 * CIFAR-10 as the commands use it: from --data (downloaded there when it is missing, with a
 * progress line on a terminal), optionally cut to its first images for quick runs.
 */
import type { CifarDataset } from "../data/cifar.ts";
import { loadCifar10 } from "../data/load.ts";
import { firstImages } from "../train/settings.ts";

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
