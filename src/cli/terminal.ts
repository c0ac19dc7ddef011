/**
 * The commands' progress on standard error: the training run's events drawn as bars and the
 * `compiling kernels…` line (src/train/progress.ts), and the evaluation's bar. Drawn only when
 * standard error is a terminal.
 */
import type { EvaluationResult, Evaluator } from "../train/evaluator.ts";
import type { TrainingEvents } from "../train/loop.ts";
import { compilingLine, ProgressBar, type ProgressOutput } from "../train/progress.ts";

/** Standard error, with the width of the terminal it is on. */
export const STDERR: ProgressOutput = {
  isTerminal: () => Deno.stderr.isTerminal(),
  writeSync: (bytes) => Deno.stderr.writeSync(bytes),
  columns: () => {
    try {
      return Deno.consoleSize().columns;
    } catch {
      return undefined;
    }
  },
};

/** The train command's events, and a way to erase what they drew when the run fails. */
export interface TerminalEvents extends TrainingEvents {
  /** Erases the bar or status line on the terminal, so that an error starts on a clean line. */
  clear(): void;
}

/**
 * A training run on the terminal: lines to `log`; on `output` (when it is a terminal) the
 * compile wait, then a bar per epoch ("epoch 2/4") and per evaluation ("epoch 2/4 test"), each
 * erased before the next thing is drawn or logged.
 */
export function terminalEvents(
  log: (line: string) => void,
  options: { epochs: number; output?: ProgressOutput },
): TerminalEvents {
  const { epochs, output } = options;
  let drawn: { label: string; bar: ProgressBar } | undefined;
  let compiling: { clear(): void } | undefined;
  const clear = () => {
    compiling?.clear();
    compiling = undefined;
    drawn?.bar.clear();
    drawn = undefined;
  };
  /** The bar labelled `label`, made (and the one before erased) when it is new. */
  const bar = (label: string, total: number) => {
    if (drawn?.label !== label) {
      clear();
      drawn = { label, bar: new ProgressBar(label, total, { output }) };
    }
    return drawn.bar;
  };
  const label = (epoch: number) => `epoch ${epoch + 1}/${epochs}`;
  return {
    log(line) {
      clear();
      log(line);
    },
    compiling(what) {
      clear();
      compiling = compilingLine(what, output);
      return { done: clear };
    },
    step(epoch, { submitted, done, steps, images, metrics }) {
      bar(label(epoch), steps).update({
        submitted,
        done,
        items: images,
        loss: metrics && metrics.samples > 0 ? metrics.lossSum / metrics.samples : undefined,
      });
    },
    evaluating(epoch, progress) {
      bar(`${label(epoch)} test`, progress.batches).update({ ...progress, items: progress.images });
    },
    clear,
  };
}

/**
 * Evaluates with a progress bar in images per second on the terminal (`output`), labelled
 * `label`; the bar is erased when the evaluation ends.
 */
export async function evaluateWithProgress(
  evaluator: Evaluator,
  label: string,
  output?: ProgressOutput,
): Promise<EvaluationResult> {
  const bar = new ProgressBar(label, evaluator.batches, { unit: "img", output });
  try {
    return await evaluator.evaluate((progress) =>
      bar.update({ ...progress, items: progress.images })
    );
  } finally {
    bar.clear();
  }
}
