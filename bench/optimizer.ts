/**
 * Microbenchmark of one optimizer step over a ResNet-18-sized parameter arena (the CIFAR variant:
 * 11,173,962 parameters): milliseconds per step and the memory bandwidth that implies. The update
 * is memory-bound (Adam moves 28 bytes per parameter for 10 flops), so GB/s against the device's
 * bandwidth says how close it runs to its ceiling.
 *
 * Each step is timed as the trainer runs it: one uniform write and one submit, the submits
 * queued back to back and waited for once at the end, over enough steps to amortise that wait.
 *
 *   deno run bench/optimizer.ts
 */
import { STORAGE_ALIGNMENT, STORAGE_USAGE, uploadBuffer } from "../src/gpu/buffer.ts";
import type { Gpu } from "../src/gpu/device.ts";
import { requestGpu } from "../src/gpu/deno_device.ts";
import { submitDispatches } from "../src/gpu/dispatch.ts";
import { Optimizer, type OptimizerConfig } from "../src/train/optimizer.ts";

/** Trainable parameters of the CIFAR ResNet-18 (conv weights, BN weights and biases, fc). */
export const RESNET18_PARAMETERS = 11_173_962;

export interface OptimizerBenchOptions {
  /** Parameters in the arena (default ResNet-18's), rounded up to whole 256-byte blocks. */
  parameters?: number;
  /** Optimizers to time (default Adam with PyTorch's defaults). */
  configs?: OptimizerConfig[];
  /** Time batches of steps, doubling, until a batch lasts this long (default 1 s). */
  minSeconds?: number;
}

export interface OptimizerBenchRow {
  adapter: string;
  optimizer: string;
  parameters: number;
  /** Bytes read and written per step: params, grads and state read; params and state written. */
  bytesPerStep: number;
  /** Milliseconds per step. */
  ms: number;
  gbPerSecond: number;
}

function describe(config: OptimizerConfig): string {
  if (config.kind !== "sgd") return config.kind;
  if (!config.momentum) return "sgd";
  return config.nesterov ? "sgd nesterov" : "sgd momentum";
}

/** Random gradients, as a real step sees; all zeros could run faster on a CPU adapter. */
function randomValues(count: number): Float32Array<ArrayBuffer> {
  const values = new Float32Array(count);
  for (let i = 0; i < count; i++) values[i] = Math.random() * 2 - 1;
  return values;
}

async function timeSteps(gpu: Gpu, optimizer: Optimizer, steps: number): Promise<number> {
  const start = performance.now();
  for (let step = 0; step < steps; step++) {
    optimizer.prepareStep(1e-3);
    submitDispatches(gpu, optimizer.dispatches);
  }
  await gpu.device.queue.onSubmittedWorkDone();
  return (performance.now() - start) / 1000;
}

export async function benchOptimizer(
  gpu: Gpu,
  options: OptimizerBenchOptions = {},
): Promise<OptimizerBenchRow[]> {
  const parameters = options.parameters ?? RESNET18_PARAMETERS;
  const configs = options.configs ?? [{ kind: "adam", lr: 1e-3 }];
  const minSeconds = options.minSeconds ?? 1;
  const floatsPerBlock = STORAGE_ALIGNMENT / 4;
  const length = Math.ceil(parameters / floatsPerBlock) * floatsPerBlock;
  const params = uploadBuffer(gpu, "bench params", randomValues(length), STORAGE_USAGE);
  const grads = uploadBuffer(gpu, "bench grads", randomValues(length), STORAGE_USAGE);
  const arena = { params, grads, size: length * 4 };
  const rows: OptimizerBenchRow[] = [];
  for (const config of configs) {
    const optimizer = await Optimizer.create(gpu, arena, config);
    await timeSteps(gpu, optimizer, 2); // warm-up: first-use costs of pipelines and buffers
    let steps = 1;
    let seconds = await timeSteps(gpu, optimizer, steps);
    while (seconds < minSeconds) {
      steps *= 2;
      seconds = await timeSteps(gpu, optimizer, steps);
    }
    const error = gpu.takeUncapturedError();
    if (error) throw new Error(`GPU error in the ${config.kind} benchmark: ${error.message}`);
    // Reads params, grads and each state buffer; writes params and each state buffer.
    const bytesPerStep = arena.size * (3 + 2 * optimizer.stateBuffers.length);
    rows.push({
      adapter: gpu.adapterName,
      optimizer: describe(config),
      parameters,
      bytesPerStep,
      ms: seconds / steps * 1000,
      gbPerSecond: bytesPerStep * steps / seconds / 1e9,
    });
    optimizer.destroy();
  }
  params.destroy();
  grads.destroy();
  return rows;
}

if (import.meta.main) {
  const gpu = await requestGpu();
  const rows = await benchOptimizer(gpu, {
    configs: [
      { kind: "adam", lr: 1e-3 },
      { kind: "sgd", lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 5e-4 },
    ],
  });
  console.log(`Optimizer step on ${gpu.adapterName}`);
  for (const row of rows) {
    console.log(
      `${row.optimizer.padEnd(14)} ${row.parameters.toLocaleString("en")} parameters  ` +
        `${row.ms.toFixed(2).padStart(8)} ms  ${row.gbPerSecond.toFixed(1).padStart(7)} GB/s`,
    );
  }
  gpu.device.destroy();
}
