/// <reference lib="dom" />
/**
 * Test images with the model's three likeliest classes as bars, the true class marked. Each cell
 * keeps the logits it shows in `data-logits`, so that they can be read back exactly (the browser
 * tests compare them with the same checkpoint's logits in Deno).
 */
import { topClasses } from "../src/train/predict.ts";
import { element } from "./dom.ts";

/** One image to show, with its logits under the current model. */
export interface Prediction {
  /** Its index in the test set, or a name for a picked image. */
  id: string;
  canvas: HTMLCanvasElement;
  logits: ArrayLike<number>;
  /** The true class, when known. */
  label?: number;
}

/** A cell: the image, then the top three classes as bars of their probability. */
export function predictionCell(prediction: Prediction, classNames: readonly string[]): HTMLElement {
  const { label } = prediction;
  const top = topClasses(prediction.logits, 3);
  const bars = top.map(({ classIndex, probability }) => {
    const percent = `${(probability * 100).toFixed(1)}%`;
    const bar = element(
      "div",
      {
        class: "bar",
        style: `--share: ${(probability * 100).toFixed(2)}%`,
        "data-class": String(classIndex),
        title: `${classNames[classIndex]}: ${percent}`,
      },
      // The name gives way (an ellipsis) before the share does.
      element(
        "span",
        { class: "name" },
        classNames[classIndex] + (classIndex === label ? " ✓" : ""),
      ),
      element("span", { class: "share" }, percent),
    );
    if (label !== undefined) bar.dataset.true = String(classIndex === label);
    return bar;
  });
  const truth = label === undefined
    ? []
    : [element("div", { class: "true-label" }, `true: ${classNames[label]}`)];
  const cell = element(
    "div",
    { class: "prediction", "data-id": prediction.id },
    prediction.canvas,
    element("div", { class: "bars" }, ...bars, ...truth),
  );
  cell.dataset.logits = Array.from(prediction.logits).join(",");
  if (label !== undefined) cell.dataset.label = String(label);
  cell.dataset.predicted = String(top[0].classIndex);
  return cell;
}

export function showPredictions(
  grid: HTMLElement,
  predictions: readonly Prediction[],
  classNames: readonly string[],
): void {
  grid.replaceChildren(...predictions.map((p) => predictionCell(p, classNames)));
}
