/// <reference lib="dom" />
/**
 * The confusion matrix of an evaluation as a table: a row per true class, a column per predicted
 * class, each cell shaded by its share of the row, and each class's accuracy at the row's end.
 */
import type { EvaluationResult } from "../src/train/evaluator.ts";
import { element } from "./dom.ts";

export function showConfusion(
  table: HTMLTableElement,
  result: Pick<EvaluationResult, "confusion" | "perClassAccuracy">,
  classNames: readonly string[],
): void {
  const head = element(
    "tr",
    {},
    element("th", { scope: "col" }, "true \\ predicted"),
    ...classNames.map((name) => element("th", { scope: "col" }, name)),
    element("th", { scope: "col" }, "accuracy"),
  );
  const rows = result.confusion.map((row, trueClass) => {
    const total = Math.max(1, row.reduce((a, b) => a + b, 0));
    return element(
      "tr",
      {},
      element("th", { scope: "row" }, classNames[trueClass]),
      ...row.map((count, predicted) => {
        const share = count / total;
        const hue = predicted === trueClass ? "26, 127, 55" : "179, 38, 30";
        return element("td", {
          class: predicted === trueClass ? "diagonal" : "",
          style: `background: rgba(${hue}, ${(share * 0.85).toFixed(3)})` +
            (share > 0.5 ? "; color: white" : ""),
          title: `${classNames[trueClass]} taken for ${classNames[predicted]}: ${count}`,
        }, String(count));
      }),
      element("td", {}, `${(result.perClassAccuracy[trueClass] * 100).toFixed(1)}%`),
    );
  });
  table.replaceChildren(element("thead", {}, head), element("tbody", {}, ...rows));
}
