/**
 * A progress bar with rate and ETA for a loop of known length, such as the batches of an epoch:
 * `epoch 3 [######--------------] 117/390 30% 412 img/s ETA 0:42`. The line is drawn only on a
 * terminal, where `\r` redraws it in place; in a log file it would be noise, so there the caller's
 * per-epoch lines stand alone.
 */
import { formatDuration, formatRate } from "../util/format.ts";

export { formatBytes, formatDuration, formatRate } from "../util/format.ts";

export interface ProgressState {
  /** What the loop is, e.g. "epoch 3". */
  label: string;
  /** Steps finished, of `total`. */
  done: number;
  total: number;
  /** Items (e.g. images) processed so far, for the rate. */
  items: number;
  elapsedSeconds: number;
}

const BAR_WIDTH = 20;

/** The progress line for `state`, without line control characters. */
export function renderProgressLine(state: ProgressState, unit = "img"): string {
  const { label, done, total, items, elapsedSeconds } = state;
  const fraction = total > 0 ? Math.min(Math.max(done / total, 0), 1) : 1;
  const filled = Math.floor(fraction * BAR_WIDTH);
  const bar = "#".repeat(filled) + "-".repeat(BAR_WIDTH - filled);
  const percent = Math.floor(fraction * 100);
  const rate = formatRate(items / elapsedSeconds, unit);
  const eta = formatDuration((elapsedSeconds / done) * (total - done));
  return `${label} [${bar}] ${done}/${total} ${percent}% ${rate} ETA ${eta}`;
}

/** Where the bar is drawn; `Deno.stderr` in use, a fake in tests. */
export interface ProgressOutput {
  isTerminal(): boolean;
  writeSync(bytes: Uint8Array): number;
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
/** Carriage return, and erase to the end of the line in case the new line is shorter. */
const RETURN = "\r";
const ERASE_REST_OF_LINE = "\x1b[K";

/** Draws a `renderProgressLine` in place on a terminal, and nothing anywhere else. */
export class ProgressBar {
  readonly #label: string;
  readonly #total: number;
  readonly #unit: string;
  readonly #output: ProgressOutput;
  readonly #now: () => number;
  readonly #startedAt: number;
  readonly #enabled: boolean;
  #lastDrawAt = -Infinity;
  #drawn = false;

  constructor(label: string, total: number, options: ProgressBarOptions = {}) {
    this.#label = label;
    this.#total = total;
    this.#unit = options.unit ?? "img";
    this.#output = options.output ?? Deno.stderr;
    this.#now = options.now ?? (() => performance.now() / 1000);
    this.#startedAt = this.#now();
    this.#enabled = this.#output.isTerminal();
  }

  /** Reports `done` steps and `items` items finished; redraws at most every 0.1 s, and at the end. */
  update(done: number, items: number): void {
    if (!this.#enabled) return;
    const now = this.#now();
    if (now - this.#lastDrawAt < REDRAW_INTERVAL_SECONDS && done < this.#total) return;
    this.#lastDrawAt = now;
    const line = renderProgressLine(
      {
        label: this.#label,
        done,
        total: this.#total,
        items,
        elapsedSeconds: now - this.#startedAt,
      },
      this.#unit,
    );
    this.#write(RETURN + line + ERASE_REST_OF_LINE);
    this.#drawn = true;
  }

  /** Erases the bar, so the caller's next line (the epoch summary) starts on a clean line. */
  clear(): void {
    if (this.#drawn) this.#write(RETURN + ERASE_REST_OF_LINE);
    this.#drawn = false;
  }

  #write(text: string): void {
    this.#output.writeSync(new TextEncoder().encode(text));
  }
}
