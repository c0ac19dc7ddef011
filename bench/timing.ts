/**
 * Timing for the benchmarks: repetitions of one submit each, as in training, after `warmup`
 * untimed ones (first dispatches compile and page in), with a single wait for the GPU per trial:
 * every wait costs milliseconds in Deno (10 ms on lavapipe), so waiting per repetition would
 * swamp short steps. With `reps` the trial runs exactly that many; otherwise the repetitions
 * double until a trial lasts `minMs`. Returns milliseconds per repetition of the last trial.
 */
import type { Gpu } from "../src/gpu/device.ts";
import { type Command, encodeCommands } from "../src/gpu/dispatch.ts";

export interface TimingOptions {
  reps?: number;
  minMs?: number;
  warmup?: number;
  /** Runs before each submit (a step's uniform writes). */
  beforeEach?: () => void;
}

export async function timeSubmits(
  gpu: Gpu,
  groups: readonly (readonly Command[])[],
  { reps, minMs = 1000, warmup = 2, beforeEach }: TimingOptions = {},
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
  if (reps !== undefined) return await run(reps) / reps;
  for (let count = 1;; count *= 2) {
    const elapsed = await run(count);
    if (elapsed >= minMs) return elapsed / count;
  }
}

/** Fixed-width table rows for the console. */
export function formatTable(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((row) => row.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((row) => row[i].length)));
  return cells.map((row) => row.map((cell, i) => cell.padStart(widths[i])).join("  ")).join("\n");
}
