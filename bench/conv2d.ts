/**
 * Microbenchmark of conv2d (src/ops/conv2d.ts) on ResNet-18's convolution shapes: GFLOP/s of
 * the forward, the input gradient and the weight gradient, each counted as
 * 2·N·OH·OW·Cout·K·K·Cin FLOPs (padding taps included, as PyTorch counts), beside a register-
 * blocked WGSL matrix product of the same FLOPs (`yardsticks.matmul`, bench/shaders/matmul.wgsl)
 * as the yardstick: the speed this adapter gives a GEMM with no image indexing. The variants are
 * chosen through the kernel policy: forced one by one with `--variant`, else the adapter's own.
 *
 * Timing: R repetitions of a pass's dispatches encoded in one submit and waited for once
 * (every wait costs ~10 ms in Deno), after one untimed warm-up submit; the per-repetition mean
 * is reported with nothing subtracted. R is chosen from the warm-up so a measurement lasts
 * about `seconds`.
 *
 *   deno run --allow-read --allow-write --allow-env bench/conv2d.ts [--quick] [--batch N]
 *     [--variant blocked|tiled|pipelined|all ...]   (default: the adapter's policy, per shape;
 *     all: every variant, side by side on each shape)
 */
import process from "node:process";
import { parseArgs } from "node:util";
import type { Gpu } from "../src/gpu/device.ts";
import { requestGpu } from "../src/gpu/deno_device.ts";
import { type Command, encodeCommands, repeatCommands } from "../src/gpu/dispatch.ts";
import {
  type Call,
  isWritable,
  type KernelCall,
  kernelCall,
  read,
  write,
} from "../src/gpu/kernel_call.ts";
import { createTensor, type Tensor } from "../src/gpu/tensor.ts";
import {
  CONV2D_VARIANTS,
  conv2dBackward,
  type Conv2dConfig,
  conv2dForward,
  conv2dOutputShape,
  type Conv2dVariant,
} from "../src/ops/conv2d.ts";
import { KernelPolicy, KernelPolicyError } from "../src/ops/policy.ts";
import { materialize } from "../src/plan/materialize.ts";
import { yardsticks } from "./kernels.ts";
import { formatTable } from "./timing.ts";

export interface Conv2dBenchShape {
  label: string;
  /** Input height (= width) and channels. */
  size: number;
  cin: number;
  cout: number;
  config: Conv2dConfig;
}

const SAME = { kernelSize: 3, stride: 1, padding: 1 } as const;
const DOWN = { kernelSize: 3, stride: 2, padding: 1 } as const;
const SHORTCUT = { kernelSize: 1, stride: 2, padding: 0 } as const;

/** Every distinct convolution of the CIFAR ResNet-18. */
export const RESNET18_CONV_SHAPES: Conv2dBenchShape[] = [
  { label: "stem 32x32x3->64", size: 32, cin: 3, cout: 64, config: SAME },
  { label: "32x32x64->64", size: 32, cin: 64, cout: 64, config: SAME },
  { label: "32x32x64->128 s2", size: 32, cin: 64, cout: 128, config: DOWN },
  { label: "1x1 32x32x64->128 s2", size: 32, cin: 64, cout: 128, config: SHORTCUT },
  { label: "16x16x128->128", size: 16, cin: 128, cout: 128, config: SAME },
  { label: "16x16x128->256 s2", size: 16, cin: 128, cout: 256, config: DOWN },
  { label: "1x1 16x16x128->256 s2", size: 16, cin: 128, cout: 256, config: SHORTCUT },
  { label: "8x8x256->256", size: 8, cin: 256, cout: 256, config: SAME },
  { label: "8x8x256->512 s2", size: 8, cin: 256, cout: 512, config: DOWN },
  { label: "1x1 8x8x256->512 s2", size: 8, cin: 256, cout: 512, config: SHORTCUT },
  { label: "4x4x512->512", size: 4, cin: 512, cout: 512, config: SAME },
];

/** The shapes of a ResNet-18 of `width` (channels scaled, as `--width` does; the stem keeps 3). */
export function resnet18ConvShapes(width: number): Conv2dBenchShape[] {
  if (width === 1) return RESNET18_CONV_SHAPES;
  const scaled = (channels: number) => Math.max(1, Math.round(channels * width));
  return RESNET18_CONV_SHAPES.map((shape) => {
    const cin = shape.cin === 3 ? 3 : scaled(shape.cin);
    const cout = scaled(shape.cout);
    const label = shape.label.replace(/x\d+->\d+/, `x${cin}->${cout}`);
    return { ...shape, label, cin, cout };
  });
}

export interface Conv2dBenchOptions {
  /** Batch size (default 128). */
  batch?: number;
  /** Shapes to time (default all of ResNet-18's). */
  shapes?: Conv2dBenchShape[];
  /** Variants to time, each forced (default the one the adapter's policy picks per shape). */
  variants?: Conv2dVariant[];
  /** Target duration of each measurement in seconds (default 1). */
  seconds?: number;
}

/**
 * GFLOP/s of one pass. `wall` is the figure asked for: FLOPs over wall-clock time. On a CPU
 * adapter `cpu` divides by the process's CPU time shared out over the cores instead (FLOPs /
 * (CPU seconds / cores)): what the pass would take with the cores to itself. On a machine
 * shared with other work wall time swings by 2x while `cpu` stays within a few percent, so
 * variants are compared on `cpu` there. (On a real GPU CPU time says nothing: no `cpu`.)
 */
export interface Rate {
  wall: number;
  cpu?: number;
}

export interface Conv2dBenchRow {
  adapter: string;
  variant: Conv2dVariant;
  shape: string;
  batch: number;
  /** FLOPs of each pass: 2·N·OH·OW·Cout·K·K·Cin. */
  flops: number;
  forward: Rate;
  backwardInput: Rate;
  backwardWeight: Rate;
  /** The yardstick: a matrix product [N·OH·OW, K·K·Cin] x [K·K·Cin, Cout]. */
  matmul: Rate;
}

/** GFLOP/s of `calls` doing `flops`, each repetition encoded into the one submit. */
async function rate(
  gpu: Gpu,
  calls: readonly Call[],
  flops: number,
  seconds: number,
): Promise<Rate> {
  // Any scratch (the split weight gradient's partial sums) lives as long as the measurement.
  const materialized = await materialize(gpu, calls, { label: "bench conv2d" });
  try {
    return await rateCommands(gpu, materialized.commands, flops, seconds);
  } finally {
    materialized.destroy();
  }
}

async function rateCommands(
  gpu: Gpu,
  commands: readonly Command[],
  flops: number,
  seconds: number,
): Promise<Rate> {
  const run = async (reps: number) => {
    const encoder = gpu.device.createCommandEncoder();
    encodeCommands(encoder, repeatCommands(commands, reps));
    const start = performance.now();
    const cpuStart = process.cpuUsage();
    gpu.device.queue.submit([encoder.finish()]);
    await gpu.device.queue.onSubmittedWorkDone();
    const cpu = process.cpuUsage(cpuStart);
    return { ms: (performance.now() - start) / reps, cpuMs: (cpu.user + cpu.system) / 1000 / reps };
  };
  const warmup = await run(1);
  const { ms, cpuMs } = await run(
    Math.max(2, Math.min(50, Math.round((seconds * 1000) / warmup.ms))),
  );
  const wall = flops / ms / 1e6;
  if (!gpu.isFallbackAdapter) return { wall };
  return { wall, cpu: flops / (cpuMs / navigator.hardwareConcurrency) / 1e6 };
}

/** Invocations per workgroup of the matrix product: one SIMD vector on lavapipe. */
const MATMUL_WORKGROUP = 8;

/**
 * The yardstick: c = a · b with a [m, k], b [k, n], rounded up to the kernel's blocks. Where a
 * would pass the binding limit (the im2col matrix of a big layer is 288 MiB), the rows are done
 * in equal chunks, the same call repeated, so the FLOPs stay those of the whole product. The
 * tensors have buffers of their own (contents do not matter for speed: fresh buffers are zeros);
 * the caller destroys them.
 */
export function matmulCalls(
  gpu: Gpu,
  m: number,
  n: number,
  k: number,
): { calls: KernelCall[]; flops: number; tensors: Tensor[] } {
  const depth = roundUp(k, 4);
  const columns = roundUp(n, 16);
  const chunks = Math.ceil((m * depth * 4) / (64 * 2 ** 20));
  const rows = roundUp(Math.ceil(m / chunks), 8);
  const a = createTensor(gpu, "a", [rows, depth]);
  const b = createTensor(gpu, "b", [depth, columns]);
  const c = createTensor(gpu, "c", [rows, columns]);
  const call = kernelCall({
    kernel: yardsticks.matmul,
    entryPoint: "multiply",
    workgroupSize: MATMUL_WORKGROUP,
    constants: { M: rows, N: columns, K: depth },
    grid: [Math.ceil(rows / 8 / MATMUL_WORKGROUP), columns / 16],
    bindings: [read(a), read(b), write(c)],
  });
  return {
    calls: Array.from({ length: chunks }, () => call),
    flops: 2 * chunks * rows * columns * depth,
    tensors: [a, b, c],
  };
}

function roundUp(value: number, multiple: number): number {
  return Math.ceil(value / multiple) * multiple;
}

export async function benchConv2d(
  gpu: Gpu,
  options: Conv2dBenchOptions = {},
): Promise<Conv2dBenchRow[]> {
  const batch = options.batch ?? 128;
  const seconds = options.seconds ?? 1;
  // undefined: the adapter's policy, which may pick differently per shape.
  const variants: (Conv2dVariant | undefined)[] = options.variants ?? [undefined];
  const rows: Conv2dBenchRow[] = [];
  for (const shape of options.shapes ?? RESNET18_CONV_SHAPES) {
    const { size, cin, cout, config } = shape;
    const k = config.kernelSize;
    const xShape = [batch, size, size, cin];
    const yShape = conv2dOutputShape(xShape, cout, config);
    const [, oh, ow] = yShape;
    const flops = 2 * batch * oh * ow * cout * k * k * cin;
    // Contents do not matter for speed: fresh buffers are zeros.
    const x = createTensor(gpu, "x", xShape);
    const weight = createTensor(gpu, "weight", [cout, k, k, cin]);
    const y = createTensor(gpu, "y", yShape);
    const dx = createTensor(gpu, "dx", xShape);
    const dweight = createTensor(gpu, "dweight", weight.shape);
    const matmul = matmulCalls(gpu, batch * oh * ow, cout, k * k * cin);
    const matmulRate = await rate(gpu, matmul.calls, matmul.flops, seconds);
    for (const tensor of matmul.tensors) tensor.buffer.destroy();
    for (const forced of variants) {
      const policy = forced === undefined
        ? KernelPolicy.forAdapter(gpu)
        : KernelPolicy.forcing("conv2d", forced, "cpu", gpu.subgroups);
      const common = { x, weight, dy: y, dweight };
      let forward: Call[];
      try {
        forward = conv2dForward({ x, weight, y }, config, policy);
      } catch (error) {
        // A forced variant that cannot run this shape or device (blocked_texture_subgroup
        // without subgroups): no row.
        if (forced !== undefined && error instanceof KernelPolicyError) continue;
        throw error;
      }
      const backward = conv2dBackward({ ...common, dx }, config, policy);
      const backwardWeight = conv2dBackward(common, config, policy);
      const backwardInput = inputGradientCalls(backward, dx);
      rows.push({
        adapter: gpu.adapterName,
        variant: chosenVariant(policy),
        shape: shape.label,
        batch,
        flops,
        forward: await rate(gpu, forward, flops, seconds),
        backwardInput: await rate(gpu, backwardInput, flops, seconds),
        backwardWeight: await rate(gpu, backwardWeight, flops, seconds),
        matmul: matmulRate,
      });
    }
    for (const tensor of [x, weight, y, dx, dweight]) tensor.buffer.destroy();
  }
  return rows;
}

/**
 * The calls of `backward` that compute dx: the one writing it and, back to front, every call
 * writing what a kept call reads (staging copies, the Winograd transforms); not the weight
 * gradient's.
 */
function inputGradientCalls(backward: readonly Call[], dx: Tensor): Call[] {
  const needed = new Set<unknown>([dx]);
  const kept: Call[] = [];
  for (const call of [...backward].reverse()) {
    const writes = call.bindings.filter((binding) => isWritable(binding.access));
    if (!writes.some((binding) => needed.has(binding.tensor))) continue;
    kept.unshift(call);
    for (const binding of call.bindings) {
      if (!isWritable(binding.access)) needed.add(binding.tensor);
    }
  }
  return kept;
}

/** The one variant a policy chose for one layer's calls (forward and backward share it). */
function chosenVariant(policy: KernelPolicy): Conv2dVariant {
  const chosen = new Set(Object.values(policy.choices().choices));
  const [variant] = chosen;
  if (chosen.size !== 1 || !(CONV2D_VARIANTS as readonly string[]).includes(variant)) {
    throw new Error(`conv2d bench: the policy chose [${[...chosen]}] for one layer`);
  }
  return variant as Conv2dVariant;
}

/** A console table: GFLOP/s per pass, wall-clock (and CPU-time based in parentheses). */
export function formatConv2dRows(rows: Conv2dBenchRow[]): string {
  const cell = (r: Rate) =>
    r.wall.toFixed(1) + (r.cpu === undefined ? "" : ` (${r.cpu.toFixed(1)})`);
  return formatTable(
    ["shape", "variant", "GFLOP", "forward", "dx", "dweight", "matmul"],
    rows.map((row) => [
      row.shape,
      row.variant,
      (row.flops / 1e9).toFixed(2),
      cell(row.forward),
      cell(row.backwardInput),
      cell(row.backwardWeight),
      cell(row.matmul),
    ]),
  );
}

export async function main(args: string[] = Deno.args): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: "boolean", default: false },
      batch: { type: "string" },
      variant: { type: "string", multiple: true },
      width: { type: "string", default: "1" },
    },
  });
  const width = Number(values.width);
  if (!(width > 0)) throw new RangeError(`--width ${values.width}: use a positive number`);
  const batch = values.batch ? Number(values.batch) : values.quick ? 4 : 128;
  if (!Number.isInteger(batch) || batch < 1) throw new RangeError(`--batch ${values.batch}`);
  const variants = values.variant?.flatMap((name) => {
    if (name === "all") return CONV2D_VARIANTS;
    if (!(CONV2D_VARIANTS as readonly string[]).includes(name)) {
      throw new RangeError(
        `unknown variant ${name}; use one of ${CONV2D_VARIANTS.join(", ")} or all`,
      );
    }
    return [name as Conv2dVariant];
  });
  const gpu = await requestGpu();
  const rows = await benchConv2d(gpu, {
    batch,
    variants,
    shapes: resnet18ConvShapes(width),
    seconds: values.quick ? 0.05 : 1,
  });
  const cpuNote = gpu.isFallbackAdapter ? " (in parentheses: CPU-time based)" : "";
  console.log(
    `conv2d, ResNet-18 width ${width}, batch ${batch}, GFLOP/s wall-clock${cpuNote} on ${gpu.adapterName}`,
  );
  console.log(formatConv2dRows(rows));
  gpu.device.destroy();
}

if (import.meta.main) await main();
