/**
 * Fused softmax cross-entropy, mean over the batch (shaders/softmax_cross_entropy.wgsl): loss,
 * dlogits and correct predictions in one dispatch. Loss and counts accumulate in a small
 * metrics buffer on the GPU, read back only when asked.
 */
import { readBuffer, writeBuffer } from "../gpu/buffer.ts";
import { createDispatch, type Dispatch } from "../gpu/dispatch.ts";
import type { Gpu } from "../gpu/device.ts";
import { createTensor, type Tensor } from "../gpu/tensor.ts";
import { kernels } from "../shaders.ts";
import { expectShape, ShapeError } from "./shape.ts";

/** Sums over every sample since the metrics were last reset. */
export interface Metrics {
  lossSum: number;
  correct: number;
  samples: number;
}

/** The metrics buffer: { loss_sum: f32, correct: u32, samples: u32 }, zeroed. */
export function createMetrics(gpu: Gpu, label = "metrics"): Tensor {
  return createTensor(gpu, label, [3]);
}

export function resetMetrics(gpu: Gpu, metrics: Tensor): void {
  writeBuffer(gpu, metrics.buffer, new Uint32Array(3), metrics.offset);
}

export async function readMetrics(gpu: Gpu, metrics: Tensor): Promise<Metrics> {
  const bytes = await readBuffer(gpu, metrics.buffer, metrics.offset, 12);
  const counts = new Uint32Array(bytes);
  return { lossSum: new Float32Array(bytes)[0], correct: counts[1], samples: counts[2] };
}

export interface CrossEntropyTensors {
  /** [batch, classes] */
  logits: Tensor;
  /** [batch], u32 class indices */
  labels: Tensor;
  metrics: Tensor;
}

function constants(tensors: CrossEntropyTensors) {
  const { logits, labels, metrics } = tensors;
  if (logits.shape.length !== 2) {
    throw new ShapeError("cross entropy: logits must be [batch, classes]");
  }
  const [batch, classes] = logits.shape;
  expectShape("cross entropy", labels, [batch]);
  expectShape("cross entropy", metrics, [3]);
  return { BATCH: batch, CLASSES: classes };
}

/** Training: writes dlogits = (softmax - onehot) / batch and accumulates the metrics. */
export function crossEntropyTrain(
  gpu: Gpu,
  tensors: CrossEntropyTensors & { dlogits: Tensor },
): Promise<Dispatch> {
  expectShape("cross entropy", tensors.dlogits, tensors.logits.shape);
  return createDispatch(gpu, {
    kernel: kernels.softmaxCrossEntropy,
    entryPoint: "forward_backward",
    constants: constants(tensors),
    bindings: [tensors.logits, tensors.labels, tensors.metrics, tensors.dlogits],
    workgroups: [1],
  });
}

/**
 * Evaluation: accumulates the metrics and the confusion matrix, [classes, classes] u32 counts
 * with the true class as the row and the predicted one as the column.
 */
export function crossEntropyEvaluate(
  gpu: Gpu,
  tensors: CrossEntropyTensors & { confusion: Tensor },
): Promise<Dispatch> {
  const classes = tensors.logits.shape[1];
  expectShape("cross entropy", tensors.confusion, [classes, classes]);
  return createDispatch(gpu, {
    kernel: kernels.softmaxCrossEntropy,
    entryPoint: "evaluate",
    constants: constants(tensors),
    bindings: [tensors.logits, tensors.labels, tensors.metrics, tensors.confusion],
    workgroups: [1],
  });
}
