/// <reference lib="dom" />
/**
 * A line chart drawn as SVG, redrawn whole whenever its data changes: training metrics every few
 * steps (a solid line) and test metrics per epoch (a dashed line with dots), against epochs. The
 * colours are those of the CLI's chart.svg (src/train/chart.ts): Okabe-Ito blue and vermillion.
 */

export interface ChartOptions {
  title: string;
  /** How the y axis labels values, e.g. as percentages. */
  format: (value: number) => string;
  /** A fixed y range (accuracy: 0..1); by default 0 up to the largest value. */
  yRange?: [number, number];
}

/** A point: x in epochs (fractional within an epoch), y the metric. */
export type Point = readonly [number, number];

/** Drawn at the container's width in CSS pixels (so text stays 12px), within these bounds. */
const MIN_WIDTH = 260;
const FALLBACK_WIDTH = 480;
const MAX_HEIGHT = 280;
const MARGIN = { left: 46, right: 10, top: 30, bottom: 34 };
const SERIES = {
  train: { colour: "#0072b2", dash: "", label: "train" },
  test: { colour: "#d55e00", dash: "6 4", label: "test" },
} as const;
export type SeriesName = keyof typeof SERIES;

export class LiveChart {
  readonly #container: HTMLElement;
  readonly #options: ChartOptions;
  readonly #series: Record<SeriesName, Point[]> = { train: [], test: [] };
  /** The x axis runs to at least this many epochs: the run's length. */
  #epochs = 1;

  constructor(container: HTMLElement, options: ChartOptions) {
    this.#container = container;
    this.#options = options;
    new ResizeObserver(() => this.render()).observe(container);
    this.render();
  }

  /** Starts over for a run of `epochs` epochs. */
  reset(epochs: number): void {
    this.#epochs = epochs;
    this.#series.train = [];
    this.#series.test = [];
    this.render();
  }

  add(series: SeriesName, point: Point): void {
    if (!point.every(Number.isFinite)) return;
    this.#series[series].push(point);
    this.render();
  }

  render(): void {
    this.#container.innerHTML = this.#svg();
  }

  #svg(): string {
    const { title, format } = this.#options;
    const width = Math.max(MIN_WIDTH, this.#container.clientWidth || FALLBACK_WIDTH);
    const height = Math.min(MAX_HEIGHT, Math.round(width * 0.6));
    const all = [...this.#series.train, ...this.#series.test];
    const [yMin, yMax] = this.#options.yRange ??
      [0, niceCeiling(Math.max(0, ...all.map(([, y]) => y)))];
    const xMax = Math.max(this.#epochs, ...all.map(([x]) => x));
    const plot = {
      left: MARGIN.left,
      top: MARGIN.top,
      width: width - MARGIN.left - MARGIN.right,
      height: height - MARGIN.top - MARGIN.bottom,
    };
    const toX = (x: number) => round(plot.left + (x / xMax) * plot.width);
    const toY = (y: number) =>
      round(plot.top + plot.height - ((y - yMin) / (yMax - yMin)) * plot.height);
    const parts: string[] = [
      `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
      `role="img" aria-label="${escape(title)}" font-family="system-ui, sans-serif" ` +
      `font-size="12">`,
      `<text x="${plot.left}" y="18" font-size="14" font-weight="600">${escape(title)}</text>`,
    ];
    for (const tick of ticks(yMin, yMax, 5)) {
      const y = toY(tick);
      parts.push(
        `<line x1="${plot.left}" x2="${plot.left + plot.width}" y1="${y}" y2="${y}" ` +
          `stroke="#e4e4e4"/>`,
        `<text x="${plot.left - 6}" y="${y + 4}" text-anchor="end">${escape(format(tick))}</text>`,
      );
    }
    for (const tick of ticks(0, xMax, Math.min(8, Math.ceil(xMax))).filter(Number.isInteger)) {
      parts.push(
        `<text x="${toX(tick)}" y="${plot.top + plot.height + 14}" text-anchor="middle">` +
          `${tick}</text>`,
      );
    }
    parts.push(
      `<rect x="${plot.left}" y="${plot.top}" width="${plot.width}" height="${plot.height}" ` +
        `fill="none" stroke="#888"/>`,
      `<text x="${plot.left + plot.width / 2}" y="${height - 4}" text-anchor="middle">epoch</text>`,
    );
    Object.entries(SERIES).forEach(([name, style], i) => {
      const x = plot.left + plot.width - 112 + i * 58;
      parts.push(
        `<line x1="${x}" x2="${x + 18}" y1="14" y2="14" stroke="${style.colour}" ` +
          `stroke-width="2" stroke-dasharray="${style.dash}"/>`,
        `<text x="${x + 22}" y="18">${style.label}</text>`,
      );
      const series = this.#series[name as SeriesName];
      const points = series.map(([px, py]) => `${toX(px)},${toY(py)}`);
      if (points.length === 0) return;
      // The values themselves ride along, for reading the chart back exactly (the tests do).
      parts.push(
        `<polyline data-series="${name}" data-values="${escape(JSON.stringify(series))}" ` +
          `points="${points.join(" ")}" fill="none" ` +
          `stroke="${style.colour}" stroke-width="2" stroke-dasharray="${style.dash}"/>`,
      );
      if (name === "test") {
        for (const point of points) {
          const [cx, cy] = point.split(",");
          parts.push(`<circle cx="${cx}" cy="${cy}" r="3" fill="${style.colour}"/>`);
        }
      }
    });
    parts.push("</svg>");
    return parts.join("");
  }
}

/** The smallest of 1, 2, 2.5 or 5 times a power of ten at or above `value` (1 for none). */
function niceCeiling(value: number): number {
  if (!(value > 0)) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((nice) => nice >= value)!;
}

/** About `count` evenly spaced round values from `min` to `max`. */
function ticks(min: number, max: number, count: number): number[] {
  const rough = (max - min) / Math.max(1, count);
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= rough)!;
  const values: number[] = [];
  for (let k = Math.ceil(min / step - 1e-9); k * step <= max + step * 1e-9; k++) {
    values.push(Number((k * step).toPrecision(12)));
  }
  return values;
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
