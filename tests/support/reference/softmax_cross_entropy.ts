/**
 * Reference softmax cross-entropy in f64, with the mean reduction of PyTorch's CrossEntropyLoss
 * and its label smoothing, and the mean over views of evaluation's test-time augmentation.
 */
import { checkLength } from "./shape.ts";

export interface SoftmaxCrossEntropyShape {
  /** Batch size: logits are [n, classes]. */
  n: number;
  classes: number;
}

export interface SoftmaxCrossEntropyResult {
  /**
   * Mean over the batch of −log softmax(logits)[label], or with label smoothing eps of
   * (1 − eps)·(−log p[label]) + eps/K · Σ_k −log p[k] (PyTorch's label_smoothing).
   */
  loss: number;
  /** d loss / d logits = (softmax − target) / n, target = (1 − eps)·onehot(label) + eps/K. */
  dlogits: Float64Array;
  /** How many rows have argmax == label, ties resolved to the lowest index. */
  correct: number;
  /** Each row's argmax, ties resolved to the lowest index (the confusion matrix's column). */
  predictions: Int32Array;
}

export function softmaxCrossEntropy(
  logits: Float64Array,
  labels: ArrayLike<number>,
  shape: SoftmaxCrossEntropyShape,
  labelSmoothing = 0,
): SoftmaxCrossEntropyResult {
  const { n, classes } = shape;
  checkLength(logits, n * classes, "softmax cross-entropy logits");
  checkLength(labels, n, "softmax cross-entropy labels");
  if (!(labelSmoothing >= 0 && labelSmoothing < 1)) {
    throw new RangeError(`label smoothing ${labelSmoothing} is not in [0, 1)`);
  }
  const dlogits = new Float64Array(logits.length);
  const predictions = new Int32Array(n);
  let lossSum = 0;
  let correct = 0;
  for (let row = 0; row < n; row++) {
    const label = labels[row];
    if (!Number.isInteger(label) || label < 0 || label >= classes) {
      throw new RangeError(`label ${label} in row ${row} is not a class in [0, ${classes})`);
    }
    const rowLogits = logits.subarray(row * classes, (row + 1) * classes);
    // Subtracting the maximum keeps exp() from overflowing without changing the softmax.
    let argmax = 0;
    for (let k = 1; k < classes; k++) if (rowLogits[k] > rowLogits[argmax]) argmax = k;
    const max = rowLogits[argmax];
    let expSum = 0;
    for (let k = 0; k < classes; k++) expSum += Math.exp(rowLogits[k] - max);
    const logSumExp = max + Math.log(expSum);
    // As PyTorch: (1 − eps)·nll + eps/K · Σ_k −log p[k].
    let uniformLoss = 0;
    for (let k = 0; k < classes; k++) uniformLoss += logSumExp - rowLogits[k];
    lossSum += (1 - labelSmoothing) * (logSumExp - rowLogits[label]) +
      labelSmoothing / classes * uniformLoss;
    predictions[row] = argmax;
    if (argmax === label) correct++;
    for (let k = 0; k < classes; k++) {
      const probability = Math.exp(rowLogits[k] - logSumExp);
      const target = (k === label ? 1 - labelSmoothing : 0) + labelSmoothing / classes;
      dlogits[row * classes + k] = (probability - target) / n;
    }
  }
  return { loss: lossSum / n, dlogits, correct, predictions };
}

/**
 * Test-time augmentation: the logits of `views` views of each of n samples, [views·n, classes]
 * with view v of sample r in row v·n + r, averaged into the samples' [n, classes].
 */
export function meanOverViews(
  logits: ArrayLike<number>,
  shape: SoftmaxCrossEntropyShape & { views: number },
): Float64Array {
  const { n, classes, views } = shape;
  checkLength(logits, views * n * classes, "views' logits");
  const mean = new Float64Array(n * classes);
  for (let v = 0; v < views; v++) {
    for (let i = 0; i < n * classes; i++) mean[i] += logits[v * n * classes + i];
  }
  return mean.map((sum) => sum / views);
}

/**
 * Evaluation's cross-entropy with test-time augmentation: the plain (unsmoothed) loss, the
 * correct count and the predictions of the mean of each sample's views (`meanOverViews`).
 */
export function softmaxCrossEntropyViews(
  logits: ArrayLike<number>,
  labels: ArrayLike<number>,
  shape: SoftmaxCrossEntropyShape & { views: number },
): SoftmaxCrossEntropyResult {
  return softmaxCrossEntropy(meanOverViews(logits, shape), labels, shape);
}

/** The confusion matrix, [classes, classes] counts: row = true class, column = prediction. */
export function confusionMatrix(
  labels: ArrayLike<number>,
  predictions: ArrayLike<number>,
  classes: number,
): Uint32Array {
  checkLength(predictions, labels.length, "predictions");
  const confusion = new Uint32Array(classes * classes);
  for (let row = 0; row < labels.length; row++) {
    confusion[labels[row] * classes + predictions[row]]++;
  }
  return confusion;
}
