/**
 * Logits of a few images, in batches of the evaluation's size: the Predictor's plan then has the
 * evaluation plan's shapes, so the pipelines compiled for the evaluation serve it too. Compiling
 * is what a software adapter spends most of its time on (SwiftShader: about half a second per
 * pipeline), and a plan of any other batch size would compile all of its pipelines again.
 */
import type { Gpu } from "../src/gpu/device.ts";
import type { ModelWeights } from "../src/model/weights.ts";
import type { KernelPolicy } from "../src/ops/policy.ts";
import { Predictor } from "../src/train/predict.ts";

export async function predictLogits(
  gpu: Gpu,
  weights: ModelWeights,
  images: readonly Uint8Array[],
  policy: KernelPolicy,
  batch: number,
): Promise<Float32Array[]> {
  // Filled up to one batch with copies of the last image, whose logits are dropped.
  const padded = images.length >= batch
    ? [...images]
    : [...images, ...Array.from({ length: batch - images.length }, () => images.at(-1)!)];
  const predictor = await Predictor.create(gpu, weights, padded, policy, { maxBatch: batch });
  try {
    return (await predictor.logits()).slice(0, images.length);
  } finally {
    predictor.destroy();
  }
}

/** The batch size of the evaluation's full batches over `testImages` images. */
export function evaluationBatch(evalBatchSize: number, testImages: number): number {
  return Math.min(evalBatchSize, testImages);
}
