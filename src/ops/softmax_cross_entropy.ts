/**
 * Fused softmax cross-entropy, mean over the batch (shaders/softmax_cross_entropy.wgsl): loss,
 * dlogits and correct predictions in one call. Loss and counts accumulate in a small metrics
 * tensor on the GPU, read back only when asked. Training may smooth the labels (PyTorch's
 * CrossEntropyLoss(label_smoothing)); evaluation may average several views of each sample's
 * logits (test-time augmentation).
 */
import { readBuffer, writeBuffer } from "../gpu/buffer.ts";
import type { Gpu } from "../gpu/device.ts";
import { type KernelCall, kernelCall, read, readWrite, write } from "../gpu/kernel_call.ts";
import { createTensor, type Tensor, type TensorDesc } from "../gpu/tensor.ts";
import { kernels } from "../shaders.ts";
import { expectTensor, ShapeError } from "./shape.ts";

/** One workgroup does the whole batch; a power of two for its tree reduction. */
const WORKGROUP_SIZE = 64;

/** Sums over every sample since the metrics were last reset. */
export interface Metrics {
  lossSum: number;
  correct: number;
  samples: number;
}

/** The metrics tensor: three words { loss_sum: f32, correct: u32, samples: u32 }, as u32 [3]. */
export const METRICS_SHAPE = [3] as const;
export const METRICS_BYTES = 12;

/** The metrics tensor, zeroed. */
export function createMetrics(gpu: Gpu, label = "metrics"): Tensor {
  return createTensor(gpu, label, METRICS_SHAPE, "u32");
}

export function resetMetrics(gpu: Gpu, metrics: Tensor): void {
  writeBuffer(gpu, metrics.buffer, new Uint32Array(3), metrics.offset);
}

/** The metrics from the tensor's 12 bytes, wherever they were copied. */
export function decodeMetrics(bytes: ArrayBuffer): Metrics {
  const words = new Uint32Array(bytes, 0, 3);
  return { lossSum: new Float32Array(bytes, 0, 1)[0], correct: words[1], samples: words[2] };
}

export async function readMetrics(gpu: Gpu, metrics: Tensor): Promise<Metrics> {
  return decodeMetrics(await readBuffer(gpu, metrics.buffer, metrics.offset, METRICS_BYTES));
}

/**
 * The loss-scale state of f16 training, u32 [5] words: { scale: f32, growth_tracker, found_inf,
 * skipped_steps, applied_steps } (shaders/optimizer.wgsl updates it; src/train/loss_scale.ts).
 */
export const LOSS_SCALE_SHAPE = [5] as const;

export interface CrossEntropyTensors {
  /** [batch, classes] f32 */
  logits: TensorDesc;
  /** [batch] u32 class indices */
  labels: TensorDesc;
  /** u32 [3], see METRICS_SHAPE */
  metrics: TensorDesc;
}

/** With `views` (evaluation), the logits are [views * batch, classes] and the labels [batch]. */
function constants(op: string, t: CrossEntropyTensors, views = 1) {
  if (t.logits.shape.length !== 2) {
    throw new ShapeError(`${op}: logits must be [batch, classes], got [${t.logits.shape}]`);
  }
  const [rows, classes] = t.logits.shape;
  let batch = Math.floor(rows / views);
  if (views !== 1 && t.labels.shape.length === 1) {
    // Name the mismatch as a count of rows: the labels' own shape check would blame the labels.
    batch = t.labels.shape[0];
    if (rows !== views * batch) {
      throw new ShapeError(
        `${op}: logits have ${rows} rows, expected ${views} views x ${batch} labels = ` +
          `${views * batch}`,
      );
    }
  }
  expectTensor(op, t.logits, [rows, classes]);
  expectTensor(op, t.labels, [batch], "u32");
  expectTensor(op, t.metrics, METRICS_SHAPE, "u32");
  return { BATCH: batch, CLASSES: classes };
}

export interface CrossEntropyTrainOptions {
  /**
   * eps of PyTorch's CrossEntropyLoss(label_smoothing=eps), in [0, 1): the target is
   * (1 - eps) * onehot(label) + eps / classes. Default 0, the plain cross-entropy.
   */
  labelSmoothing?: number;
}

export interface CrossEntropyEvaluateOptions {
  /**
   * Views of each sample, a whole number >= 1 (default 1): the logits are [views * batch, classes],
   * view v of sample n in row v * batch + n, and the sample's logits are their mean.
   */
  views?: number;
}

/**
 * Training: writes dlogits = (softmax - target) / batch and accumulates the metrics, whose loss is
 * the smoothed one (what is optimised); the target is onehot(label) smoothed by `labelSmoothing`.
 * With a `lossScale` (the loss-scale state of f16 training, src/train/loss_scale.ts, whose first
 * word is the f32 scale), dlogits is multiplied by that scale on the GPU.
 */
export function crossEntropyTrain(
  t: CrossEntropyTensors & { dlogits: TensorDesc; lossScale?: TensorDesc },
  options: CrossEntropyTrainOptions = {},
): KernelCall[] {
  const op = "cross entropy";
  const { labelSmoothing = 0 } = options;
  if (!Number.isFinite(labelSmoothing) || labelSmoothing < 0 || labelSmoothing >= 1) {
    throw new RangeError(`${op}: label smoothing must be in [0, 1), got ${labelSmoothing}`);
  }
  const shapeConstants = constants(op, t);
  expectTensor(op, t.dlogits, t.logits.shape);
  if (t.lossScale) expectTensor(op, t.lossScale, LOSS_SCALE_SHAPE, "u32");
  return [kernelCall({
    kernel: kernels.softmaxCrossEntropy,
    entryPoint: "forward_backward",
    workgroupSize: WORKGROUP_SIZE,
    constants: {
      ...shapeConstants,
      LOSS_SCALED: Number(t.lossScale !== undefined),
      LABEL_SMOOTHING: labelSmoothing,
    },
    grid: [1],
    bindings: [
      read(t.logits),
      read(t.labels),
      // Without a loss scale the kernel never reads this binding; the labels fill it.
      read(t.lossScale ?? t.labels),
      readWrite(t.metrics),
      write(t.dlogits),
    ],
  })];
}

/**
 * Evaluation: accumulates the metrics (the plain cross-entropy, never smoothed) and the confusion
 * matrix, [classes, classes] u32 counts with the true class as the row and the predicted one as
 * the column. With `views`, each sample's logits are the mean of its views' (see the options).
 */
export function crossEntropyEvaluate(
  t: CrossEntropyTensors & { confusion: TensorDesc },
  options: CrossEntropyEvaluateOptions = {},
): KernelCall[] {
  const op = "cross entropy";
  const { views = 1 } = options;
  if (!Number.isInteger(views) || views < 1) {
    throw new RangeError(`${op}: views must be a whole number >= 1, got ${views}`);
  }
  const shapeConstants = constants(op, t, views);
  const classes = t.logits.shape[1];
  expectTensor(op, t.confusion, [classes, classes], "u32");
  return [kernelCall({
    kernel: kernels.softmaxCrossEntropy,
    entryPoint: "evaluate",
    workgroupSize: WORKGROUP_SIZE,
    constants: { ...shapeConstants, VIEWS: views },
    grid: [1],
    bindings: [read(t.logits), read(t.labels), readWrite(t.metrics), readWrite(t.confusion)],
  })];
}
