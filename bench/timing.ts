/**
 * Timing for the benchmarks: repetitions of one submit each, as in training, after `warmup`
 * untimed ones (first dispatches compile and page in), with a single wait for the GPU per trial:
 * every wait costs milliseconds in Deno (10 ms on lavapipe), so waiting per repetition would
 * swamp short steps. With `reps` the trial runs exactly that many; otherwise the repetitions
 * double until a trial lasts `minMs`. Returns milliseconds per repetition of that trial, or with
 * `trials` the median over that many trials of the same repetitions (the first included): on a
 * shared machine a burst of other load can slow one trial by a third, and bench/pytorch_resnet.py
 * takes the median of its trials too.
 */
import type { Gpu } from "../src/gpu/device.ts";
import { type Command, encodeCommands } from "../src/gpu/dispatch.ts";

export interface TimingOptions {
  reps?: number;
  minMs?: number;
  warmup?: number;
  /** Trials whose median is returned (default 1). */
  trials?: number;
  /** Runs before each submit (a step's uniform writes). */
  beforeEach?: () => void;
}

export async function timeSubmits(
  gpu: Gpu,
  groups: readonly (readonly Command[])[],
  { reps, minMs = 1000, warmup = 2, trials = 1, beforeEach }: TimingOptions = {},
): Promise<number> {
  const run = async (count: number) => {
    const start = performance.now();
    for (let i = 0; i < count; i++) {
      beforeEach?.();
      const encoder = gpu.device.createCommandEncoder();
      encodeCommands(encoder, groups.flat());
      gpu.device.queue.submit([encoder.finish()]);
    }
    await gpu.device.queue.onSubmittedWorkDone();
    return performance.now() - start;
  };
  await run(warmup);
  let count = reps ?? 1;
  let elapsed = await run(count);
  while (reps === undefined && elapsed < minMs) {
    count *= 2;
    elapsed = await run(count);
  }
  const times = [elapsed / count];
  while (times.length < trials) times.push(await run(count) / count);
  return median(times);
}

/** The middle value (the mean of the two middle ones for an even count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Fixed-width table rows for the console. */
export function formatTable(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((row) => row.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((row) => row[i].length)));
  return cells.map((row) => row.map((cell, i) => cell.padStart(widths[i])).join("  ")).join("\n");
}
