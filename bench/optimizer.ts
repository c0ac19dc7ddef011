/**
 * Microbenchmark of one optimizer step over a ResNet-18-sized parameter arena (the CIFAR variant:
 * 11,173,962 parameters): milliseconds per step and the memory bandwidth that implies. The update
 * is memory-bound (Adam moves 28 bytes per parameter for 10 flops), so GB/s against the device's
 * bandwidth says how close it runs to its ceiling. Beside it, the weights' moving average
 * (src/ops/ema.ts, 12 bytes per parameter) over ResNet-9's arena (6,573,130 parameters), the
 * update --ema adds to every step, with ResNet-9's SGD step for scale. And the dynamic loss scaling
 * f16 training adds (src/train/loss_scale.ts, shaders/optimizer.wgsl): the overflow check over the
 * gradient arena (`find_non_finite`), the update with LOSS_SCALING (unscales the gradients, skips
 * the step on an overflow), the one-invocation scale update (`update_scale`), and the three in one
 * submit, as the trainer runs them.
 *
 * Each step is timed as the trainer runs it: one uniform write and one submit, the submits
 * queued back to back and waited for once at the end, over enough steps to amortise that wait.
 *
 *   deno run bench/optimizer.ts
 */
import {
  bufferChunks,
  largestChunk,
  STORAGE_ALIGNMENT,
  STORAGE_USAGE,
  uploadBuffer,
} from "../src/gpu/buffer.ts";
import type { Gpu } from "../src/gpu/device.ts";
import { requestGpu } from "../src/gpu/deno_device.ts";
import { type Command, submitCommands } from "../src/gpu/dispatch.ts";
import { byteSize, type Tensor } from "../src/gpu/tensor.ts";
import { emaUpdate } from "../src/ops/ema.ts";
import { materialize } from "../src/plan/materialize.ts";
import {
  Optimizer,
  type OptimizerConfig,
  type OptimizerOptions,
  type ParameterArena,
} from "../src/train/optimizer.ts";

/** Trainable parameters of the CIFAR ResNet-18 (conv weights, BN weights and biases, fc). */
export const RESNET18_PARAMETERS = 11_173_962;

/**
 * Trainable parameters of ResNet-9 at width 1 with 10 classes (the DAWNBench network): its eight
 * 3x3 convolutions, their batch norms' weights and biases, and the classifier.
 */
export const RESNET9_PARAMETERS = 6_573_130;

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
  const decoupled = config.weightDecayMode === "decoupled" ? " decoupled" : "";
  if (!config.momentum) return `sgd${decoupled}`;
  return (config.nesterov ? "sgd nesterov" : "sgd momentum") + decoupled;
}

/** Random gradients, as a real step sees; all zeros could run faster on a CPU adapter. */
function randomValues(count: number): Float32Array<ArrayBuffer> {
  const values = new Float32Array(count);
  for (let i = 0; i < count; i++) values[i] = Math.random() * 2 - 1;
  return values;
}

/** Floats of an arena of `parameters`, rounded up to whole 256-byte blocks. */
function arenaLength(parameters: number): number {
  const floatsPerBlock = STORAGE_ALIGNMENT / 4;
  return Math.ceil(parameters / floatsPerBlock) * floatsPerBlock;
}

/** Random params and gradients of `parameters`; the caller destroys both buffers. */
function randomArena(gpu: Gpu, parameters: number): ParameterArena {
  const length = arenaLength(parameters);
  return {
    params: uploadBuffer(gpu, "bench params", randomValues(length), STORAGE_USAGE),
    grads: uploadBuffer(gpu, "bench grads", randomValues(length), STORAGE_USAGE),
    size: length * 4,
  };
}

/** One of an optimizer's commands, with its kernel and the bytes it reads plus writes. */
export interface OptimizerCommand {
  readonly command: Command;
  /** `optimizer.find_non_finite`, `optimizer.<kind>` (the update) or `optimizer.update_scale`. */
  readonly op: string;
  readonly bytes: number;
}

/**
 * An optimizer whose commands are known by kernel and bytes, in the order it runs them: with
 * loss scaling the overflow checks (one per chunk of the arena), the updates (one per chunk) and
 * the scale update; without, the updates. The Optimizer keeps its kernel calls to itself, so the
 * chunks are cut here as it cuts them: from the chunk size it is given (its default, the largest
 * binding), by `bufferChunks`. The bytes are each call's over the arena: a check reads its chunk
 * of the gradients; an update reads the gradients, reads and writes the params and each state
 * buffer; the scale update reads and writes the loss-scale state, its only buffer. The step's
 * uniform (at most 16 bytes) and the loss-scale state (20 bytes) that checks and updates also
 * bind are left out.
 */
export async function createOptimizer(
  gpu: Gpu,
  arena: ParameterArena,
  config: OptimizerConfig,
  options: Pick<OptimizerOptions, "lossScaling"> = {},
): Promise<{ optimizer: Optimizer; commands: OptimizerCommand[] }> {
  const chunkBytes = largestChunk(gpu);
  const optimizer = await Optimizer.create(gpu, arena, config, { ...options, chunkBytes });
  const chunks = bufferChunks(arena.size, chunkBytes);
  // The params and each state buffer, which an update reads and writes.
  const updatedBuffers = 1 + optimizer.stateBuffers.length;
  const updates = chunks.map(({ bytes }) => ({
    op: `optimizer.${optimizer.config.kind}`,
    bytes: bytes * (1 + 2 * updatedBuffers),
  }));
  const { lossScale } = optimizer;
  const kernels = lossScale
    ? [
      ...chunks.map(({ bytes }) => ({ op: "optimizer.find_non_finite", bytes })),
      ...updates,
      { op: "optimizer.update_scale", bytes: 2 * byteSize(lossScale) },
    ]
    : updates;
  if (kernels.length !== optimizer.commands.length) {
    throw new Error(
      `optimizer: ${optimizer.commands.length} commands where ${kernels.length} were ` +
        `expected (${chunks.length} chunks${lossScale ? ", loss scaling" : ""})`,
    );
  }
  return {
    optimizer,
    commands: kernels.map((kernel, index) => ({
      ...kernel,
      command: optimizer.commands[index],
    })),
  };
}

/** Seconds for `steps` calls of `submit`, queued back to back and waited for once. */
async function timeSubmits(gpu: Gpu, steps: number, submit: () => void): Promise<number> {
  const start = performance.now();
  for (let step = 0; step < steps; step++) submit();
  await gpu.device.queue.onSubmittedWorkDone();
  return (performance.now() - start) / 1000;
}

/** Steps per batch, doubled from 1 until a batch lasts `minSeconds`, and that batch's seconds. */
async function timeUntil(
  minSeconds: number,
  time: (steps: number) => Promise<number>,
): Promise<{ steps: number; seconds: number }> {
  await time(2); // warm-up: first-use costs of pipelines and buffers
  let steps = 1;
  let seconds = await time(steps);
  while (seconds < minSeconds) {
    steps *= 2;
    seconds = await time(steps);
  }
  return { steps, seconds };
}

function throwGpuError(gpu: Gpu, benchmark: string): void {
  const error = gpu.takeUncapturedError();
  if (error) throw new Error(`GPU error in the ${benchmark} benchmark: ${error.message}`);
}

/**
 * Bytes, milliseconds and GB/s of submitting `timed` (some or all of the optimizer's dispatches)
 * as the trainer submits a step: one uniform write (at learning rate `lr`) and one submit each.
 */
async function timeOptimizerSubmits(
  gpu: Gpu,
  optimizer: Optimizer,
  lr: number,
  timed: readonly OptimizerCommand[],
  minSeconds: number,
  benchmark: string,
): Promise<{ bytes: number; ms: number; gbPerSecond: number }> {
  const { steps, seconds } = await timeUntil(
    minSeconds,
    (steps) =>
      timeSubmits(gpu, steps, () => {
        optimizer.prepareStep(lr);
        submitCommands(gpu, timed.map(({ command }) => command));
      }),
  );
  throwGpuError(gpu, benchmark);
  const bytes = timed.reduce((sum, { bytes }) => sum + bytes, 0);
  return { bytes, ms: seconds / steps * 1000, gbPerSecond: bytes * steps / seconds / 1e9 };
}

export async function benchOptimizer(
  gpu: Gpu,
  options: OptimizerBenchOptions = {},
): Promise<OptimizerBenchRow[]> {
  const parameters = options.parameters ?? RESNET18_PARAMETERS;
  const configs = options.configs ?? [{ kind: "adam", lr: 1e-3 }];
  const minSeconds = options.minSeconds ?? 1;
  const arena = randomArena(gpu, parameters);
  const rows: OptimizerBenchRow[] = [];
  for (const config of configs) {
    const { optimizer, commands } = await createOptimizer(gpu, arena, config);
    const { bytes, ms, gbPerSecond } = await timeOptimizerSubmits(
      gpu,
      optimizer,
      1e-3,
      commands,
      minSeconds,
      config.kind,
    );
    rows.push({
      adapter: gpu.adapterName,
      optimizer: describe(config),
      parameters,
      bytesPerStep: bytes,
      ms,
      gbPerSecond,
    });
    optimizer.destroy();
  }
  arena.params.destroy();
  arena.grads.destroy();
  return rows;
}

export interface LossScalingBenchRow {
  adapter: string;
  /**
   * What one submit ran: a kernel (`optimizer.find_non_finite`, `optimizer.<kind>` with
   * LOSS_SCALING, `optimizer.update_scale`) or the three as one step.
   */
  name: string;
  parameters: number;
  /** Bytes read and written per submit (`createOptimizer` says which). */
  bytesPerCall: number;
  /** Milliseconds per submit. */
  ms: number;
  gbPerSecond: number;
}

/**
 * The kernels of dynamic loss scaling over a parameter arena, each submitted alone and then the
 * three in one submit (the step as f16 training runs it), for each optimizer in `configs`. The
 * gradients are finite, so no step is skipped: the update does its whole work. The overflow
 * check and the scale update are the same whatever the optimizer, so only the first optimizer's
 * are timed.
 */
export async function benchLossScaling(
  gpu: Gpu,
  options: OptimizerBenchOptions = {},
): Promise<LossScalingBenchRow[]> {
  const parameters = options.parameters ?? RESNET18_PARAMETERS;
  const configs = options.configs ?? [{ kind: "adam", lr: 1e-3 }];
  const minSeconds = options.minSeconds ?? 1;
  const arena = randomArena(gpu, parameters);
  const rows: LossScalingBenchRow[] = [];
  for (const config of configs) {
    const { optimizer, commands } = await createOptimizer(gpu, arena, config, {
      lossScaling: {},
    });
    const time = async (name: string, timed: readonly OptimizerCommand[]) => {
      const { bytes, ms, gbPerSecond } = await timeOptimizerSubmits(
        gpu,
        optimizer,
        config.lr,
        timed,
        minSeconds,
        `${name} loss-scaling`,
      );
      rows.push({
        adapter: gpu.adapterName,
        name,
        parameters,
        bytesPerCall: bytes,
        ms,
        gbPerSecond,
      });
    };
    for (const [op, timed] of Map.groupBy(commands, ({ op }) => op)) {
      const update = op === `optimizer.${config.kind}`;
      if (!update && rows.some((row) => row.name === op)) continue;
      await time(update ? `${op} (LOSS_SCALING)` : op, timed);
    }
    await time(`${describe(config)} step: the three in one submit`, commands);
    optimizer.destroy();
  }
  arena.params.destroy();
  arena.grads.destroy();
  return rows;
}

export interface EmaBenchOptions {
  /** Parameters in the arena (default ResNet-9's), rounded up to whole 256-byte blocks. */
  parameters?: number;
  /** Default 0.999; the speed does not depend on it. */
  decay?: number;
  /** Time batches of updates, doubling, until a batch lasts this long (default 1 s). */
  minSeconds?: number;
}

export interface EmaBenchRow {
  adapter: string;
  parameters: number;
  /** Bytes read and written per update: average and value read, average written. */
  bytesPerUpdate: number;
  /** Milliseconds per update. */
  ms: number;
  gbPerSecond: number;
}

/**
 * One moving-average update of a whole parameter arena (one dispatch, the vec4 entry point), as
 * the trainer runs it after each optimizer step: one submit per update.
 */
export async function benchEma(gpu: Gpu, options: EmaBenchOptions = {}): Promise<EmaBenchRow> {
  const parameters = options.parameters ?? RESNET9_PARAMETERS;
  const length = arenaLength(parameters);
  const tensor = (label: string): Tensor => ({
    label,
    buffer: uploadBuffer(gpu, label, randomValues(length), STORAGE_USAGE),
    offset: 0,
    shape: [length],
    dtype: "f32",
  });
  const average = tensor("bench average");
  const value = tensor("bench params");
  const materialized = await materialize(
    gpu,
    emaUpdate({ average, value }, { decay: options.decay ?? 0.999 }),
    { label: "ema bench" },
  );
  const { commands } = materialized;
  const { steps, seconds } = await timeUntil(
    options.minSeconds ?? 1,
    (steps) => timeSubmits(gpu, steps, () => submitCommands(gpu, commands)),
  );
  throwGpuError(gpu, "ema");
  materialized.destroy();
  average.buffer.destroy();
  value.buffer.destroy();
  const bytesPerUpdate = length * 4 * 3;
  return {
    adapter: gpu.adapterName,
    parameters,
    bytesPerUpdate,
    ms: seconds / steps * 1000,
    gbPerSecond: bytesPerUpdate * steps / seconds / 1e9,
  };
}

if (import.meta.main) {
  const gpu = await requestGpu();
  const adam: OptimizerConfig = { kind: "adam", lr: 1e-3 };
  const nesterov: OptimizerConfig = {
    kind: "sgd",
    lr: 0.1,
    momentum: 0.9,
    nesterov: true,
    weightDecay: 5e-4,
  };
  const rows = await benchOptimizer(gpu, {
    configs: [adam, nesterov, { ...nesterov, weightDecayMode: "decoupled" }],
  });
  // The fast94 recipe's SGD at ResNet-9's size, for the moving average's cost beside it.
  rows.push(
    ...await benchOptimizer(gpu, {
      parameters: RESNET9_PARAMETERS,
      configs: [{ kind: "sgd", lr: 0.4, momentum: 0.9, nesterov: true, weightDecay: 5e-4 }],
    }),
  );
  const ema = await benchEma(gpu);
  const lossScaling = await benchLossScaling(gpu, { configs: [adam, nesterov] });
  const line = (name: string, row: { parameters: number; ms: number; gbPerSecond: number }) =>
    console.log(
      `${name.padEnd(36)} ${row.parameters.toLocaleString("en").padStart(10)} parameters  ` +
        `${row.ms.toFixed(2).padStart(8)} ms  ${row.gbPerSecond.toFixed(1).padStart(7)} GB/s`,
    );
  console.log(`Optimizer step on ${gpu.adapterName}`);
  for (const row of rows) line(row.optimizer, row);
  line("ema (weights' average)", ema);
  console.log(`Dynamic loss scaling (f16 training) on ${gpu.adapterName}`);
  for (const row of lossScaling) line(row.name, row);
  gpu.device.destroy();
}
