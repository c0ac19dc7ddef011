/** Reference softmax cross-entropy in f64, with the mean reduction of PyTorch's CrossEntropyLoss. */
import { checkLength } from "./shape.ts";

export interface SoftmaxCrossEntropyShape {
  /** Batch size: logits are [n, classes]. */
  n: number;
  classes: number;
}

export interface SoftmaxCrossEntropyResult {
  /** Mean over the batch of −log softmax(logits)[label]. */
  loss: number;
  /** d loss / d logits = (softmax − onehot(label)) / n. */
  dlogits: Float64Array;
  /** How many rows have argmax == label, ties resolved to the lowest index. */
  correct: number;
}

export function softmaxCrossEntropy(
  logits: Float64Array,
  labels: ArrayLike<number>,
  shape: SoftmaxCrossEntropyShape,
): SoftmaxCrossEntropyResult {
  const { n, classes } = shape;
  checkLength(logits, n * classes, "softmax cross-entropy logits");
  checkLength(labels, n, "softmax cross-entropy labels");
  const dlogits = new Float64Array(logits.length);
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
    lossSum += logSumExp - rowLogits[label];
    if (argmax === label) correct++;
    for (let k = 0; k < classes; k++) {
      const probability = Math.exp(rowLogits[k] - logSumExp);
      dlogits[row * classes + k] = (probability - (k === label ? 1 : 0)) / n;
    }
  }
  return { loss: lossSum / n, dlogits, correct };
}
