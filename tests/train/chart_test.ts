import assert from "node:assert/strict";
import { type EpochMetrics, renderTrainingChart } from "../../src/train/chart.ts";

type Attributes = Record<string, string>;

/** The attributes of every `<tag ...>` element in the document, in order. */
function elements(svg: string, tag: string): Attributes[] {
  return [...svg.matchAll(new RegExp(`<${tag}\\s([^>]*?)/?>`, "g"))].map(([, body]) =>
    Object.fromEntries(
      [...body.matchAll(/([\w-]+)="([^"]*)"/g)].map(([, name, value]) => [name, value]),
    )
  );
}

/** Checks the document is well formed enough for a browser: tags balance, text is escaped. */
function assertWellFormed(svg: string): void {
  const open: string[] = [];
  const tags = /<(\/?)([a-zA-Z]+)[^<>]*?(\/?)>/g;
  for (const [, closing, name, selfClosing] of svg.matchAll(tags)) {
    if (closing) assert.equal(open.pop(), name, `</${name}> closes the open element`);
    else if (!selfClosing) open.push(name);
  }
  assert.deepEqual(open, [], "every element is closed");
  assert.doesNotMatch(svg.replace(tags, ""), /[<>]|&(?!#\d+;)/, "no raw markup outside tags");
  assert.doesNotMatch(svg, /NaN|Infinity|undefined/);
  assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'));
}

interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

function plotBox(svg: string, panel: string): Box {
  const [rect] = elements(svg, "rect").filter((attributes) => attributes["data-plot"] === panel);
  return { x: +rect.x, y: +rect.y, width: +rect.width, height: +rect.height };
}

/** The points of each polyline of one series, as [x, y] pairs. */
function seriesLines(svg: string, series: string): number[][][] {
  return elements(svg, "polyline")
    .filter((attributes) => attributes["data-series"] === series)
    .map((attributes) => attributes.points.split(" ").map((point) => point.split(",").map(Number)));
}

/** Where a value should land: the plot box spans the axis range, higher values further up. */
function expectedY(box: Box, value: number, max: number): number {
  return box.y + box.height * (1 - value / max);
}

function assertClose(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= 0.01, `${what}: ${actual} vs ${expected}`);
}

function syntheticRun(epochs: number): EpochMetrics[] {
  return Array.from({ length: epochs }, (_, i) => ({
    epoch: i + 1,
    trainLoss: 2.3 / (1 + i * 0.1),
    testLoss: 2.2 / (1 + i * 0.08),
    trainAccuracy: Math.min(0.99, 0.3 + i * 0.004),
    testAccuracy: Math.min(0.95, 0.25 + i * 0.0035),
  }));
}

Deno.test("the chart has one line per series with a point per epoch inside its plot box", () => {
  const rows = syntheticRun(10);
  const svg = renderTrainingChart(rows);
  assertWellFormed(svg);
  for (const panel of ["loss", "accuracy"]) {
    const box = plotBox(svg, panel);
    for (const series of ["train", "test"]) {
      const lines = seriesLines(svg, `${panel}-${series}`);
      assert.equal(lines.length, 1, `${panel}-${series}`);
      const [points] = lines;
      assert.equal(points.length, rows.length);
      for (const [x, y] of points) {
        assert.ok(x >= box.x && x <= box.x + box.width, `x ${x} in ${JSON.stringify(box)}`);
        assert.ok(y >= box.y && y <= box.y + box.height, `y ${y} in ${JSON.stringify(box)}`);
      }
      assertClose(points[0][0], box.x, "first epoch at the left edge");
      assertClose(points.at(-1)![0], box.x + box.width, "last epoch at the right edge");
    }
  }
});

Deno.test("accuracy maps 0..1 onto 0..100% of the plot height, loss onto 0..its top tick", () => {
  const rows = syntheticRun(4);
  const svg = renderTrainingChart(rows);
  const accuracyBox = plotBox(svg, "accuracy");
  const [testAccuracy] = seriesLines(svg, "accuracy-test");
  rows.forEach((row, i) => {
    assertClose(testAccuracy[i][1], expectedY(accuracyBox, row.testAccuracy, 1), `epoch ${i + 1}`);
  });
  const accuracyLabels = tickLabels(svg, "accuracy");
  assert.deepEqual(accuracyLabels, ["0%", "20%", "40%", "60%", "80%", "100%"]);

  // The largest loss is 2.3, so the axis runs to the next tick of 0.5: 2.5.
  assert.deepEqual(tickLabels(svg, "loss"), ["0.0", "0.5", "1.0", "1.5", "2.0", "2.5"]);
  const lossBox = plotBox(svg, "loss");
  const [trainLoss] = seriesLines(svg, "loss-train");
  rows.forEach((row, i) => {
    assertClose(trainLoss[i][1], expectedY(lossBox, row.trainLoss, 2.5), `epoch ${i + 1}`);
  });
});

/** The y tick labels of a panel: right-aligned texts left of its plot box. */
function tickLabels(svg: string, panel: string): string[] {
  const group = svg.split(`<g data-panel="${panel}">`)[1].split("</g>")[0];
  return [...group.matchAll(/<text [^>]*text-anchor="end"[^>]*>([^<]*)<\/text>/g)].map((
    [, label],
  ) => label);
}

Deno.test("a single epoch is drawn as centred dots", () => {
  const svg = renderTrainingChart(syntheticRun(1));
  assertWellFormed(svg);
  assert.equal(elements(svg, "polyline").length, 0);
  const dots = elements(svg, "circle");
  assert.deepEqual(dots.map((dot) => dot["data-series"]), [
    "loss-train",
    "loss-test",
    "accuracy-train",
    "accuracy-test",
  ]);
  const box = plotBox(svg, "accuracy");
  assertClose(+dots[3].cx, box.x + box.width / 2, "centred");
  assertClose(+dots[3].cy, expectedY(box, 0.25, 1), "25%");
});

Deno.test("200 epochs give 200 points and a readable number of epoch ticks", () => {
  const svg = renderTrainingChart(syntheticRun(200));
  assertWellFormed(svg);
  for (const series of ["loss-train", "loss-test", "accuracy-train", "accuracy-test"]) {
    assert.equal(seriesLines(svg, series)[0].length, 200, series);
  }
  const epochTicks = [
    ...svg.split('<g data-panel="loss">')[1].split("</g>")[0]
      .matchAll(/text-anchor="middle">(\d+)<\/text>/g),
  ].map(([, label]) => Number(label));
  assert.deepEqual(epochTicks, [50, 100, 150, 200]);
});

Deno.test("a diverged loss breaks the line instead of drawing NaN", () => {
  const rows = syntheticRun(6);
  rows[2].trainLoss = NaN;
  rows[3].trainLoss = Infinity;
  const svg = renderTrainingChart(rows);
  assertWellFormed(svg);
  assert.deepEqual(seriesLines(svg, "loss-train").map((points) => points.length), [2, 2]);
  assert.equal(seriesLines(svg, "loss-test")[0].length, 6);
});

Deno.test("the title is escaped and no rows still give empty axes", () => {
  const svg = renderTrainingChart([], `resnet <20> & "friends"`);
  assertWellFormed(svg);
  assert.match(svg, />resnet &#60;20&#62; &#38; &#34;friends&#34;<\/text>/);
  assert.equal(elements(svg, "polyline").length + elements(svg, "circle").length, 0);
  assert.equal(elements(svg, "rect").filter((rect) => rect["data-plot"]).length, 2);
});
