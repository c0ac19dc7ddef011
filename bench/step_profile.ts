/**
 * `deno task bench --profile`: one training step of a network as the trainer runs it (input batch,
 * forward and loss, backward, the optimizer; a ResNet with Adam, ResNet-9 as `--preset fast94`
 * trains it: bench/training_step.ts `benchRecipe`; activations f32, or f16 with loss scaling),
 * every kernel call timed apart, grouped by op and pass and by kind of layer, beside the adapter's
 * peaks measured on the spot (an FMA loop for FLOP/s, a copy for GB/s), so the shares of peak hold
 * on any adapter.
 *
 * Timing: with `timestamp-query`, each call is encoded in a compute pass of its own whose
 * `timestampWrites` stamp its begin and end (a copy into a texture, between empty passes that
 * carry the stamps: src/gpu/dispatch.ts); the whole step is one submit, its query sets resolved
 * once and read back once. A call's time runs from the previous call's end stamp to its own, so
 * that the calls add up to the stamps' whole span: lavapipe writes a pass's begin stamp only once
 * the pass's work is done where the pass binds a texture (the `blocked_texture` convolutions and
 * their copies into textures), which left 85-88% of a ResNet-9 step between the begin-end pairs;
 * on a GPU the difference is the gap between passes, which the step pays too. Without
 * `timestamp-query`, each call is submitted and waited for alone, which adds the submit and the
 * wait (10 ms on lavapipe in Deno) to every call; the output says which.
 * Each figure is the median over the repetitions, after the step has run once untimed (first
 * dispatches compile and page in).
 */
import { IMAGE_BYTES } from "../src/data/cifar.ts";
import { CIFAR10_MEAN, CIFAR10_STD, epochOrder, GpuDataset } from "../src/data/gpu_dataset.ts";
import { writeBuffer } from "../src/gpu/buffer.ts";
import type { Gpu } from "../src/gpu/device.ts";
import { type Command, encodeCommands, submitCommands } from "../src/gpu/dispatch.ts";
import {
  type Call,
  callOp,
  isKernelCall,
  type KernelCall,
  kernelCall,
  linearGrid,
  read,
  readWrite,
} from "../src/gpu/kernel_call.ts";
import { byteSize, createTensor, type TensorDesc } from "../src/gpu/tensor.ts";
import { modelConfig, type ModelName } from "../src/model/config.ts";
import { ModelWeights } from "../src/model/weights.ts";
import { KernelPolicy } from "../src/ops/policy.ts";
import type { ActivationDType } from "../src/ops/shape.ts";
import { createMetrics } from "../src/ops/softmax_cross_entropy.ts";
import { materialize } from "../src/plan/materialize.ts";
import { buildNetworkProgram, FORWARD_END } from "../src/plan/network.ts";
import { BatchSource } from "../src/train/batch_source.ts";
import { checkPrecision } from "../src/train/precision.ts";
import { elementCount } from "../src/util/shape.ts";
import { copyCall } from "./batchnorm.ts";
import { copyTilings, yardsticks } from "./kernels.ts";
import { createOptimizer } from "./optimizer.ts";
import { formatTable, median, timeSubmits } from "./timing.ts";
import { benchRecipe, describeOptimizer } from "./training_step.ts";

export type Pass = "input" | "forward" | "backward" | "optimizer";

/**
 * How the calls were timed: GPU timestamps around each call, or each call submitted and waited
 * for alone (the fallback without `timestamp-query`).
 */
export type Timer = "timestamps" | "calls";

export const TIMER_NOTES: Readonly<Record<Timer, string>> = {
  timestamps: "GPU timestamps (timestamp-query), each kernel call in a compute pass of its own, " +
    "from the previous call's end to its own",
  calls: "timed call by call (no timestamp-query): includes submit and wait overhead",
};

/** A command to time (a dispatch or a copy), with what the profile knows of its work. */
export interface ProfileEntry {
  readonly command: Command;
  readonly pass: Pass;
  /** The kernel and entry point, e.g. `conv2d_blocked.forward`. */
  readonly op: string;
  readonly flops?: number;
  /** Bytes of the tensors it reads plus those it writes (a read_write binding counts twice). */
  readonly bytes?: number;
}

/** One timing of every entry, in entry order. */
export interface TimedRun {
  /** Milliseconds per entry: timestamps, from its begin stamp to its end stamp. */
  readonly ms: number[];
  /**
   * Timestamps only: milliseconds per entry from the previous entry's end stamp to its own (the
   * first: from its begin stamp), which add up to the stamps' span.
   */
  readonly sinceLastMs?: number[];
  /** Milliseconds from the submit to the readback (timestamps) or of all the calls (calls). */
  readonly wallMs: number;
  /** Timestamps only: what the raw stamps looked like. */
  readonly stamps?: StampCheck;
}

/** Whether the timestamps of one run are ordered and plausible. */
export interface StampCheck {
  /** Pairs whose end precedes their begin, plus calls that begin before the previous one ended. */
  readonly outOfOrder: number;
  /** Calls whose begin and end stamps are equal (a coarse clock). */
  readonly zeroLength: number;
  /** The shortest non-zero call, in nanoseconds: an upper bound on the clock's resolution. */
  readonly shortestNs: number;
  /** From the first call's begin to the last call's end, in milliseconds. */
  readonly spanMs: number;
  /**
   * The calls' begin-end pairs summed, in milliseconds: near `spanMs` where the stamps bracket the
   * work, far below it where an adapter stamps late (lavapipe, passes that bind textures).
   */
  readonly insideMs: number;
}

/** WebGPU caps a query set at 4096 queries. */
const MAX_QUERIES = 4096;
const TIMESTAMP_BYTES = 8;

/**
 * Times each entry with a pair of timestamps, in one submit: `beforeEach` runs before it (the
 * step's uniform writes), then the query sets are resolved and read back with a single wait.
 * WebGPU timestamps are nanoseconds.
 */
export async function timeWithTimestamps(
  gpu: Gpu,
  commands: readonly Command[],
  beforeEach?: () => void,
): Promise<TimedRun> {
  const { device } = gpu;
  const count = commands.length * 2;
  const querySets: GPUQuerySet[] = [];
  for (let first = 0; first < count; first += MAX_QUERIES) {
    querySets.push(
      device.createQuerySet({ type: "timestamp", count: Math.min(MAX_QUERIES, count - first) }),
    );
  }
  const resolved = device.createBuffer({
    label: "profile timestamps",
    size: count * TIMESTAMP_BYTES,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const staging = device.createBuffer({
    label: "profile timestamps readback",
    size: count * TIMESTAMP_BYTES,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  beforeEach?.();
  const encoder = device.createCommandEncoder();
  commands.forEach((command, index) => {
    const query = 2 * index;
    encodeCommands(encoder, [command], {
      querySet: querySets[Math.floor(query / MAX_QUERIES)],
      begin: query % MAX_QUERIES,
      end: query % MAX_QUERIES + 1,
    });
  });
  querySets.forEach((querySet, index) =>
    encoder.resolveQuerySet(
      querySet,
      0,
      querySet.count,
      resolved,
      index * MAX_QUERIES * TIMESTAMP_BYTES,
    )
  );
  encoder.copyBufferToBuffer(resolved, 0, staging, 0, count * TIMESTAMP_BYTES);
  const start = performance.now();
  device.queue.submit([encoder.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const wallMs = performance.now() - start;
  const stamps = new BigUint64Array(staging.getMappedRange().slice(0));
  staging.destroy();
  resolved.destroy();
  for (const querySet of querySets) querySet.destroy();
  return { ...readStamps(stamps), wallMs };
}

/**
 * Per-call milliseconds from begin/end pairs and from end to end (`TimedRun`), and how ordered
 * the stamps are.
 */
export function readStamps(
  stamps: BigUint64Array,
): { ms: number[]; sinceLastMs: number[]; stamps: StampCheck } {
  const ms: number[] = [];
  const sinceLastMs: number[] = [];
  let outOfOrder = 0;
  let zeroLength = 0;
  let shortestNs = Infinity;
  for (let i = 0; i < stamps.length; i += 2) {
    const ns = Number(stamps[i + 1] - stamps[i]);
    if (ns < 0) outOfOrder++;
    if (i > 0 && stamps[i] < stamps[i - 1]) outOfOrder++;
    if (ns === 0) zeroLength++;
    if (ns > 0) shortestNs = Math.min(shortestNs, ns);
    ms.push(ns / 1e6);
    sinceLastMs.push(Number(stamps[i + 1] - stamps[i > 0 ? i - 1 : i]) / 1e6);
  }
  const spanMs = Number(stamps[stamps.length - 1] - stamps[0]) / 1e6;
  const insideMs = ms.reduce((sum, value) => sum + value, 0);
  return { ms, sinceLastMs, stamps: { outOfOrder, zeroLength, shortestNs, spanMs, insideMs } };
}

/** The fallback: each entry submitted alone and waited for, `beforeEach` before the first. */
export async function timeCallByCall(
  gpu: Gpu,
  commands: readonly Command[],
  beforeEach?: () => void,
): Promise<TimedRun> {
  beforeEach?.();
  const ms: number[] = [];
  const first = performance.now();
  for (const command of commands) {
    const start = performance.now();
    submitCommands(gpu, [command]);
    await gpu.device.queue.onSubmittedWorkDone();
    ms.push(performance.now() - start);
  }
  return { ms, wallMs: performance.now() - first };
}

/** The timer the adapter allows: timestamps where the device got `timestamp-query`. */
export function availableTimer(gpu: Gpu): Timer {
  return gpu.device.features.has("timestamp-query") ? "timestamps" : "calls";
}

function timeRun(gpu: Gpu, timer: Timer, commands: readonly Command[], beforeEach?: () => void) {
  return timer === "timestamps"
    ? timeWithTimestamps(gpu, commands, beforeEach)
    : timeCallByCall(gpu, commands, beforeEach);
}

/**
 * Bytes a call moves: each tensor it reads, plus each it writes (read_write: both; a texture:
 * its whole texels).
 */
export function callBytes(call: Call): number {
  return call.bindings.reduce(
    (sum, { tensor, access }) => sum + byteSize(tensor) * (access === "read_write" ? 2 : 1),
    0,
  );
}

/**
 * Bytes the input batch moves: per sample its image, its label and its entry of the epoch's order
 * read (the kernel binds the whole data set but reads only the batch's images; a crop or Cutout
 * reads fewer pixels, counted whole), the batch tensor (f32 or f16) and the labels written.
 * BatchSource keeps its kernel call to itself, so the count is from the tensors it was given.
 */
export function inputBatchBytes(
  dataset: GpuDataset,
  input: TensorDesc,
  labels: TensorDesc,
): number {
  const batch = labels.shape[0];
  const perImage = (tensor: TensorDesc) => byteSize(tensor) / tensor.shape[0];
  const order = byteSize({ shape: [batch], dtype: "u32" });
  const reads = batch * (perImage(dataset.imageChunks[0]) + perImage(dataset.labels)) + order;
  return reads + byteSize(input) + byteSize(labels);
}

function entriesOf(
  calls: readonly Call[],
  commands: readonly Command[],
  passOf: (index: number) => Pass,
): ProfileEntry[] {
  return calls.map((call, index) => ({
    command: commands[index],
    pass: passOf(index),
    op: callOp(call),
    bytes: callBytes(call),
    ...(isKernelCall(call) && call.flops !== undefined ? { flops: call.flops } : {}),
  }));
}

// --- The adapter's peaks ---

/** The work of the two peak yardsticks. */
export interface PeakSizes {
  fmaInvocations: number;
  fmaIterations: number;
  /** Bytes of the copy's source (as many are written). */
  copyBytes: number;
}

/**
 * Large enough that each yardstick runs for milliseconds: on a CPU adapter 2.1 GFLOP and a copy
 * past the last-level cache; on a GPU a million invocations (every SM full several times over)
 * and a copy twice the size of an H100's or H200's L2.
 */
export function peakSizes(gpu: Gpu): PeakSizes {
  return gpu.isFallbackAdapter
    ? { fmaInvocations: 8192, fmaIterations: 4096, copyBytes: 64 * 2 ** 20 }
    : { fmaInvocations: 2 ** 20, fmaIterations: 2048, copyBytes: 128 * 2 ** 20 };
}

/** Values of the FMA loop's vec4 accumulators after it ran, summed, as the kernel writes them. */
export const FMA_ACCUMULATORS = 8;

/** The FMA loop over `sums` (one vec4 per invocation), with coefficients [a, b] (two vec4s). */
export function fmaCall(
  coefficients: TensorDesc,
  sums: TensorDesc,
  { iterations, workgroupSize }: { iterations: number; workgroupSize: number },
): KernelCall {
  const invocations = elementCount(sums.shape) / 4;
  return kernelCall({
    kernel: yardsticks.fma,
    entryPoint: "fma_loop",
    workgroupSize,
    constants: { ITERATIONS: iterations },
    grid: linearGrid(invocations, workgroupSize),
    bindings: [read(coefficients), readWrite(sums)],
    flops: invocations * iterations * FMA_ACCUMULATORS * 4 * 2,
  });
}

export interface Peaks {
  timer: Timer;
  gflops: number;
  gbPerSecond: number;
  fma: { gflop: number; ms: number };
  copy: { bytes: number; ms: number; tiling: string };
}

/**
 * Peak FLOP/s and GB/s of this adapter: the best of `repeats` runs of the FMA loop and of the
 * copy in each tiling, timed like the profile's calls.
 */
export async function measurePeaks(
  gpu: Gpu,
  { timer = availableTimer(gpu), repeats = 3, sizes = peakSizes(gpu) }: {
    timer?: Timer;
    repeats?: number;
    sizes?: PeakSizes;
  } = {},
): Promise<Peaks> {
  const workgroupSize = gpu.isFallbackAdapter ? 8 : 256;
  const coefficients = createTensor(gpu, "fma coefficients", [2, 4]);
  // a < 1 keeps the accumulators bounded (they converge to b / (1 - a)): no infinities or NaNs.
  writeBuffer(gpu, coefficients.buffer, new Float32Array([0.5, 0.5, 0.5, 0.5, 1, 1, 1, 1]));
  const sums = createTensor(gpu, "fma sums", [sizes.fmaInvocations * 4]);
  const fma = fmaCall(coefficients, sums, { iterations: sizes.fmaIterations, workgroupSize });
  const floats = sizes.copyBytes / 4;
  const source = createTensor(gpu, "copy source", [floats]);
  writeBuffer(gpu, source.buffer, new Float32Array(floats).fill(1));
  const destination = createTensor(gpu, "copy destination", [floats]);
  const tilings = copyTilings(gpu);
  const calls = [fma, ...tilings.map((tiling) => copyCall(source, destination, tiling))];
  const { commands } = await materialize(gpu, calls, { label: "peaks" });
  await timeRun(gpu, timer, commands); // warm-up
  const best = commands.map(() => Infinity);
  for (let repeat = 0; repeat < repeats; repeat++) {
    const { ms } = await timeRun(gpu, timer, commands);
    ms.forEach((value, index) => best[index] = Math.min(best[index], value));
  }
  const copyMs = Math.min(...best.slice(1));
  const tiling = tilings[best.indexOf(copyMs) - 1];
  for (const tensor of [coefficients, sums, source, destination]) tensor.buffer.destroy();
  const copyBytes = 2 * sizes.copyBytes;
  return {
    timer,
    gflops: fma.flops! / best[0] / 1e6,
    gbPerSecond: copyBytes / copyMs / 1e6,
    fma: { gflop: fma.flops! / 1e9, ms: best[0] },
    copy: {
      bytes: copyBytes,
      ms: copyMs,
      tiling: `workgroups of ${tiling.WORKGROUP_SIZE}, ${tiling.VECTORS_PER_INVOCATION} vec4s each`,
    },
  };
}

// --- The step ---

export interface ProfileOptions {
  /** Default resnet18. */
  model?: ModelName;
  width?: number;
  /** Default: the model's (`benchRecipe`: 128 for a ResNet, 512 for ResNet-9). */
  batchSize?: number;
  /** The activations' element type (default f32); f16 trains with loss scaling. */
  precision?: ActivationDType;
  /** Timed repetitions of the step; each figure is their median. */
  repeats?: number;
  policy?: KernelPolicy;
  /** Default: timestamps where the device has them. */
  timer?: Timer;
  /** The peak yardsticks' sizes (default `peakSizes(gpu)`). */
  peakSizes?: PeakSizes;
}

export interface ProfiledCall {
  label: string;
  op: string;
  pass: Pass;
  ms: number;
  flops?: number;
  bytes?: number;
}

/** Calls of one op in one pass (or of one pass of several ops: `op` "all"), summed. */
export interface ProfileGroup extends Rates {
  op: string;
  pass: Pass;
  calls: number;
  ms: number;
  /** Of the sum of every call's time. */
  share: number;
}

/**
 * The loss scale after the profile's steps (the untimed one, those timed as training runs them,
 * the repetitions timed call by call), and the steps it skipped for an overflow, as training
 * does, halving the scale: such a step skips the update's work, so where one of the timed
 * repetitions did, the optimizer's times are too short.
 */
export interface LossScaleSummary {
  scale: number;
  steps: number;
  skipped: number;
  /** Of the repetitions whose calls the tables show. */
  skippedInRepetitions: number;
}

export interface StepProfile {
  adapter: string;
  model: string;
  batchSize: number;
  /** The activations' element type; f16 trains with loss scaling. */
  precision: ActivationDType;
  /** f16: what loss scaling did over the profile's steps. */
  lossScale?: LossScaleSummary;
  /** `describeOptimizer`'s words for the step's optimizer. */
  optimizer: string;
  kernels: string;
  timer: Timer;
  timerNote: string;
  repeats: number;
  peaks: Peaks;
  /** The step as training runs it (one submit), wall-clock ms per step. */
  stepWallMs: number;
  /** Sum of the calls' median times. */
  callsMs: number;
  /** Per repetition: the timed run's wall-clock ms and (timestamps) its stamps' check. */
  runs: { wallMs: number; stamps?: StampCheck }[];
  passes: ProfileGroup[];
  /** By kind of layer (`opKind`) and pass, in pass order, largest first within a pass. */
  kinds: ProfileGroup[];
  groups: ProfileGroup[];
  calls: ProfiledCall[];
}

const PASSES: readonly Pass[] = ["input", "forward", "backward", "optimizer"];

export interface Rates {
  gflops?: number;
  gbPerSecond?: number;
  /** GFLOP/s over the FMA peak where the FLOPs are counted (arithmetic ops), else GB/s over the copy's. */
  peakShare?: number;
}

/** The speed of `ms` of work; each figure absent where its count is. */
export function rates(
  ms: number,
  flops: number | undefined,
  bytes: number | undefined,
  peaks: Pick<Peaks, "gflops" | "gbPerSecond">,
): Rates {
  const gflops = flops === undefined ? undefined : flops / ms / 1e6;
  const gbPerSecond = bytes === undefined ? undefined : bytes / ms / 1e6;
  const peakShare = gflops !== undefined
    ? gflops / peaks.gflops
    : gbPerSecond === undefined
    ? undefined
    : gbPerSecond / peaks.gbPerSecond;
  return {
    ...(gflops === undefined ? {} : { gflops }),
    ...(gbPerSecond === undefined ? {} : { gbPerSecond }),
    ...(peakShare === undefined ? {} : { peakShare }),
  };
}

/**
 * The kind of layer an op (`kernel.entry`, `callOp`) belongs to, to weigh the layers against each
 * other: the convolution kernels together (their FLOPs counted, so the row has GFLOP/s), apart
 * from the memory-bound helpers (bytes only): the copies of operands into the textures that
 * `blocked_texture` and batch norm's `serial_texture` read (copy commands, or to_texture where the
 * tensor is f16 or padded), the sums of a split weight gradient's partial results, and the
 * Winograd variant's transforms (its products are convolution calls that count the multiply-adds
 * they do, 4x fewer than the direct convolution's); the batch
 * norms (which apply the ReLU, and in a ResNet block the residual sum, in the same pass); the
 * separate sums (ResNet-9's residual sums, the sums of gradients where a tensor fed two branches);
 * the 2x2 max pools, the global pool, and the head (linear layer and loss).
 */
export function opKind(op: string): string {
  const kernel = op.split(".")[0];
  switch (kernel) {
    case "to_texture":
    case "copy":
      return "copies into textures";
    case "conv2d_reduce":
      return "conv partial sums";
    case "conv2d_winograd":
      // Memory-bound, apart from the Winograd products (kind "convolution", their own FLOPs).
      return "Winograd transforms";
    case "batchnorm":
      return "batch norm (+ ReLU)";
    case "add":
      return "add";
    case "relu":
      return "ReLU";
    case "max_pool":
      return "max pool 2x2";
    case "global_max_pool":
    case "global_avg_pool":
      return "global pool";
    case "linear":
    case "softmax_cross_entropy":
      return "head (linear, loss)";
    case "input_batch":
      return "input batch";
    case "optimizer":
      return "optimizer";
    default:
      return kernel.startsWith("conv2d") ? "convolution" : kernel;
  }
}

/** Sums calls into groups keyed by `keyOf`, largest first. */
export function groupCalls(
  calls: readonly ProfiledCall[],
  peaks: Pick<Peaks, "gflops" | "gbPerSecond">,
  keyOf: (call: ProfiledCall) => string,
): ProfileGroup[] {
  const total = calls.reduce((sum, call) => sum + call.ms, 0);
  const groups = new Map<string, ProfiledCall[]>();
  for (const call of calls) {
    const key = keyOf(call);
    groups.set(key, [...groups.get(key) ?? [], call]);
  }
  return [...groups.values()].map((members) => {
    const ms = members.reduce((sum, call) => sum + call.ms, 0);
    const sumOf = (field: "flops" | "bytes") =>
      members.every((call) => call[field] !== undefined)
        ? members.reduce((sum, call) => sum + call[field]!, 0)
        : undefined;
    const { peakShare, ...speeds } = rates(ms, sumOf("flops"), sumOf("bytes"), peaks);
    // A group of arithmetic and memory-bound calls (a whole pass) has no one peak to compare with.
    const arithmetic = members.filter((call) => call.flops !== undefined).length;
    const comparable = arithmetic === 0 || arithmetic === members.length;
    return {
      op: members.every((call) => call.op === members[0].op) ? members[0].op : "all",
      pass: members[0].pass,
      calls: members.length,
      ms,
      share: ms / total,
      ...speeds,
      ...(comparable && peakShare !== undefined ? { peakShare } : {}),
    };
  }).toSorted((a, b) => b.ms - a.ms);
}

/**
 * Profiles one training step: the input batch (augmented, from a data set on the GPU), forward and
 * loss, backward, and the model's optimizer (`benchRecipe`), on synthetic data of CIFAR's shape;
 * in f16, the loss scaled and the optimizer's overflow check and scale update with it, as f16
 * training runs them.
 */
export async function profileTrainingStep(
  gpu: Gpu,
  options: ProfileOptions = {},
): Promise<StepProfile> {
  const {
    model = "resnet18",
    width = 1,
    precision = "f32",
    repeats = 3,
    policy = KernelPolicy.forAdapter(gpu),
    timer = availableTimer(gpu),
  } = options;
  if (timer === "timestamps" && !gpu.device.features.has("timestamp-query")) {
    throw new Error("profile: this device has no timestamp-query; use the calls timer");
  }
  checkPrecision(gpu, precision);
  const recipe = benchRecipe(model);
  const batchSize = options.batchSize ?? recipe.batchSize;
  const peaks = await measurePeaks(gpu, { timer, repeats, sizes: options.peakSizes });

  const weights = new ModelWeights(gpu, modelConfig(model, width));
  weights.initialize(0);
  // Blank images: the kernels' speed does not depend on the pixels, only on the shapes.
  const dataset = GpuDataset.create(gpu, {
    images: new Uint8Array(batchSize * IMAGE_BYTES),
    labels: new Uint8Array(batchSize),
    count: batchSize,
  }, "profile");
  const input = createTensor(gpu, "input", [batchSize, 32, 32, 3], precision);
  const labels = createTensor(gpu, "labels", [batchSize], "u32");
  const metrics = createMetrics(gpu);
  const source = await BatchSource.create(gpu, dataset, {
    batchSize,
    augment: true,
    padding: recipe.padding,
    cutout: recipe.cutout,
    mean: CIFAR10_MEAN,
    std: CIFAR10_STD,
    input,
    labels,
  });
  source.setOrder(epochOrder(0, 0, batchSize));
  const { optimizer, commands: optimizerCommands } = await createOptimizer(
    gpu,
    { params: weights.params, grads: weights.grads, size: weights.parameterLayout.size },
    recipe.optimizer,
    precision === "f16" ? { lossScaling: {} } : {},
  );
  const program = buildNetworkProgram(
    weights,
    "train",
    { input, labels, metrics, lossScale: optimizer.lossScale },
    policy,
    { labelSmoothing: recipe.labelSmoothing },
  );
  const step = await materialize(gpu, program.calls, { label: "profile" });
  const forwardEnd = program.markAt(FORWARD_END);
  const entries: ProfileEntry[] = [
    ...source.commands.map((command) => ({
      command,
      pass: "input" as const,
      op: "input_batch",
      bytes: inputBatchBytes(dataset, input, labels),
    })),
    ...entriesOf(program.calls, step.commands, (i) => i < forwardEnd ? "forward" : "backward"),
    ...optimizerCommands.map((entry) => ({ ...entry, pass: "optimizer" as const })),
  ];
  const beforeEach = () => {
    source.prepareBatch(0, 0, 0);
    optimizer.prepareStep(recipe.optimizer.lr);
  };
  const stepWallMs = await timeSubmits(
    gpu,
    [source.commands, step.commands, optimizer.commands],
    { reps: repeats, warmup: 1, beforeEach },
  );
  const commands = entries.map((entry) => entry.command);
  const beforeRepetitions = await optimizer.readLossScale();
  const runs: TimedRun[] = [];
  for (let repeat = 0; repeat < repeats; repeat++) {
    runs.push(await timeRun(gpu, timer, commands, beforeEach));
  }
  const error = gpu.takeUncapturedError();
  if (error) throw new Error(`GPU error in the profiled step: ${error.message}`);
  const after = await optimizer.readLossScale();
  const lossScale: LossScaleSummary | undefined = after && {
    scale: after.scale,
    steps: after.appliedSteps + after.skippedSteps,
    skipped: after.skippedSteps,
    skippedInRepetitions: after.skippedSteps - beforeRepetitions!.skippedSteps,
  };

  const calls: ProfiledCall[] = entries.map((entry, index) => ({
    label: entry.command.label,
    op: entry.op,
    pass: entry.pass,
    ms: median(runs.map((run) => (run.sinceLastMs ?? run.ms)[index])),
    ...(entry.flops === undefined ? {} : { flops: entry.flops }),
    ...(entry.bytes === undefined ? {} : { bytes: entry.bytes }),
  }));
  step.destroy();
  optimizer.destroy();
  source.destroy();
  dataset.destroy();
  weights.destroy();
  for (const tensor of [input, labels, metrics]) tensor.buffer.destroy();
  return {
    adapter: gpu.adapterName,
    model: `${model} width ${width}`,
    batchSize,
    precision,
    ...(lossScale ? { lossScale } : {}),
    optimizer: describeOptimizer(recipe.optimizer),
    kernels: policy.describe(),
    timer,
    timerNote: TIMER_NOTES[timer],
    repeats,
    peaks,
    stepWallMs,
    callsMs: calls.reduce((sum, call) => sum + call.ms, 0),
    runs: runs.map(({ wallMs, stamps }) => (stamps ? { wallMs, stamps } : { wallMs })),
    passes: groupCalls(calls, peaks, (call) => call.pass)
      .toSorted((a, b) => PASSES.indexOf(a.pass) - PASSES.indexOf(b.pass)),
    kinds: groupCalls(
      calls.map((call) => ({ ...call, op: opKind(call.op) })),
      peaks,
      (call) => `${call.op} ${call.pass}`,
    ).toSorted((a, b) => PASSES.indexOf(a.pass) - PASSES.indexOf(b.pass)),
    groups: groupCalls(calls, peaks, (call) => `${call.op} ${call.pass}`),
    calls,
  };
}

// --- Output ---

export interface ProfileFormat {
  /** Rows of the op-and-pass table (the largest; the rest summed in one row). */
  top?: number;
  /** Also a table of every call. */
  calls?: boolean;
}

const fixed = (value: number | undefined, digits: number) =>
  value === undefined ? "-" : value.toFixed(digits);
const percent = (share: number | undefined) =>
  share === undefined ? "-" : `${(share * 100).toFixed(1)}%`;

function groupRows(groups: readonly ProfileGroup[]): (string | number)[][] {
  return groups.map((group) => [
    group.op,
    group.pass,
    group.calls,
    group.ms.toFixed(2),
    percent(group.share),
    fixed(group.gflops, 1),
    fixed(group.gbPerSecond, 1),
    percent(group.peakShare),
  ]);
}

const GROUP_HEADER = ["op", "pass", "calls", "ms", "share", "GFLOP/s", "GB/s", "of peak"];

function lossScaleLine(
  { scale, steps, skipped, skippedInRepetitions }: LossScaleSummary,
  repeats: number,
): string {
  const line = `loss scale ${scale} after ${steps} steps, ${skipped} skipped for an overflow`;
  return skippedInRepetitions === 0
    ? `${line}, none of the ${repeats} timed repetitions`
    : `${line}, ${skippedInRepetitions} of the ${repeats} timed repetitions: their updates ` +
      "did no work, so the optimizer's times are too short";
}

/** The profile as console text: peaks, the timer and its checks, then the tables. */
export function formatProfile(profile: StepProfile, format: ProfileFormat = {}): string {
  const { top = 20 } = format;
  const { peaks } = profile;
  const lines = [
    `profile of one training step: ${profile.model}, batch ${profile.batchSize}, ` +
    `${profile.precision} activations${
      profile.precision === "f16" ? " with loss scaling" : ""
    }, input batch + forward + backward + ${profile.optimizer}; kernels: ${profile.kernels}`,
    `timer: ${profile.timerNote}; median of ${profile.repeats} repetitions`,
    `peaks measured now: ${peaks.gflops.toFixed(1)} GFLOP/s (FMA loop, ${
      peaks.fma.gflop.toFixed(2)
    } GFLOP in ${peaks.fma.ms.toFixed(2)} ms), ${peaks.gbPerSecond.toFixed(1)} GB/s (copy, ${
      (peaks.copy.bytes / 2 ** 20).toFixed(0)
    } MiB read + written in ${peaks.copy.ms.toFixed(2)} ms, ${peaks.copy.tiling})`,
    `step: ${profile.stepWallMs.toFixed(1)} ms wall-clock as training runs it (one submit); ` +
    `the calls sum to ${profile.callsMs.toFixed(1)} ms`,
    ...(profile.lossScale ? [lossScaleLine(profile.lossScale, profile.repeats)] : []),
    ...profile.runs.map((run, index) => {
      const wall = `run ${index + 1}: ${run.wallMs.toFixed(1)} ms wall-clock`;
      if (!run.stamps) return wall;
      const { outOfOrder, zeroLength, shortestNs, spanMs, insideMs } = run.stamps;
      return `${wall}, stamps span ${spanMs.toFixed(1)} ms (${
        percent(insideMs / spanMs)
      } inside the calls' begin-end pairs), ${outOfOrder} out of order, ` +
        `${zeroLength} zero-length, shortest call ${shortestNs} ns`;
    }),
    "",
    "by pass",
    formatTable(GROUP_HEADER, groupRows(profile.passes)),
    "",
    "by kind of layer and pass",
    formatTable(["kind", ...GROUP_HEADER.slice(1)], groupRows(profile.kinds)),
    "",
    "by op and pass (share: of the calls' sum; of peak: GFLOP/s over the FMA loop's where the op " +
    "counts FLOPs, else GB/s over the copy's)",
  ];
  const shown = profile.groups.slice(0, top);
  const rest = profile.groups.slice(top);
  const restRow = rest.length === 0 ? [] : [[
    `${rest.length} more ops`,
    "",
    rest.reduce((sum, group) => sum + group.calls, 0),
    rest.reduce((sum, group) => sum + group.ms, 0).toFixed(2),
    percent(rest.reduce((sum, group) => sum + group.share, 0)),
    "",
    "",
    "",
  ]];
  lines.push(formatTable(GROUP_HEADER, [...groupRows(shown), ...restRow]));
  if (format.calls) {
    lines.push("", "every call, in step order");
    lines.push(formatTable(
      ["call", "pass", "ms", "GFLOP/s", "GB/s", "of peak"],
      profile.calls.map((call) => {
        const { gflops, gbPerSecond, peakShare } = rates(call.ms, call.flops, call.bytes, peaks);
        return [
          call.label,
          call.pass,
          call.ms.toFixed(3),
          fixed(gflops, 1),
          fixed(gbPerSecond, 1),
          percent(peakShare),
        ];
      }),
    ));
  }
  return lines.join("\n");
}
