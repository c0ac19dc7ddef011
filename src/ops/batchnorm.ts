/**
 * BatchNorm2d over NHWC activations with PyTorch's semantics, optionally fused with a residual add
 * and a ReLU (shaders/batchnorm.wgsl, which describes the passes and the numerics).
 *
 * Each function builds its dispatches once, at plan time; they are encoded later as they are.
 * Statistics and parameter gradients come from a reduction split in two passes: per-lane partials
 * into a workspace, then one combine per channel vector. How the work is split is a variant,
 * chosen per adapter (or forced, for tests and benchmarks):
 *   "serial": few large invocations, 4 or 8 channel vectors by tens to hundreds of rows each,
 *             and a combine that merges every row block in one invocation; no workgroup memory,
 *             no barrier. llvmpipe and other CPU adapters run this fastest.
 *   "tree":   one channel vector by a few rows per invocation, so that neighbours read
 *             neighbouring addresses, and a combine whose workgroup merges the row blocks through a
 *             workgroup-memory tree; the shape real GPUs favour.
 */
import { createDispatch, type Dispatch, linearGrid } from "../gpu/dispatch.ts";
import type { Gpu } from "../gpu/device.ts";
import type { OverrideConstants } from "../gpu/pipeline.ts";
import { byteSize, type Tensor } from "../gpu/tensor.ts";
import { kernels } from "../shaders.ts";
import { expectShape, nhwc, ShapeError } from "./shape.ts";

export type BatchNormActivation = "none" | "relu";

export interface BatchNormParams {
  /** [C] scale (PyTorch's `weight`). */
  gamma: Tensor;
  /** [C] shift (PyTorch's `bias`). */
  beta: Tensor;
  /** [C], updated by every training forward. */
  runningMean: Tensor;
  /** [C], updated by every training forward with the unbiased batch variance. */
  runningVar: Tensor;
  /** [1] u32, incremented by every training forward. */
  numBatchesTracked: Tensor;
}

/** [C] each, written by the training forward, read by the backward. */
export interface BatchNormSaved {
  mean: Tensor;
  invStd: Tensor;
}

export type BatchNormVariant = "serial" | "tree";

export const BATCH_NORM_VARIANTS: readonly BatchNormVariant[] = ["serial", "tree"];

export const BATCH_NORM_EPS = 1e-5;
export const BATCH_NORM_MOMENTUM = 0.1;

/** The variant the op uses on this adapter unless told otherwise. */
export function defaultBatchNormVariant(gpu: Gpu): BatchNormVariant {
  return gpu.isFallbackAdapter ? "serial" : "tree";
}

/** What a call may add to choose the variant; the default follows the adapter. */
interface VariantChoice {
  variant?: BatchNormVariant;
}

/**
 * How one pass splits [rows, channel vectors] among invocations ("lanes"): each lane covers
 * `vectorsPerLane` consecutive channel vectors of `rowsPerLane` consecutive rows.
 */
interface LaneTiling {
  vectorsPerLane: number;
  rowsPerLane: number;
  workgroupSize: number;
}

/** The geometry of every pass of one op for one shape and variant. */
export interface BatchNormPlan {
  variant: BatchNormVariant;
  rows: number;
  channels: number;
  /** Channels in groups of 4, the last one padded. */
  vectorsPerRow: number;
  /** Whether activations are bound as vec4 (channels a multiple of 4) or as scalars. */
  vectorized: boolean;
  /** The two reductions (statistics, gradients); their row-block count sizes the workspace. */
  reduction: LaneTiling & { rowBlocks: number };
  /** normalize and input_gradient. */
  elementwise: LaneTiling;
  combineWorkgroupSize: number;
  workspaceBytes: number;
}

/**
 * Channel vectors a CPU lane covers, the largest of these dividing the row: 4 (64 contiguous bytes
 * of each row) ran fastest on llvmpipe for 64, 128 and 512 channels, 8 for 256 channels (1 KB
 * rows), where 4 ran at half the speed (bench/README.md, "batchnorm"). 16 spills registers.
 */
function serialVectorsPerLane(vectorsPerRow: number): number {
  const preferred = vectorsPerRow === 64 ? 8 : 4;
  return [8, 4, 2, 1].find((k) => k <= preferred && vectorsPerRow % k === 0)!;
}
/** llvmpipe's SIMD width on 256-bit vectors: one workgroup fills its lanes exactly. */
const SERIAL_WORKGROUP_SIZE = 8;
/** Enough lanes to keep every CPU thread busy with several workgroups, few enough to stay long. */
const SERIAL_TARGET_LANES = 1024;
/** Invocations per GPU reduction pass: enough to fill the chip, with partials ~1/16 of x. */
const TREE_TARGET_LANES = 65536;
const TREE_MIN_ROWS_PER_LANE = 8;
const TREE_ELEMENTWISE_ROWS_PER_LANE = 4;
const TREE_WORKGROUP_SIZE = 64;
const TREE_COMBINE_WORKGROUP_SIZE = 256;
/** Per channel vector: the 4 dx coefficients. Per (row block, vector): 2 partial sums. */
const COEFFICIENT_VECTORS = 4;
const PARTIAL_VECTORS = 2;
const VECTOR_BYTES = 16;

export function planBatchNorm(
  xShape: readonly number[],
  variant: BatchNormVariant,
): BatchNormPlan {
  if (xShape.length !== 4) {
    throw new ShapeError(`batch norm: x has shape [${xShape}], expected NHWC`);
  }
  const [n, h, w, channels] = xShape;
  const rows = n * h * w;
  const vectorsPerRow = Math.ceil(channels / 4);
  let reduction: LaneTiling, elementwise: LaneTiling, combineWorkgroupSize: number;
  if (variant === "serial") {
    const vectorsPerLane = serialVectorsPerLane(vectorsPerRow);
    const lanesPerRow = vectorsPerRow / vectorsPerLane;
    const rowsPerLane = Math.max(1, Math.ceil(rows * lanesPerRow / SERIAL_TARGET_LANES));
    reduction = elementwise = {
      vectorsPerLane,
      rowsPerLane,
      workgroupSize: SERIAL_WORKGROUP_SIZE,
    };
    combineWorkgroupSize = SERIAL_WORKGROUP_SIZE;
  } else {
    reduction = {
      vectorsPerLane: 1,
      rowsPerLane: Math.max(
        TREE_MIN_ROWS_PER_LANE,
        Math.ceil(rows * vectorsPerRow / TREE_TARGET_LANES),
      ),
      workgroupSize: TREE_WORKGROUP_SIZE,
    };
    elementwise = {
      vectorsPerLane: 1,
      rowsPerLane: TREE_ELEMENTWISE_ROWS_PER_LANE,
      workgroupSize: TREE_WORKGROUP_SIZE,
    };
    combineWorkgroupSize = TREE_COMBINE_WORKGROUP_SIZE;
  }
  const rowBlocks = Math.ceil(rows / reduction.rowsPerLane);
  return {
    variant,
    rows,
    channels,
    vectorsPerRow,
    vectorized: channels % 4 === 0,
    reduction: { ...reduction, rowBlocks },
    elementwise,
    combineWorkgroupSize,
    workspaceBytes: VECTOR_BYTES * vectorsPerRow *
      (COEFFICIENT_VECTORS + PARTIAL_VECTORS * rowBlocks),
  };
}

/**
 * Bytes of scratch for the split reductions of an x of this shape; one workspace serves every
 * layer, since no two batch-norm passes run at once. It is bound read_write by the passes that fill
 * it, so it needs a buffer of its own.
 */
export function batchNormWorkspaceSize(
  gpu: Gpu,
  xShape: readonly number[],
  variant: BatchNormVariant = defaultBatchNormVariant(gpu),
): number {
  return planBatchNorm(xShape, variant).workspaceBytes;
}

/** Training forward: batch statistics, running-statistics update, then
 * y = act(gamma · (x − mean) · invStd + beta [+ residual]). */
export async function batchNormTrainForward(
  gpu: Gpu,
  t: {
    x: Tensor;
    y: Tensor;
    params: BatchNormParams;
    saved: BatchNormSaved;
    workspace: Tensor;
    residual?: Tensor;
    activation: BatchNormActivation;
    momentum?: number;
    eps?: number;
  } & VariantChoice,
): Promise<Dispatch[]> {
  const { x, y, params, saved, workspace, residual } = t;
  const plan = checkedPlan(gpu, "batch norm", t);
  if (plan.rows < 2) {
    // PyTorch refuses this too: the unbiased variance for the running statistics is undefined.
    throw new RangeError(
      `batch norm: ${x.label} has ${plan.rows} value per channel; training needs at least 2`,
    );
  }
  checkActivation("batch norm", y, x, residual);
  checkParams("batch norm", plan.channels, params, [saved.mean, saved.invStd]);
  checkWorkspace("batch norm", workspace, plan);
  checkBindings("batch norm statistics", [x], [workspace]);
  checkBindings("batch norm", [x, residual, params.gamma, params.beta, saved.mean, saved.invStd], [
    y,
  ]);
  const eps = t.eps ?? BATCH_NORM_EPS;
  const momentum = t.momentum ?? BATCH_NORM_MOMENTUM;
  return [
    await reductionPass(gpu, plan, "statistics_partials", [x, workspace]),
    await combinePass(gpu, plan, "statistics_combine", { EPS: eps, MOMENTUM: momentum }, [
      workspace,
      saved.mean,
      saved.invStd,
      params.runningMean,
      params.runningVar,
      params.numBatchesTracked,
    ]),
    await normalizePass(gpu, plan, {
      x,
      y,
      residual,
      activation: t.activation,
      gamma: params.gamma,
      beta: params.beta,
      mean: saved.mean,
      spread: saved.invStd,
      spreadIsVariance: false,
      eps,
    }),
  ];
}

/** Eval forward: y = act(gamma · (x − running_mean) / sqrt(running_var + eps) + beta [+ residual]). */
export async function batchNormEvalForward(
  gpu: Gpu,
  t: {
    x: Tensor;
    y: Tensor;
    params: BatchNormParams;
    residual?: Tensor;
    activation: BatchNormActivation;
    eps?: number;
  } & VariantChoice,
): Promise<Dispatch[]> {
  const { x, y, params, residual } = t;
  const plan = checkedPlan(gpu, "batch norm eval", t);
  checkActivation("batch norm eval", y, x, residual);
  checkParams("batch norm eval", plan.channels, params, []);
  const reads = [x, residual, params.gamma, params.beta, params.runningMean, params.runningVar];
  checkBindings("batch norm eval", reads, [y]);
  return [
    await normalizePass(gpu, plan, {
      x,
      y,
      residual,
      activation: t.activation,
      gamma: params.gamma,
      beta: params.beta,
      mean: params.runningMean,
      spread: params.runningVar,
      spreadIsVariance: true,
      eps: t.eps ?? BATCH_NORM_EPS,
    }),
  ];
}

/**
 * Backward of the training forward: dx, dgamma and dbeta, overwritten. y is the forward's output,
 * whose sign gives the ReLU mask; dResidual, given when the forward had a residual, receives the
 * gradient after the mask (dy itself without a ReLU). The eps the statistics were taken with is
 * already folded into saved.invStd.
 */
export async function batchNormBackward(
  gpu: Gpu,
  t: {
    x: Tensor;
    y: Tensor;
    dy: Tensor;
    dx: Tensor;
    dgamma: Tensor;
    dbeta: Tensor;
    params: BatchNormParams;
    saved: BatchNormSaved;
    workspace: Tensor;
    activation: BatchNormActivation;
    dResidual?: Tensor;
  } & VariantChoice,
): Promise<Dispatch[]> {
  const { x, y, dy, dx, dgamma, dbeta, params, saved, workspace, dResidual } = t;
  const plan = checkedPlan(gpu, "batch norm backward", t);
  for (const tensor of [y, dy, dx, dResidual]) {
    if (tensor) expectShape("batch norm backward", tensor, x.shape);
  }
  checkParams("batch norm backward", plan.channels, params, [
    saved.mean,
    saved.invStd,
    dgamma,
    dbeta,
  ]);
  checkWorkspace("batch norm backward", workspace, plan);
  const relu = t.activation === "relu";
  // Without a ReLU the kernels never read y; x fills its binding.
  const maskSource = relu ? y : x;
  checkBindings("batch norm backward", [x, maskSource, dy, saved.mean], [workspace]);
  checkBindings("batch norm backward", [x, maskSource, dy, workspace], [dx, dResidual]);
  const flags = { RELU: Number(relu) };
  return [
    await reductionPass(
      gpu,
      plan,
      "gradient_partials",
      [x, maskSource, dy, saved.mean, workspace],
      flags,
    ),
    await combinePass(gpu, plan, "gradient_combine", {}, [
      params.gamma,
      saved.mean,
      saved.invStd,
      workspace,
      dgamma,
      dbeta,
    ]),
    await elementwisePass(
      gpu,
      plan,
      dResidual ? "input_gradient_residual" : "input_gradient",
      [x, maskSource, dy, workspace, dx, ...(dResidual ? [dResidual] : [])],
      flags,
    ),
  ];
}

function checkedPlan(gpu: Gpu, op: string, t: { x: Tensor } & VariantChoice): BatchNormPlan {
  nhwc(op, t.x);
  return planBatchNorm(t.x.shape, t.variant ?? defaultBatchNormVariant(gpu));
}

function checkActivation(op: string, y: Tensor, x: Tensor, residual?: Tensor): void {
  expectShape(op, y, x.shape);
  if (residual) expectShape(op, residual, x.shape);
}

/** The parameters and the other per-channel tensors of a call. */
function checkParams(
  op: string,
  channels: number,
  params: BatchNormParams,
  perChannel: Tensor[],
): void {
  const { gamma, beta, runningMean, runningVar, numBatchesTracked } = params;
  for (const tensor of [gamma, beta, runningMean, runningVar, ...perChannel]) {
    expectShape(op, tensor, [channels]);
  }
  expectShape(op, numBatchesTracked, [1]);
}

function checkWorkspace(op: string, workspace: Tensor, plan: BatchNormPlan): void {
  if (byteSize(workspace) < plan.workspaceBytes) {
    throw new ShapeError(
      `${op}: ${workspace.label} holds ${byteSize(workspace)} bytes, the ${plan.variant} ` +
        `variant needs ${plan.workspaceBytes} (batchNormWorkspaceSize)`,
    );
  }
}

/**
 * Throws where one dispatch would bind a buffer both read-only and writable: wgpu rejects that
 * even for disjoint ranges (WebGPU itself forbids a written range aliased by another binding).
 */
function checkBindings(
  pass: string,
  reads: readonly (Tensor | undefined)[],
  writes: readonly (Tensor | undefined)[],
): void {
  const written = writes.filter((tensor) => tensor !== undefined);
  for (const [index, write] of written.entries()) {
    const others = [...reads, ...written.filter((_, other) => other !== index)];
    for (const other of others) {
      if (other?.buffer === write.buffer) {
        throw new ShapeError(
          `${pass}: ${write.label} is written and shares its buffer with ${other.label}, which ` +
            `the same dispatch binds; give it a buffer of its own`,
        );
      }
    }
  }
}

function laneCount(plan: BatchNormPlan, tiling: LaneTiling): number {
  return Math.ceil(plan.rows / tiling.rowsPerLane) * plan.vectorsPerRow / tiling.vectorsPerLane;
}

function tilingConstants(plan: BatchNormPlan, tiling: LaneTiling): OverrideConstants {
  return {
    CHANNELS: plan.channels,
    ROWS: plan.rows,
    VECTORS_PER_LANE: tiling.vectorsPerLane,
    ROWS_PER_LANE: tiling.rowsPerLane,
    WORKGROUP_SIZE: tiling.workgroupSize,
  };
}

/** A pass over every element, with the vec4 or scalar binding of the activations. */
function dataPass(
  gpu: Gpu,
  plan: BatchNormPlan,
  tiling: LaneTiling,
  entryPoint: string,
  bindings: Tensor[],
  constants: OverrideConstants,
): Promise<Dispatch> {
  return createDispatch(gpu, {
    kernel: kernels.batchnorm,
    entryPoint: plan.vectorized ? entryPoint : `${entryPoint}_scalar`,
    constants: { ...tilingConstants(plan, tiling), ...constants },
    bindings,
    workgroups: linearGrid(laneCount(plan, tiling), tiling.workgroupSize),
  });
}

function reductionPass(
  gpu: Gpu,
  plan: BatchNormPlan,
  entryPoint: string,
  bindings: Tensor[],
  constants: OverrideConstants = {},
): Promise<Dispatch> {
  return dataPass(gpu, plan, plan.reduction, entryPoint, bindings, constants);
}

function elementwisePass(
  gpu: Gpu,
  plan: BatchNormPlan,
  entryPoint: string,
  bindings: Tensor[],
  constants: OverrideConstants,
): Promise<Dispatch> {
  return dataPass(gpu, plan, plan.elementwise, entryPoint, bindings, constants);
}

/** Merges the reduction's row blocks: one invocation per channel vector ("serial") or one
 * workgroup per channel vector ("tree"). */
function combinePass(
  gpu: Gpu,
  plan: BatchNormPlan,
  entryPoint: string,
  constants: OverrideConstants,
  bindings: Tensor[],
): Promise<Dispatch> {
  const tree = plan.variant === "tree";
  return createDispatch(gpu, {
    kernel: kernels.batchnorm,
    entryPoint: tree ? `${entryPoint}_tree` : entryPoint,
    constants: {
      ...tilingConstants(plan, plan.reduction),
      WORKGROUP_SIZE: plan.combineWorkgroupSize,
      ...constants,
    },
    bindings,
    workgroups: tree
      ? [plan.vectorsPerRow, 1, 1]
      : linearGrid(plan.vectorsPerRow, plan.combineWorkgroupSize),
  });
}

function normalizePass(
  gpu: Gpu,
  plan: BatchNormPlan,
  t: {
    x: Tensor;
    y: Tensor;
    residual?: Tensor;
    activation: BatchNormActivation;
    gamma: Tensor;
    beta: Tensor;
    mean: Tensor;
    spread: Tensor;
    spreadIsVariance: boolean;
    eps: number;
  },
): Promise<Dispatch> {
  return elementwisePass(gpu, plan, "normalize", [
    t.x,
    // Without a residual the kernel never reads this binding; x fills it.
    t.residual ?? t.x,
    t.gamma,
    t.beta,
    t.mean,
    t.spread,
    t.y,
  ], {
    RELU: Number(t.activation === "relu"),
    RESIDUAL: Number(t.residual !== undefined),
    SPREAD_IS_VARIANCE: Number(t.spreadIsVariance),
    EPS: t.eps,
  });
}
