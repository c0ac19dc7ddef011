/**
 * Progress on a terminal: a bar with rate and ETA for a loop of GPU steps, such as the batches of
 * an epoch (`epoch 1/4 [####====------------] 16/40 40% (8 done) loss 2.3012 30.2 img/s ETA
 * 0:17`), and a status line for a wait with nothing to count (`compiling kernels…`). Both are
 * drawn only on a terminal, where `\r` redraws them in place; in a log file they would be noise,
 * so there the caller's lines stand alone.
 *
 * A step is first submitted to the GPU, and known to be done only when a readback says so, some
 * steps later: the bar shows both, `#` for the steps known done and `=` for those submitted
 * beyond them, and draws from the first submitted step on.
 */
import { formatDuration, formatRate } from "../util/format.ts";

export { formatBytes, formatDuration, formatRate } from "../util/format.ts";

export interface ProgressState {
  /** What the loop is, e.g. "epoch 3". */
  label: string;
  /** Steps known to be finished, of `total`. */
  done: number;
  /** Steps submitted to the GPU, at least `done`; default `done`. */
  submitted?: number;
  total: number;
  /** Items (e.g. images) per second, once measured. */
  itemsPerSecond?: number;
  /** Seconds left, once known. */
  etaSeconds?: number;
  /** The mean loss so far, once read back. */
  loss?: number;
}

const BAR_WIDTH = 20;

/**
 * The progress line for `state`, without line control characters, at most `columns` characters
 * long: the done count, then the loss, the rate and the ETA are left out, in that order, to fit.
 */
export function renderProgressLine(state: ProgressState, unit = "img", columns = Infinity): string {
  const { label, done, total } = state;
  const submitted = Math.max(state.submitted ?? done, done);
  const fraction = (steps: number) => total > 0 ? Math.min(Math.max(steps / total, 0), 1) : 1;
  const filled = Math.floor(fraction(done) * BAR_WIDTH);
  const sent = Math.floor(fraction(submitted) * BAR_WIDTH) - filled;
  const bar = "#".repeat(filled) + "=".repeat(sent) + "-".repeat(BAR_WIDTH - filled - sent);
  const percent = Math.floor(fraction(submitted) * 100);
  const head = `${label} [${bar}] ${submitted}/${total} ${percent}%`;
  // In the order they are given up when the line is too long for the terminal.
  const optional = [
    submitted > done ? `(${done} done)` : undefined,
    state.loss === undefined ? undefined : `loss ${state.loss.toFixed(4)}`,
    formatRate(state.itemsPerSecond ?? NaN, unit),
    `ETA ${formatDuration(state.etaSeconds ?? NaN)}`,
  ];
  for (let skip = 0; skip <= optional.length; skip++) {
    const line = [head, ...optional.slice(skip).filter((part) => part !== undefined)].join(" ");
    if (line.length <= columns) return line;
  }
  return head.slice(0, Math.max(0, columns));
}

/**
 * Where the bar is drawn: standard error in the commands (src/cli/terminal.ts), a fake in tests.
 * Without one nothing is drawn.
 */
export interface ProgressOutput {
  isTerminal(): boolean;
  writeSync(bytes: Uint8Array): number;
  /** The terminal's width in characters, when known. */
  columns?(): number | undefined;
}

/** Carriage return, and erase to the end of the line in case the new line is shorter. */
const RETURN = "\r";
const ERASE_REST_OF_LINE = "\x1b[K";

/**
 * One line redrawn in place on a terminal, and nothing anywhere else. It stays shorter than the
 * terminal is wide: a line that wraps could not be redrawn in place.
 */
export class StatusLine {
  readonly #output?: ProgressOutput;
  readonly enabled: boolean;
  #drawn = false;

  constructor(output?: ProgressOutput) {
    this.#output = output;
    this.enabled = output?.isTerminal() ?? false;
  }

  /** Characters a line may take: one less than the terminal's width (no limit where unknown). */
  get columns(): number {
    const columns = this.#output?.columns?.();
    return columns && columns > 1 ? columns - 1 : Infinity;
  }

  show(text: string): void {
    if (!this.enabled) return;
    this.#write(RETURN + text.slice(0, this.columns) + ERASE_REST_OF_LINE);
    this.#drawn = true;
  }

  /** Erases the line, so the caller's next line starts on a clean line. */
  clear(): void {
    if (this.#drawn) this.#write(RETURN + ERASE_REST_OF_LINE);
    this.#drawn = false;
  }

  #write(text: string): void {
    this.#output?.writeSync(new TextEncoder().encode(text));
  }
}

/** What a loop of GPU steps reports to its bar. */
export interface ProgressUpdate {
  /** Steps submitted to the GPU; default `done`. */
  submitted?: number;
  /** Steps known to be finished (as of the latest readback; the GPU may be further on). */
  done: number;
  /** Items (e.g. images) in the submitted steps, for the rate. */
  items: number;
  /** The mean loss so far, once read back. */
  loss?: number;
}

export interface ProgressBarOptions {
  /** What `items` counts, for the rate. Default "img". */
  unit?: string;
  output?: ProgressOutput;
  /** Seconds on a monotonic clock. */
  now?: () => number;
}

/** Redrawing more often than this only costs time; the eye does not notice. */
const REDRAW_INTERVAL_SECONDS = 0.1;

/** When a readback moved `done` on, and how far the loop had got. */
interface Sample {
  seconds: number;
  submitted: number;
  items: number;
}

/**
 * Draws a `renderProgressLine` in place on a terminal, and nothing anywhere else. The rate is
 * measured between readbacks (the updates that move `done` on), from the first to the latest, so
 * the steps before the first one do not count: on a CPU adapter they can take many times longer
 * (the driver compiles kernels when they first run). The GPU runs at most a bounded number of
 * steps behind the loop, so over that window the loop's pace is the GPU's. Until a second readback
 * there is no rate and no ETA.
 */
export class ProgressBar {
  readonly #label: string;
  readonly #total: number;
  readonly #unit: string;
  readonly #line: StatusLine;
  readonly #now: () => number;
  #lastDrawAt = -Infinity;
  #done = 0;
  #first?: Sample;
  #latest?: Sample;

  constructor(label: string, total: number, options: ProgressBarOptions = {}) {
    this.#label = label;
    this.#total = total;
    this.#unit = options.unit ?? "img";
    this.#line = new StatusLine(options.output);
    this.#now = options.now ?? (() => performance.now() / 1000);
  }

  /** Reports the steps submitted and done; redraws at most every 0.1 s, and when all are done. */
  update(progress: ProgressUpdate): void {
    if (!this.#line.enabled) return;
    const now = this.#now();
    const submitted = Math.max(progress.submitted ?? progress.done, progress.done);
    if (progress.done > this.#done) {
      this.#done = progress.done;
      this.#latest = { seconds: now, submitted, items: progress.items };
      this.#first ??= this.#latest;
    }
    if (now - this.#lastDrawAt < REDRAW_INTERVAL_SECONDS && progress.done < this.#total) return;
    this.#lastDrawAt = now;
    this.#line.show(renderProgressLine(
      {
        label: this.#label,
        done: progress.done,
        submitted,
        total: this.#total,
        loss: progress.loss,
        ...this.#pace(now),
      },
      this.#unit,
      this.#line.columns,
    ));
  }

  /** The rate and the time left, from the readbacks so far. */
  #pace(now: number): { itemsPerSecond?: number; etaSeconds?: number } {
    const [first, latest] = [this.#first, this.#latest];
    if (!first || !latest || latest.seconds <= first.seconds) return {};
    const seconds = latest.seconds - first.seconds;
    const stepsPerSecond = (latest.submitted - first.submitted) / seconds;
    const left = (this.#total - latest.submitted) / stepsPerSecond - (now - latest.seconds);
    return {
      itemsPerSecond: (latest.items - first.items) / seconds,
      etaSeconds: Math.max(0, left),
    };
  }

  /** Erases the bar, so the caller's next line (the epoch summary) starts on a clean line. */
  clear(): void {
    this.#line.clear();
  }
}

/** Shows `compiling kernels for <what>…` on the terminal, until the line is cleared. */
export function compilingLine(what: string, output?: ProgressOutput): StatusLine {
  const line = new StatusLine(output);
  line.show(`compiling kernels for ${what}…`);
  return line;
}

/**
 * Runs `build` (building plans, which is mostly compiling their kernels) with
 * `compiling kernels for <what>…` on the terminal meanwhile, and returns what it built and the
 * seconds it took.
 */
export async function compilingKernels<T>(
  what: string,
  build: () => Promise<T>,
  options: { output?: ProgressOutput; now?: () => number } = {},
): Promise<{ value: T; seconds: number }> {
  const now = options.now ?? (() => performance.now() / 1000);
  const line = compilingLine(what, options.output);
  const start = now();
  try {
    const value = await build();
    return { value, seconds: now() - start };
  } finally {
    line.clear();
  }
}
