/**
 * A self-contained SVG chart of a training run: loss per epoch and accuracy per epoch, train and
 * test, side by side. It needs nothing but a browser to view and is rewritten after every epoch.
 */

export interface EpochMetrics {
  epoch: number;
  trainLoss: number;
  testLoss: number;
  /** Fraction correct, 0..1 (drawn as 0..100%). */
  trainAccuracy: number;
  /** Fraction correct, 0..1 (drawn as 0..100%). */
  testAccuracy: number;
}

const WIDTH = 960;
const HEIGHT = 400;
const PANEL_WIDTH = WIDTH / 2;
const MARGIN = { left: 64, right: 24, top: 72, bottom: 52 };
const PLOT_WIDTH = PANEL_WIDTH - MARGIN.left - MARGIN.right;
const PLOT_HEIGHT = HEIGHT - MARGIN.top - MARGIN.bottom;
const TICK_LENGTH = 5;
const AXIS_COLOUR = "#555";
const GRID_COLOUR = "#e4e4e4";
/** Okabe-Ito blue and vermillion, told apart by colour-blind readers too; test is also dashed. */
const SERIES_COLOURS = { train: "#0072b2", test: "#d55e00" } as const;
const SERIES_LINE_STYLES = {
  train: `stroke="${SERIES_COLOURS.train}" stroke-width="2"`,
  test: `stroke="${SERIES_COLOURS.test}" stroke-width="2" stroke-dasharray="6 4"`,
} as const;
type SeriesName = keyof typeof SERIES_COLOURS;
const SERIES_NAMES = Object.keys(SERIES_COLOURS) as SeriesName[];

interface Axis {
  min: number;
  max: number;
  ticks: number[];
  format: (value: number) => string;
}

interface Panel {
  /** Names the panel in `data-panel` / `data-series` attributes, for tests and styling. */
  id: string;
  title: string;
  yLabel: string;
  left: number;
  x: Axis;
  y: Axis;
  series: Record<SeriesName, number[]>;
}

/**
 * Renders `rows` (one per epoch, in epoch order) as an SVG document. Non-finite values (a diverged
 * loss) are left out, breaking the line there. `title` is escaped, so a run name is safe in it.
 */
export function renderTrainingChart(rows: readonly EpochMetrics[], title = "Training"): string {
  const epochs = rows.map((row) => row.epoch);
  const x = epochAxis(epochs);
  const panels: Panel[] = [
    {
      id: "loss",
      title: "Loss",
      yLabel: "loss",
      left: 0,
      x,
      y: lossAxis(rows.flatMap((row) => [row.trainLoss, row.testLoss])),
      series: {
        train: rows.map((row) => row.trainLoss),
        test: rows.map((row) => row.testLoss),
      },
    },
    {
      id: "accuracy",
      title: "Accuracy",
      yLabel: "accuracy",
      left: PANEL_WIDTH,
      x,
      y: { min: 0, max: 100, ticks: [0, 20, 40, 60, 80, 100], format: (value) => `${value}%` },
      series: {
        train: rows.map((row) => row.trainAccuracy * 100),
        test: rows.map((row) => row.testAccuracy * 100),
      },
    },
  ];
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" ` +
    `viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    text(WIDTH / 2, 28, title, `text-anchor="middle" font-size="16" font-weight="bold"`),
    ...panels.map((panel) => renderPanel(panel, epochs)),
    "</svg>",
    "",
  ].join("\n");
}

function renderPanel(panel: Panel, epochs: number[]): string {
  const box = {
    x: panel.left + MARGIN.left,
    y: MARGIN.top,
    width: PLOT_WIDTH,
    height: PLOT_HEIGHT,
  };
  const bottom = box.y + box.height;
  const toX = (epoch: number) =>
    box.x + ((epoch - panel.x.min) / (panel.x.max - panel.x.min)) * box.width;
  const toY = (value: number) =>
    bottom - ((value - panel.y.min) / (panel.y.max - panel.y.min)) * box.height;
  const parts = [`<g data-panel="${panel.id}">`];

  for (const tick of panel.y.ticks) {
    const y = coordinate(toY(tick));
    parts.push(
      line(box.x, y, box.x + box.width, y, GRID_COLOUR),
      line(box.x - TICK_LENGTH, y, box.x, y, AXIS_COLOUR),
      text(box.x - TICK_LENGTH - 3, y + 4, panel.y.format(tick), `text-anchor="end"`),
    );
  }
  for (const tick of panel.x.ticks) {
    const x = coordinate(toX(tick));
    parts.push(
      line(x, bottom, x, bottom + TICK_LENGTH, AXIS_COLOUR),
      text(x, bottom + TICK_LENGTH + 13, panel.x.format(tick), `text-anchor="middle"`),
    );
  }
  parts.push(
    `<rect data-plot="${panel.id}" x="${box.x}" y="${box.y}" width="${box.width}" ` +
      `height="${box.height}" fill="none" stroke="${AXIS_COLOUR}"/>`,
    text(box.x + box.width / 2, bottom + 42, "epoch", `text-anchor="middle"`),
    text(
      panel.left + 16,
      box.y + box.height / 2,
      panel.yLabel,
      `text-anchor="middle" transform="rotate(-90 ${panel.left + 16} ${box.y + box.height / 2})"`,
    ),
    text(box.x, box.y - 14, panel.title, `font-size="14" font-weight="bold"`),
    legend(box.x + box.width, box.y - 18),
  );

  for (const name of SERIES_NAMES) {
    const points = epochs.map((epoch, i) => [epoch, panel.series[name][i]]);
    for (const segment of finiteSegments(points)) {
      const xy = segment.map(([epoch, value]) => [coordinate(toX(epoch)), coordinate(toY(value))]);
      const series = `data-series="${panel.id}-${name}"`;
      // A lone point draws no line, so it gets a dot instead.
      parts.push(
        xy.length === 1
          ? `<circle ${series} cx="${xy[0][0]}" cy="${xy[0][1]}" r="3.5" fill="${
            SERIES_COLOURS[name]
          }"/>`
          : `<polyline ${series} fill="none" ${SERIES_LINE_STYLES[name]} points="${
            xy.map((p) => p.join(",")).join(" ")
          }"/>`,
      );
    }
  }
  parts.push("</g>");
  return parts.join("\n");
}

/** A legend for both series, right-aligned at (`right`, `y`). */
function legend(right: number, y: number): string {
  const entryWidth = 64;
  return SERIES_NAMES.map((name, i) => {
    const x = right - entryWidth * (SERIES_NAMES.length - i);
    return `<line x1="${x}" y1="${y - 4}" x2="${x + 22}" y2="${y - 4}" ${
      SERIES_LINE_STYLES[name]
    }/>\n` +
      text(x + 28, y, name);
  }).join("\n");
}

/** Splits points at non-finite values into runs of consecutive finite points. */
function finiteSegments(points: number[][]): number[][][] {
  const segments: number[][][] = [[]];
  for (const point of points) {
    if (point.every(Number.isFinite)) segments.at(-1)!.push(point);
    else if (segments.at(-1)!.length > 0) segments.push([]);
  }
  return segments.filter((segment) => segment.length > 0);
}

/** Epochs from first to last; a single epoch gets half an epoch either side so it is centred. */
function epochAxis(epochs: number[]): Axis {
  const first = Math.min(...epochs.filter(Number.isFinite), Infinity);
  const last = Math.max(...epochs.filter(Number.isFinite), -Infinity);
  if (!(first < last)) {
    const epoch = Number.isFinite(first) ? first : 1;
    return { min: epoch - 0.5, max: epoch + 0.5, ticks: [epoch], format: String };
  }
  const step = Math.max(1, niceStep(last - first, 8));
  const ticks = multiplesWithin(first, last, step);
  return { min: first, max: last, ticks, format: String };
}

/** From 0 up to the largest finite loss, rounded up to a whole tick. */
function lossAxis(losses: number[]): Axis {
  const largest = Math.max(0, ...losses.filter(Number.isFinite));
  const top = largest > 0 ? largest : 1;
  const step = niceStep(top, 5);
  const max = Math.ceil(top / step) * step;
  const decimals = Math.max(0, -Math.floor(Math.log10(step)));
  return { min: 0, max, ticks: multiplesWithin(0, max, step), format: (v) => v.toFixed(decimals) };
}

/** The smallest of 1, 2 or 5 times a power of ten that splits `range` into at most `count`. */
function niceStep(range: number, count: number): number {
  const rough = range / count;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  return [1, 2, 5, 10].map((m) => m * magnitude).find((step) => step >= rough)!;
}

/** Multiples of `step` from `min` to `max`, computed as products so they do not drift. */
function multiplesWithin(min: number, max: number, step: number): number[] {
  const ticks: number[] = [];
  for (let k = Math.ceil(min / step - 1e-9); k * step <= max + step * 1e-9; k++) {
    ticks.push(k * step);
  }
  return ticks;
}

/** Two decimals are far finer than a pixel and keep the file small. */
function coordinate(value: number): number {
  return Math.round(value * 100) / 100;
}

function line(x1: number, y1: number, x2: number, y2: number, colour: string): string {
  return `<line x1="${x1}" y1="${y1}" x2="${x2}" y2="${y2}" stroke="${colour}"/>`;
}

function text(x: number, y: number, content: string, attributes = ""): string {
  return `<text x="${x}" y="${y}" ${attributes}>${escapeXml(content)}</text>`;
}

function escapeXml(content: string): string {
  return content.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
