/**
 * Timing for the benchmarks: `reps` repetitions, one submit each as in training, after `warmup`
 * untimed ones, and a single wait for the GPU at the end (every wait costs ~10 ms in Deno, so
 * waiting per repetition would distort short kernels). Returns milliseconds per repetition.
 */
import type { Gpu } from "../src/gpu/device.ts";
import { type Dispatch, encodeDispatches } from "../src/gpu/dispatch.ts";

export async function timeSubmits(
  gpu: Gpu,
  groups: readonly (readonly Dispatch[])[],
  { reps, warmup = 1, beforeEach }: { reps: number; warmup?: number; beforeEach?: () => void },
): Promise<number> {
  const run = async (count: number) => {
    for (let i = 0; i < count; i++) {
      beforeEach?.();
      const encoder = gpu.device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      for (const group of groups) encodeDispatches(pass, group);
      pass.end();
      gpu.device.queue.submit([encoder.finish()]);
    }
    await gpu.device.queue.onSubmittedWorkDone();
  };
  await run(warmup);
  const start = performance.now();
  await run(reps);
  return (performance.now() - start) / reps;
}

/** Fixed-width table rows for the console. */
export function formatTable(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((row) => row.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((row) => row[i].length)));
  return cells.map((row) => row.map((cell, i) => cell.padStart(widths[i])).join("  ")).join("\n");
}
