/// <reference lib="dom" />
/**
 * What the page shows of a model on the test images: a grid of some of them with its top three
 * classes (src/train/predict.ts on the GPU), and the confusion matrix of an evaluation.
 */
import type { CifarSplit } from "../src/data/cifar.ts";
import type { Gpu } from "../src/gpu/device.ts";
import type { ModelWeights } from "../src/model/weights.ts";
import { KernelPolicy } from "../src/ops/policy.ts";
import type { EvaluationResult } from "../src/train/evaluator.ts";
import { imageOf, planesToCanvas } from "./cifar_image.ts";
import { showConfusion } from "./confusion_matrix.ts";
import { byId } from "./dom.ts";
import { predictLogits } from "./predict_images.ts";
import { showPredictions } from "./prediction_grid.ts";

/** Images in the grid: three rows on a wide screen, still quick to scroll on a phone. */
const GRID_IMAGES = 24;

export class TestImagesPanel {
  readonly #grid = byId("prediction-grid");
  readonly #caption = byId("predictions-caption");
  readonly #confusion = byId("confusion-matrix", HTMLTableElement);
  readonly #confusionCaption = byId("confusion-caption");
  readonly #gpu: Gpu;

  constructor(gpu: Gpu) {
    this.#gpu = gpu;
  }

  /** Test images spread evenly over the split, the same ones after every evaluation. */
  static gridIndices(split: CifarSplit): number[] {
    const count = Math.min(GRID_IMAGES, split.count);
    return Array.from({ length: count }, (_, k) => Math.floor((k * split.count) / count));
  }

  /** The model's predictions for the grid's images; `batch` is the evaluation's batch size. */
  async showPredictions(
    weights: ModelWeights,
    split: CifarSplit,
    classNames: readonly string[],
    batch: number,
    origin: string,
  ): Promise<void> {
    const indices = TestImagesPanel.gridIndices(split);
    const images = indices.map((index) => imageOf(split.images, index));
    const logits = await predictLogits(
      this.#gpu,
      weights,
      images,
      KernelPolicy.forAdapter(this.#gpu),
      batch,
    );
    showPredictions(
      this.#grid,
      indices.map((index, i) => ({
        id: String(index),
        canvas: planesToCanvas(images[i]),
        logits: logits[i],
        label: split.labels[index],
      })),
      classNames,
    );
    this.#caption.textContent = `${origin}: the three likeliest classes of ${indices.length} ` +
      "test images; ✓ marks the true class.";
  }

  showConfusion(result: EvaluationResult, classNames: readonly string[], origin: string): void {
    showConfusion(this.#confusion, result, classNames);
    const correct = result.confusion.reduce((sum, row, i) => sum + row[i], 0);
    this.#confusionCaption.textContent = `${origin}: test accuracy ` +
      `${(result.accuracy * 100).toFixed(2)}% (${correct} of ${result.count}), test loss ` +
      `${result.loss.toFixed(4)}. A row per true class, a column per predicted class.`;
    this.#confusionCaption.dataset.correct = String(correct);
    this.#confusionCaption.dataset.count = String(result.count);
  }
}
