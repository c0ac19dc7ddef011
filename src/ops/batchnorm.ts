/**
 * BatchNorm2d over NHWC activations with PyTorch's semantics, optionally fused with a residual add
 * and a ReLU (shaders/batchnorm.wgsl, which describes the passes and the numerics).
 *
 * Statistics and parameter gradients come from a reduction split in two passes: per-lane partials
 * into a workspace (a transient tensor the op names, which the plan allocates), then one combine
 * per channel vector. How the work is split is a variant, chosen by the kernel policy
 * (src/ops/policy.ts):
 *   "serial": few large invocations, 4 or 8 channel vectors by tens to hundreds of rows each,
 *             and a combine that merges every row block in one invocation; no workgroup memory,
 *             no barrier; for CPU adapters.
 *   "serial_texture": serial's passes reading the activations from textures that the op's
 *             staging calls fill first (src/ops/staging.ts; channels a multiple of 4): llvmpipe's
 *             cheap load path, the fastest there.
 *   "tree":   one channel vector by a few rows per invocation, so that neighbours read
 *             neighbouring addresses, and a combine whose workgroup merges the row blocks through a
 *             workgroup-memory tree; the shape real GPUs favour.
 */
import {
  type Binding,
  type Call,
  type KernelCall,
  kernelCall,
  linearGrid,
  read,
  readWrite,
  sampled,
  write,
} from "../gpu/kernel_call.ts";
import type { OverrideConstants } from "../gpu/pipeline.ts";
import {
  MAX_TEXTURE_SIDE,
  type TensorDesc,
  tensorDesc,
  textureExtent,
  workspaceDesc,
} from "../gpu/tensor.ts";
import { elementCount } from "../util/shape.ts";
import { rowShiftOf, Staging } from "./staging.ts";
import type { Kernel } from "../gpu/pipeline.ts";
import { activationKernel, kernels } from "../shaders.ts";
import { addForward } from "./add.ts";
import { KernelPolicy } from "./policy.ts";
import { activationDtype, expectTensor, nhwc, ShapeError } from "./shape.ts";

export type BatchNormActivation = "none" | "relu";

export interface BatchNormParams {
  /** [C] scale (PyTorch's `weight`). */
  gamma: TensorDesc;
  /** [C] shift (PyTorch's `bias`). */
  beta: TensorDesc;
  /** [C], updated by every training forward. */
  runningMean: TensorDesc;
  /** [C], updated by every training forward with the unbiased batch variance. */
  runningVar: TensorDesc;
  /** [1] u32, incremented by every training forward. */
  numBatchesTracked: TensorDesc;
}

/** [C] each, written by the training forward, read by the backward. */
export interface BatchNormSaved {
  mean: TensorDesc;
  invStd: TensorDesc;
}

export type BatchNormVariant = "serial" | "serial_texture" | "tree";

export const BATCH_NORM_VARIANTS: readonly BatchNormVariant[] = [
  "serial",
  "serial_texture",
  "tree",
];

export const BATCH_NORM_EPS = 1e-5;
export const BATCH_NORM_MOMENTUM = 0.1;

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
  /** Whether the data passes read the activations from textures (serial_texture). */
  textures: boolean;
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
  if (variant !== "tree") {
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
    textures: variant === "serial_texture",
    reduction: { ...reduction, rowBlocks },
    elementwise,
    combineWorkgroupSize,
    workspaceBytes: VECTOR_BYTES * vectorsPerRow *
      (COEFFICIENT_VECTORS + PARTIAL_VECTORS * rowBlocks),
  };
}

/**
 * The policy's variant for the batch norms of an x of this shape; `plan` builds the asking pass's
 * calls in a given variant, for the autotune to time.
 */
export function chooseBatchNormVariant(
  x: TensorDesc,
  policy: KernelPolicy,
  op = "batch norm",
  plan?: (variant: BatchNormVariant) => Call[],
): BatchNormVariant {
  const { n, h, w, c, dtype } = nhwc(op, x);
  // f16 layers are other call sites (as in conv2d.ts): their fastest variant may differ.
  const precision = dtype === "f32" ? "" : ` ${dtype}`;
  const texture = c % 4 !== 0
    ? "needs channels in multiples of 4 (a texel is one channel vector)"
    : textureExtent(elementCount(x.shape)) === undefined
    ? `needs at most ${MAX_TEXTURE_SIDE}² texels`
    : undefined;
  return policy.choose({
    op: "batchnorm",
    key: `batchnorm [${n},${h},${w},${c}]${precision}`,
    variants: BATCH_NORM_VARIANTS,
    ...(texture === undefined ? {} : { unsupported: { serial_texture: texture } }),
    plan,
  });
}

/** The policy's variant for an x of this shape, and that variant's geometry. */
function checkedPlan(
  op: string,
  x: TensorDesc,
  policy: KernelPolicy,
  plan: (variant: BatchNormVariant) => Call[],
): BatchNormPlan {
  return planBatchNorm(x.shape, chooseBatchNormVariant(x, policy, op, plan));
}

/** The scratch of the split reductions, sized for this shape and variant. */
function workspaceFor(x: TensorDesc, plan: BatchNormPlan): TensorDesc {
  return workspaceDesc(`${x.label} batch-norm partials`, [plan.workspaceBytes / 4]);
}

/**
 * Training forward: batch statistics, running-statistics update, then
 * y = act(gamma · (x − mean) · invStd + beta [+ residual]). `staging` stages the activations the
 * serial_texture kernels read: the call's own, or one a plan shares among its ops (./staging.ts).
 */
export function batchNormTrainForward(
  t: {
    x: TensorDesc;
    y: TensorDesc;
    params: BatchNormParams;
    saved: BatchNormSaved;
    residual?: TensorDesc;
  },
  config: { activation: BatchNormActivation; momentum?: number; eps?: number },
  policy: KernelPolicy,
  staging = new Staging(),
): Call[] {
  const op = "batch norm";
  const { x, y, params, saved, residual } = t;
  const plan = checkedPlan(
    op,
    x,
    policy,
    (variant) => batchNormTrainForward(t, config, KernelPolicy.forcing("batchnorm", variant)),
  );
  if (plan.rows < 2) {
    // PyTorch refuses this too: the unbiased variance for the running statistics is undefined.
    throw new ShapeError(
      `${op}: ${x.label} has ${plan.rows} value per channel; training needs at least 2`,
    );
  }
  const kernel = checkActivation(op, y, x, residual);
  checkParams(op, plan.channels, params, [saved.mean, saved.invStd]);
  const eps = config.eps ?? BATCH_NORM_EPS;
  const momentum = config.momentum ?? BATCH_NORM_MOMENTUM;
  const workspace = workspaceFor(x, plan);
  const passes = [
    dataPass(kernel, plan, plan.reduction, "statistics_partials", staging, [x], [write(workspace)]),
    combinePass(plan, "statistics_combine", { EPS: eps, MOMENTUM: momentum }, [
      readWrite(workspace),
      write(saved.mean),
      write(saved.invStd),
      readWrite(params.runningMean),
      readWrite(params.runningVar),
      readWrite(params.numBatchesTracked),
    ]),
    normalizePass(kernel, plan, staging, {
      x,
      y,
      residual,
      activation: config.activation,
      gamma: params.gamma,
      beta: params.beta,
      mean: saved.mean,
      spread: saved.invStd,
      spreadIsVariance: false,
      eps,
    }),
  ];
  return [...staging.take(), ...passes];
}

/** Eval forward: y = act(gamma · (x − running_mean) / sqrt(running_var + eps) + beta [+ residual]). */
export function batchNormEvalForward(
  t: { x: TensorDesc; y: TensorDesc; params: BatchNormParams; residual?: TensorDesc },
  config: { activation: BatchNormActivation; eps?: number },
  policy: KernelPolicy,
  staging = new Staging(),
): Call[] {
  const op = "batch norm eval";
  const { x, y, params, residual } = t;
  const plan = checkedPlan(
    op,
    x,
    policy,
    (variant) => batchNormEvalForward(t, config, KernelPolicy.forcing("batchnorm", variant)),
  );
  const kernel = checkActivation(op, y, x, residual);
  checkParams(op, plan.channels, params, []);
  const normalize = normalizePass(kernel, plan, staging, {
    x,
    y,
    residual,
    activation: config.activation,
    gamma: params.gamma,
    beta: params.beta,
    mean: params.runningMean,
    spread: params.runningVar,
    spreadIsVariance: true,
    eps: config.eps ?? BATCH_NORM_EPS,
  });
  return [...staging.take(), normalize];
}

/**
 * Backward of the training forward: dx, dgamma and dbeta, overwritten. y is the forward's output,
 * whose sign gives the ReLU mask; dResidual, given when the forward had a residual, receives the
 * gradient after the mask (dy itself without a ReLU). The eps the statistics were taken with is
 * already folded into saved.invStd. With dySecond the output's gradient is dy + dySecond (a
 * tensor read by two branches, as a residual block's input): serial_texture sums the two where
 * its passes read dy, saving the add pass and its store of a whole activation; the other variants
 * take one tensor, which an add call fills first.
 */
export function batchNormBackward(
  t: {
    x: TensorDesc;
    y: TensorDesc;
    dy: TensorDesc;
    dySecond?: TensorDesc;
    dx: TensorDesc;
    dgamma: TensorDesc;
    dbeta: TensorDesc;
    params: BatchNormParams;
    saved: BatchNormSaved;
    dResidual?: TensorDesc;
  },
  config: { activation: BatchNormActivation },
  policy: KernelPolicy,
  staging = new Staging(),
): Call[] {
  const op = "batch norm backward";
  const { x, y, dySecond, dx, dgamma, dbeta, params, saved, dResidual } = t;
  const plan = checkedPlan(
    op,
    x,
    policy,
    (variant) => batchNormBackward(t, config, KernelPolicy.forcing("batchnorm", variant)),
  );
  const dtype = activationDtype(op, x);
  for (const tensor of [y, t.dy, dySecond, dx, dResidual]) {
    if (tensor) expectTensor(op, tensor, x.shape, dtype);
  }
  const kernel = activationKernel(kernels.batchnorm, dtype);
  checkParams(op, plan.channels, params, [saved.mean, saved.invStd, dgamma, dbeta]);
  const relu = config.activation === "relu";
  // Without a ReLU the kernels never read y; x fills its binding.
  const maskSource = relu ? y : x;
  const workspace = workspaceFor(x, plan);
  const sum = dySecond && !plan.textures
    ? tensorDesc(`${t.dy.label} + ${dySecond.label}`, x.shape, dtype)
    : undefined;
  const dy = sum ?? t.dy;
  // The texture passes bind dy's second term last (dy fills its binding when there is none).
  const second = plan.textures ? [sampled(staging.texture(dySecond ?? dy))] : [];
  const terms: OverrideConstants = plan.textures ? { DY_TERMS: dySecond ? 2 : 1 } : {};
  const flags = { RELU: Number(relu), RESIDUAL: Number(dResidual !== undefined) };
  const activations = [x, maskSource, dy];
  const passes = [
    ...(sum ? addForward({ a: t.dy, b: dySecond!, y: sum }) : []),
    dataPass(kernel, plan, plan.reduction, "gradient_partials", staging, activations, [
      read(saved.mean),
      write(workspace),
      ...second,
    ], { RELU: flags.RELU, ...terms }),
    combinePass(plan, "gradient_combine", {}, [
      readWrite(params.gamma),
      readWrite(saved.mean),
      readWrite(saved.invStd),
      readWrite(workspace),
      write(dgamma),
      write(dbeta),
    ]),
    dataPass(kernel, plan, plan.elementwise, "input_gradient", staging, activations, [
      read(workspace),
      write(dx),
      // Without a residual the kernel never writes this binding, but a layout that drops no
      // binding needs one there: a scratch tensor of one channel vector fills it.
      write(dResidual ?? workspaceDesc(`${dx.label} (no residual)`, [4])),
      ...second,
    ], { ...flags, ...terms }),
  ];
  return [...staging.take(), ...passes];
}

/** Checks y and the residual against x; returns the kernel build for x's element type. */
function checkActivation(
  op: string,
  y: TensorDesc,
  x: TensorDesc,
  residual?: TensorDesc,
): Kernel {
  const dtype = activationDtype(op, x);
  expectTensor(op, y, x.shape, dtype);
  if (residual) expectTensor(op, residual, x.shape, dtype);
  return activationKernel(kernels.batchnorm, dtype);
}

/** The parameters and the other per-channel tensors of a call. */
function checkParams(
  op: string,
  channels: number,
  params: BatchNormParams,
  perChannel: TensorDesc[],
): void {
  const { gamma, beta, runningMean, runningVar, numBatchesTracked } = params;
  for (const tensor of [gamma, beta, runningMean, runningVar, ...perChannel]) {
    expectTensor(op, tensor, [channels]);
  }
  expectTensor(op, numBatchesTracked, [1], "u32");
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
  };
}

/**
 * A pass over every element in `kernel` (the build for the activations' element type). It reads
 * `activations` (its first bindings) through their vec4 or scalar binding, or with serial_texture
 * from textures that `staging` fills; `others` follow.
 */
function dataPass(
  kernel: Kernel,
  plan: BatchNormPlan,
  tiling: LaneTiling,
  entryPoint: string,
  staging: Staging,
  activations: readonly TensorDesc[],
  others: Binding[],
  constants: OverrideConstants = {},
): KernelCall {
  const textures = plan.textures ? activations.map((tensor) => staging.texture(tensor)) : [];
  return kernelCall({
    kernel,
    entryPoint: plan.textures
      ? `${entryPoint}_texture`
      : plan.vectorized
      ? entryPoint
      : `${entryPoint}_scalar`,
    workgroupSize: tiling.workgroupSize,
    constants: {
      ...tilingConstants(plan, tiling),
      ...constants,
      ...(plan.textures ? { ROW_SHIFT: rowShiftOf(textures[0]) } : {}),
    },
    grid: linearGrid(laneCount(plan, tiling), tiling.workgroupSize),
    bindings: [
      ...(plan.textures ? textures.map(sampled) : activations.map(read)),
      ...others,
    ],
  });
}

/** Merges the reduction's row blocks: one invocation per channel vector ("serial") or one
 * workgroup per channel vector ("tree"). */
function combinePass(
  plan: BatchNormPlan,
  entryPoint: string,
  constants: OverrideConstants,
  bindings: Binding[],
): KernelCall {
  const tree = plan.variant === "tree";
  return kernelCall({
    kernel: kernels.batchnorm,
    entryPoint: tree ? `${entryPoint}_tree` : entryPoint,
    workgroupSize: plan.combineWorkgroupSize,
    constants: { ...tilingConstants(plan, plan.reduction), ...constants },
    grid: tree ? [plan.vectorsPerRow] : linearGrid(plan.vectorsPerRow, plan.combineWorkgroupSize),
    bindings,
  });
}

function normalizePass(
  kernel: Kernel,
  plan: BatchNormPlan,
  staging: Staging,
  t: {
    x: TensorDesc;
    y: TensorDesc;
    residual?: TensorDesc;
    activation: BatchNormActivation;
    gamma: TensorDesc;
    beta: TensorDesc;
    mean: TensorDesc;
    spread: TensorDesc;
    spreadIsVariance: boolean;
    eps: number;
  },
): KernelCall {
  // Without a residual the kernel never reads its binding; x fills it.
  return dataPass(kernel, plan, plan.elementwise, "normalize", staging, [t.x, t.residual ?? t.x], [
    read(t.gamma),
    read(t.beta),
    read(t.mean),
    read(t.spread),
    write(t.y),
  ], {
    RELU: Number(t.activation === "relu"),
    RESIDUAL: Number(t.residual !== undefined),
    SPREAD_IS_VARIANCE: Number(t.spreadIsVariance),
    EPS: t.eps,
  });
}
