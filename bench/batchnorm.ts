/**
 * Microbenchmark of the batch-norm kernels on ResNet-18's BN shapes at batch 128: the training
 * forward (BN, BN + ReLU, BN + add + ReLU), its backward, and both together, in GB/s beside a
 * plain copy of the same activation (bench/shaders/copy.wgsl) on the same device.
 *
 * Bytes are what the kernels read and write, each access counted once (bytesMoved below):
 * forward = statistics (x read) + combine (partials, per-channel vectors) + normalize (x
 * [, residual] read, y written); backward = partials (x, dy [, y] read) + combine + input gradient
 * (x, dy [, y] read, dx [, dresidual] written). The per-lane loads of per-channel values and the
 * partials are counted too, though they are a few percent at most. The copy (`yardsticks.copy`,
 * bench/shaders/copy.wgsl) moves 2 bytes per byte of x (read, write), and is the fastest of a few
 * tilings, timed in turns with each row's op. The ops' calls and the copy's are materialized as
 * in training (src/plan/materialize.ts), which gives the ops' workspaces their buffers. Every figure is the best of several trials, each R repetitions in one submit with one wait,
 * divided by R, after a warm-up; R doubles until one submit lasts long enough that the ~11 ms
 * Deno spends noticing the GPU is done stays a few percent.
 *
 *   deno run --allow-read --allow-write --allow-env bench/batchnorm.ts [--quick]
 *     [--variant serial|serial_texture|tree|all]   (default: the variant this adapter gets)
 */
import type { Gpu } from "../src/gpu/device.ts";
import { requestGpu } from "../src/gpu/deno_device.ts";
import type { Command } from "../src/gpu/dispatch.ts";
import {
  type Call,
  type KernelCall,
  kernelCall,
  linearGrid,
  read,
  write,
} from "../src/gpu/kernel_call.ts";
import {
  createTensor,
  type Tensor,
  type TensorDesc,
  tensorDesc,
  tensorFromData,
} from "../src/gpu/tensor.ts";
import {
  BATCH_NORM_VARIANTS,
  type BatchNormActivation,
  batchNormBackward,
  type BatchNormPlan,
  batchNormTrainForward,
  type BatchNormVariant,
  chooseBatchNormVariant,
  planBatchNorm,
} from "../src/ops/batchnorm.ts";
import { KernelPolicy } from "../src/ops/policy.ts";
import { materialize, type Materialized } from "../src/plan/materialize.ts";
import { elementCount } from "../src/util/shape.ts";
import { copyTilings, yardsticks } from "./kernels.ts";
import { formatTable, timeSubmits } from "./timing.ts";

/** The input shapes of ResNet-18's batch norms at batch 128, NHWC. */
export const RESNET18_BATCH_NORM_SHAPES: readonly (readonly number[])[] = [
  [128, 32, 32, 64],
  [128, 16, 16, 128],
  [128, 8, 8, 256],
  [128, 4, 4, 512],
];

export type BatchNormForm = "bn" | "bn+relu" | "bn+add+relu";
const FORMS: BatchNormForm[] = ["bn", "bn+relu", "bn+add+relu"];
export type BatchNormPass = "forward" | "backward" | "forward+backward";
const PASSES: BatchNormPass[] = ["forward", "backward", "forward+backward"];

export interface BatchNormBenchOptions {
  /** Fewer repetitions and trials: a smoke run of a few seconds. */
  quick?: boolean;
  /** Variants to time (default: the one the op picks on this adapter). */
  variants?: readonly BatchNormVariant[];
  shapes?: readonly (readonly number[])[];
}

export interface BatchNormBenchRow {
  adapter: string;
  variant: BatchNormVariant;
  /** Marks the variant the op picks on this adapter. */
  isDefault: boolean;
  shape: readonly number[];
  form: BatchNormForm;
  pass: BatchNormPass;
  /** Milliseconds per repetition. */
  ms: number;
  bytes: number;
  gbPerSecond: number;
  /** The copy kernel's GB/s on the same activation, same device. */
  copyGbPerSecond: number;
}

const VECTOR_BYTES = 16;
/** Per-channel f32 vectors a normalize lane loads per channel vector: gamma, beta, mean, invStd. */
const NORMALIZE_CHANNEL_VECTORS = 4;
/** The coefficients an input-gradient lane loads per channel vector. */
const INPUT_GRADIENT_COEFFICIENTS = 4;

/** Bytes the kernels of one pass read and write, each access counted once. */
export function bytesMoved(plan: BatchNormPlan, form: BatchNormForm, pass: BatchNormPass): number {
  if (pass === "forward+backward") {
    return bytesMoved(plan, form, "forward") + bytesMoved(plan, form, "backward");
  }
  const activation = plan.rows * plan.channels * 4;
  const channelVector = plan.channels * 4;
  const vectorsLoadedPerLane = (tiling: { rowsPerLane: number }) =>
    Math.ceil(plan.rows / tiling.rowsPerLane) * plan.vectorsPerRow * VECTOR_BYTES;
  const partials = plan.reduction.rowBlocks * plan.vectorsPerRow * 2 * VECTOR_BYTES;
  const relu = form !== "bn";
  const residual = form === "bn+add+relu";
  if (pass === "forward") {
    // x twice; partials written and read; running statistics read and written, mean and invStd
    // written, the counter read and written; residual read; y written.
    return activation * (2 + Number(residual) + 1) + 2 * partials + 6 * channelVector + 8 +
      NORMALIZE_CHANNEL_VECTORS * vectorsLoadedPerLane(plan.elementwise) / 4;
  }
  // Partials: x, dy [, y] and the mean per lane; combine: partials, gamma, mean, invStd read,
  // dgamma, dbeta and the coefficients written; input gradient: x, dy [, y] and the
  // coefficients per lane read, dx [, dresidual] written.
  return activation * 2 * (2 + Number(relu)) + activation * (1 + Number(residual)) +
    vectorsLoadedPerLane(plan.reduction) / 4 + 2 * partials + 5 * channelVector +
    plan.vectorsPerRow * INPUT_GRADIENT_COEFFICIENTS * VECTOR_BYTES +
    INPUT_GRADIENT_COEFFICIENTS * vectorsLoadedPerLane(plan.elementwise);
}

/**
 * A copy tiling: the workgroup size (given to kernelCall as `workgroupSize`, never as a constant)
 * and the vec4s each invocation copies (the kernel's VECTORS_PER_INVOCATION).
 */
export interface CopyTiling {
  WORKGROUP_SIZE: number;
  VECTORS_PER_INVOCATION: number;
}

/** The yardstick copy, destination = source, as a kernel call. */
export function copyCall(
  source: TensorDesc,
  destination: TensorDesc,
  tiling: CopyTiling,
): KernelCall {
  const invocations = Math.ceil(elementCount(source.shape) / 4 / tiling.VECTORS_PER_INVOCATION);
  return kernelCall({
    kernel: yardsticks.copy,
    entryPoint: "copy",
    workgroupSize: tiling.WORKGROUP_SIZE,
    constants: { VECTORS_PER_INVOCATION: tiling.VECTORS_PER_INVOCATION },
    grid: linearGrid(invocations, tiling.WORKGROUP_SIZE),
    bindings: [read(source), write(destination)],
  });
}

/** The copy's dispatch, between two tensors with storage (nothing is allocated, nothing to free). */
export async function copyDispatch(
  gpu: Gpu,
  source: Tensor,
  destination: Tensor,
  tiling: CopyTiling,
): Promise<Command> {
  const { commands } = await materialize(gpu, [copyCall(source, destination, tiling)], {
    label: "copy",
  });
  return commands[0];
}

/** The variant the adapter's own policy gives the batch norms of an x of this shape. */
function adapterVariant(gpu: Gpu, shape: readonly number[]): BatchNormVariant {
  return chooseBatchNormVariant(tensorDesc("x", shape), KernelPolicy.forAdapter(gpu));
}

/** Random activations: a CPU adapter may run faster on zeros. */
function randomTensor(gpu: Gpu, label: string, shape: readonly number[]): Tensor {
  const values = new Float32Array(elementCount(shape));
  for (let i = 0; i < values.length; i++) values[i] = Math.random() * 2 - 1;
  return tensorFromData(gpu, label, shape, values);
}

function channelTensor(gpu: Gpu, label: string, channels: number, value: number): Tensor {
  return tensorFromData(gpu, label, [channels], new Float32Array(channels).fill(value));
}

interface Timing {
  /** A submit of R repetitions lasts at least this long. */
  minTrialMs: number;
  trials: number;
}

/** A dispatch list and the repetitions per submit that make one submit last long enough. */
interface Calibrated {
  commands: readonly Command[];
  repetitions: number;
}

/** Milliseconds of one submit of R repetitions of `commands`, after `warmup` such submits. */
function timeSubmit(gpu: Gpu, { commands, repetitions }: Calibrated, warmup = 0) {
  // timeSubmits' one repetition is one submit holding all R.
  const groups = Array.from({ length: repetitions }, () => commands);
  return timeSubmits(gpu, groups, { reps: 1, warmup });
}

async function calibrate(
  gpu: Gpu,
  commands: readonly Command[],
  { minTrialMs }: Timing,
): Promise<Calibrated> {
  const calibrated = { commands, repetitions: 1 };
  let warmup = 1;
  while (await timeSubmit(gpu, calibrated, warmup) < minTrialMs) {
    calibrated.repetitions *= 2;
    warmup = 0;
  }
  return calibrated;
}

/**
 * Milliseconds per repetition of each list, the best of several trials in which the lists take
 * turns. Other processes share the CPU that an adapter like llvmpipe runs on, and their load comes
 * and goes within seconds: taking turns gives the op and its yardstick the same conditions, and
 * the least disturbed trial is the one that measures the kernel.
 */
async function timeInTurns(
  gpu: Gpu,
  lists: readonly Calibrated[],
  { trials }: Timing,
): Promise<number[]> {
  const best = lists.map(() => Infinity);
  for (let trial = 0; trial < trials; trial++) {
    for (const [index, list] of lists.entries()) {
      best[index] = Math.min(best[index], await timeSubmit(gpu, list) / list.repetitions);
    }
  }
  return best;
}

async function benchShape(
  gpu: Gpu,
  shape: readonly number[],
  variants: readonly BatchNormVariant[],
  timing: Timing,
): Promise<BatchNormBenchRow[]> {
  const channels = shape[3];
  const x = randomTensor(gpu, "x", shape);
  const residual = randomTensor(gpu, "residual", shape);
  const dy = randomTensor(gpu, "dy", shape);
  const [y, dx, dResidual] = ["y", "dx", "dresidual"].map((label) =>
    createTensor(gpu, label, shape)
  );
  const params = {
    gamma: channelTensor(gpu, "gamma", channels, 1),
    beta: channelTensor(gpu, "beta", channels, 0),
    runningMean: channelTensor(gpu, "running_mean", channels, 0),
    runningVar: channelTensor(gpu, "running_var", channels, 1),
    numBatchesTracked: createTensor(gpu, "num_batches_tracked", [1], "u32"),
  };
  const saved = {
    mean: createTensor(gpu, "mean", [channels]),
    invStd: createTensor(gpu, "invstd", [channels]),
  };
  const dgamma = createTensor(gpu, "dgamma", [channels]);
  const dbeta = createTensor(gpu, "dbeta", [channels]);
  const copyDestination = createTensor(gpu, "copy", shape);

  const copies: Calibrated[] = [];
  for (const tiling of copyTilings(gpu)) {
    copies.push(
      await calibrate(gpu, [await copyDispatch(gpu, x, copyDestination, tiling)], timing),
    );
  }
  const rows: BatchNormBenchRow[] = [];
  const defaultVariant = adapterVariant(gpu, shape);
  for (const variant of variants) {
    const plan = planBatchNorm(shape, variant);
    const policy = KernelPolicy.forcing("batchnorm", variant);
    for (const form of FORMS) {
      const activation: BatchNormActivation = form === "bn" ? "none" : "relu";
      const withResidual = form === "bn+add+relu";
      const forward = batchNormTrainForward(
        { x, y, params, saved, residual: withResidual ? residual : undefined },
        { activation },
        policy,
      );
      const backward = batchNormBackward(
        {
          x,
          y,
          dy,
          dx,
          dgamma,
          dbeta,
          params,
          saved,
          dResidual: withResidual ? dResidual : undefined,
        },
        { activation },
        policy,
      );
      const passes: Record<BatchNormPass, Call[]> = {
        forward,
        backward,
        "forward+backward": [...forward, ...backward],
      };
      for (const pass of PASSES) {
        // The workspaces get buffers here, freed once the pass is timed.
        const materialized: Materialized = await materialize(gpu, passes[pass], {
          label: `bench batch norm ${pass}`,
        });
        const op = await calibrate(gpu, materialized.commands, timing);
        const [ms, ...copyMs] = await timeInTurns(gpu, [op, ...copies], timing);
        materialized.destroy();
        const copyGbPerSecond = 2 * elementCount(shape) * 4 / Math.min(...copyMs) / 1e6;
        const bytes = bytesMoved(plan, form, pass);
        rows.push({
          adapter: gpu.adapterName,
          variant,
          isDefault: variant === defaultVariant,
          shape,
          form,
          pass,
          ms,
          bytes,
          gbPerSecond: bytes / ms / 1e6,
          copyGbPerSecond,
        });
      }
    }
  }
  const perChannel = [...Object.values(params), ...Object.values(saved), dgamma, dbeta];
  for (const tensor of [x, residual, dy, y, dx, dResidual, copyDestination, ...perChannel]) {
    tensor.buffer.destroy();
  }
  return rows;
}

export async function benchBatchNorm(
  gpu: Gpu,
  options: BatchNormBenchOptions = {},
): Promise<BatchNormBenchRow[]> {
  const timing = options.quick ? { minTrialMs: 100, trials: 2 } : { minTrialMs: 200, trials: 4 };
  const rows: BatchNormBenchRow[] = [];
  for (const shape of options.shapes ?? RESNET18_BATCH_NORM_SHAPES) {
    const variants = options.variants ?? [adapterVariant(gpu, shape)];
    rows.push(...await benchShape(gpu, shape, variants, timing));
  }
  return rows;
}

export function formatBatchNormRows(rows: readonly BatchNormBenchRow[]): string {
  return formatTable(
    ["variant", "shape", "form", "pass", "ms", "MB", "GB/s", "copy GB/s", "of copy"],
    rows.map((row) => [
      row.isDefault ? `${row.variant}*` : row.variant,
      `[${row.shape}]`,
      row.form,
      row.pass,
      row.ms.toFixed(2),
      (row.bytes / 1e6).toFixed(1),
      row.gbPerSecond.toFixed(2),
      row.copyGbPerSecond.toFixed(2),
      `${(100 * row.gbPerSecond / row.copyGbPerSecond).toFixed(0)}%`,
    ]),
  );
}

if (import.meta.main) {
  const variantFlag = Deno.args.indexOf("--variant");
  const chosen = variantFlag >= 0 ? Deno.args[variantFlag + 1] : undefined;
  const variants = chosen === "all"
    ? BATCH_NORM_VARIANTS
    : chosen === undefined
    ? undefined
    : [chosen as BatchNormVariant];
  if (variants && !variants.every((variant) => BATCH_NORM_VARIANTS.includes(variant))) {
    throw new Error(`--variant takes all or one of ${BATCH_NORM_VARIANTS.join(", ")}`);
  }
  const gpu = await requestGpu();
  const rows = await benchBatchNorm(gpu, { quick: Deno.args.includes("--quick"), variants });
  console.log(`batch norm on ${gpu.adapterName} (* = the variant this adapter gets)`);
  console.log(formatBatchNormRows(rows));
}
