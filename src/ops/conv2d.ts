/**
 * 2-D convolution without bias: NHWC activations, OHWI weights, zero padding; the 3x3 and 1x1
 * layers of a CIFAR ResNet (stride 1 or 2) and its 3-channel stem. Each pass is an implicit GEMM
 * in one of two variants, chosen per adapter (see `chooseConv2dVariant`):
 *   - "blocked" (shaders/conv2d_blocked.wgsl): no workgroup memory, 8 pixels x 16 channels in
 *     registers per invocation, vec4 loads: fast on CPU adapters (lavapipe), where every memory
 *     access is a scalar loop over the SIMD lanes.
 *   - "tiled" (shaders/conv2d_tiled.wgsl): 64x64 output tiles staged through workgroup memory
 *     by 256 invocations, 4x4 each: the recipe for real GPUs.
 * The weight gradient sums over batch x height x width; that sum is split into ranges computed
 * by separate workgroups into a workspace of partial sums, then added by a reduce pass
 * (shaders/conv2d_reduce.wgsl), so small layers still fill the device.
 */
import { createDispatch, type Dispatch, linearGrid } from "../gpu/dispatch.ts";
import type { Gpu } from "../gpu/device.ts";
import { byteSize, elementCount, type Tensor } from "../gpu/tensor.ts";
import type { OverrideConstants } from "../gpu/pipeline.ts";
import { kernels } from "../shaders.ts";
import { expectShape, nhwc, ShapeError } from "./shape.ts";

export interface Conv2dConfig {
  kernelSize: 1 | 3;
  stride: 1 | 2;
  padding: 0 | 1;
}

export type Conv2dVariant = "blocked" | "tiled";

/** The variant for an adapter: "blocked" on CPU adapters, "tiled" on real GPUs. */
export function chooseConv2dVariant(gpu: Gpu): Conv2dVariant {
  return gpu.isFallbackAdapter ? "blocked" : "tiled";
}

/** Every size a kernel needs, validated. */
interface Geometry {
  batch: number;
  inH: number;
  inW: number;
  inC: number;
  outH: number;
  outW: number;
  outC: number;
  kernel: number;
  stride: number;
  padding: number;
}

function checkConfig(op: string, config: Conv2dConfig): void {
  const { kernelSize, stride, padding } = config;
  if (kernelSize !== 1 && kernelSize !== 3) {
    throw new RangeError(`${op}: kernel size ${kernelSize} is not supported (only 1 and 3)`);
  }
  if (stride !== 1 && stride !== 2) {
    throw new RangeError(`${op}: stride ${stride} is not supported (only 1 and 2)`);
  }
  if (padding !== 0 && padding !== 1) {
    throw new RangeError(`${op}: padding ${padding} is not supported (only 0 and 1)`);
  }
}

function isCount(value: number): boolean {
  return Number.isInteger(value) && value > 0;
}

function geometry(op: string, input: readonly number[], cout: number, config: Conv2dConfig) {
  checkConfig(op, config);
  if (input.length !== 4 || !input.every(isCount)) {
    throw new ShapeError(`${op}: input shape [${input}] is not NHWC with positive sizes`);
  }
  if (!isCount(cout)) throw new ShapeError(`${op}: ${cout} output channels`);
  const [batch, inH, inW, inC] = input;
  const { kernelSize: kernel, stride, padding } = config;
  const outH = Math.floor((inH + 2 * padding - kernel) / stride) + 1;
  const outW = Math.floor((inW + 2 * padding - kernel) / stride) + 1;
  if (outH < 1 || outW < 1) {
    throw new ShapeError(
      `${op}: input ${inH}x${inW} is smaller than the ${kernel}x${kernel} kernel with padding ` +
        `${padding}`,
    );
  }
  return { batch, inH, inW, inC, outH, outW, outC: cout, kernel, stride, padding } as Geometry;
}

/** [N, OH, OW, Cout] for an input [N, H, W, Cin]: OH = floor((H + 2·padding − K) / stride) + 1. */
export function conv2dOutputShape(
  input: readonly number[],
  cout: number,
  config: Conv2dConfig,
): [number, number, number, number] {
  const g = geometry("conv2d", input, cout, config);
  return [g.batch, g.outH, g.outW, g.outC];
}

/** The shape constants every conv2d kernel declares. */
function shapeConstants(g: Geometry): OverrideConstants {
  return {
    BATCH: g.batch,
    IN_H: g.inH,
    IN_W: g.inW,
    IN_C: g.inC,
    OUT_H: g.outH,
    OUT_W: g.outW,
    OUT_C: g.outC,
    KERNEL: g.kernel,
    STRIDE: g.stride,
    PADDING: g.padding,
  };
}

/** Tensors checked against the geometry implied by x and weight. */
function checkedGeometry(
  op: string,
  t: { x: Tensor; weight: Tensor; config: Conv2dConfig },
): Geometry {
  const { c: inC } = nhwc(op, t.x);
  const k = t.config.kernelSize;
  if (t.weight.shape.length !== 4) {
    throw new ShapeError(`${op}: ${t.weight.label} has shape [${t.weight.shape}], expected OHWI`);
  }
  const cout = t.weight.shape[0];
  const g = geometry(op, t.x.shape, cout, t.config);
  expectShape(op, t.weight, [cout, k, k, inC]);
  return g;
}

const blocked = {
  /** Invocations per workgroup: on lavapipe one or two SIMD vectors of 8 lanes. */
  workgroupSize: 8,
  /** Output pixels and channels per invocation (forward; backward_input likewise on its input
   * pixels and channels). */
  pixels: 8,
  channels: 16,
  /** backward_weight: input and output channels per invocation. */
  weightInChannels: 16,
  weightOutChannels: 8,
  /** backward_weight: bytes of dy and x rows per pixel range (about half a Zen 4 core's L2). */
  splitBytes: 2 ** 19,
  minSplitPixels: 256,
};

const tiled = {
  /** Output tile edge and reduction elements per step. */
  tile: 64,
  depth: 16,
  /** backward_weight: workgroups wanted, and the fewest pixels worth a workgroup. */
  workgroups: 1024,
  minSplitPixels: 256,
};

/** Largest scratch for weight-gradient partial sums, whatever the layer. */
const MAX_WORKSPACE_BYTES = 32 * 2 ** 20;

/** The weight gradient's split of its sum over output pixels. */
interface WeightSplit {
  splits: number;
  /** Output pixels per split; a multiple of 4 (blocked) or of 16 (tiled), so steps align. */
  splitPixels: number;
}

function weightSplit(g: Geometry, variant: Conv2dVariant): WeightSplit {
  const pixels = g.batch * g.outH * g.outW;
  const weightBytes = g.outC * g.kernel * g.kernel * g.inC * 4;
  let splitPixels: number;
  if (variant === "blocked") {
    // Every workgroup streams dy and x over its pixel range, and lavapipe runs the workgroups
    // in order, those of one range back to back: a range whose dy and x rows fit in a core's
    // L2 is read from memory once instead of once per workgroup (2.4x faster on 64 channels).
    const bytesPerPixel = (g.inC + g.outC) * 4;
    splitPixels = Math.max(blocked.minSplitPixels, blocked.splitBytes / bytesPerPixel);
  } else {
    // Enough workgroups for a few per multiprocessor of a large GPU (132 on an H100).
    const tiles = Math.ceil((g.kernel * g.kernel * g.inC) / tiled.tile) *
      Math.ceil(g.outC / tiled.tile);
    splitPixels = Math.max(tiled.minSplitPixels, (pixels * tiles) / tiled.workgroups);
  }
  // The partial sums are bounded, which only limits the split of the deepest layers.
  const splits = Math.max(
    1,
    Math.min(Math.ceil(pixels / splitPixels), Math.floor(MAX_WORKSPACE_BYTES / weightBytes)),
  );
  // Whole steps (4 pixels blocked, 16 tiled) per range.
  const step = variant === "blocked" ? 4 : tiled.depth;
  const aligned = Math.ceil(pixels / splits / step) * step;
  return { splits: Math.ceil(pixels / aligned), splitPixels: aligned };
}

/**
 * Bytes of scratch `conv2dBackward` needs for the weight gradient's partial sums: 0 where the
 * sum is not split. One workspace of the largest size serves every layer of a plan, since
 * dispatches run in order.
 */
export function conv2dWorkspaceSize(
  gpu: Gpu,
  xShape: readonly number[],
  cout: number,
  config: Conv2dConfig,
  variant: Conv2dVariant = chooseConv2dVariant(gpu),
): number {
  const g = geometry("conv2d workspace", xShape, cout, config);
  const { splits } = weightSplit(g, variant);
  return splits > 1 ? splits * g.outC * g.kernel * g.kernel * g.inC * 4 : 0;
}

/** y = conv(x, weight): x [N, H, W, Cin], weight [Cout, K, K, Cin], y [N, OH, OW, Cout]. */
export async function conv2dForward(
  gpu: Gpu,
  t: { x: Tensor; weight: Tensor; y: Tensor; config: Conv2dConfig; variant?: Conv2dVariant },
): Promise<Dispatch[]> {
  const op = "conv2d";
  const g = checkedGeometry(op, t);
  expectShape(op, t.y, [g.batch, g.outH, g.outW, g.outC]);
  const variant = t.variant ?? chooseConv2dVariant(gpu);
  const pixels = g.batch * g.outH * g.outW;
  if (variant === "blocked") {
    return [
      await createDispatch(gpu, {
        kernel: kernels.conv2dBlocked,
        entryPoint: "forward",
        constants: blockedConstants(g),
        bindings: [t.x, t.x, t.weight, t.weight, t.y],
        workgroups: [
          Math.ceil(pixels / blocked.pixels / blocked.workgroupSize),
          Math.ceil(g.outC / blocked.channels),
        ],
      }),
    ];
  }
  return [
    await createDispatch(gpu, {
      kernel: kernels.conv2dTiled,
      entryPoint: "forward",
      constants: shapeConstants(g),
      bindings: [t.x, t.weight, t.y],
      workgroups: [Math.ceil(pixels / tiled.tile), Math.ceil(g.outC / tiled.tile)],
    }),
  ];
}

function blockedConstants(g: Geometry): OverrideConstants {
  return {
    ...shapeConstants(g),
    VECTORIZED: g.inC % 4 === 0 && g.outC % 4 === 0 ? 1 : 0,
    WORKGROUP_SIZE: blocked.workgroupSize,
  };
}

/**
 * dx (if given; the stem's input needs none) and dweight for the upstream gradient dy. Both are
 * overwritten, not accumulated. `workspace` holds at least conv2dWorkspaceSize bytes (any tensor
 * when that is 0).
 */
export async function conv2dBackward(
  gpu: Gpu,
  t: {
    x: Tensor;
    weight: Tensor;
    dy: Tensor;
    dx?: Tensor;
    dweight: Tensor;
    workspace: Tensor;
    config: Conv2dConfig;
    variant?: Conv2dVariant;
  },
): Promise<Dispatch[]> {
  const op = "conv2d backward";
  const g = checkedGeometry(op, t);
  expectShape(op, t.dy, [g.batch, g.outH, g.outW, g.outC]);
  expectShape(op, t.dweight, t.weight.shape);
  if (t.dx) expectShape(op, t.dx, t.x.shape);
  const variant = t.variant ?? chooseConv2dVariant(gpu);
  const { splits, splitPixels } = weightSplit(g, variant);
  const weightSize = elementCount(t.weight.shape);
  const partial = splits > 1
    ? workspaceView(op, t.workspace, [splits, ...t.weight.shape])
    : t.dweight;
  const classes = g.stride * g.stride;
  const classPixels = g.batch * Math.ceil(g.inH / g.stride) * Math.ceil(g.inW / g.stride);

  const dispatches: Dispatch[] = [];
  if (variant === "blocked") {
    const constants = blockedConstants(g);
    if (t.dx) {
      dispatches.push(
        await createDispatch(gpu, {
          kernel: kernels.conv2dBlocked,
          entryPoint: "backward_input",
          constants,
          bindings: [t.dy, t.dy, t.weight, t.weight, t.dx],
          workgroups: [
            Math.ceil(classPixels / blocked.pixels / blocked.workgroupSize),
            Math.ceil(g.inC / blocked.channels),
            classes,
          ],
        }),
      );
    }
    const columnBlocks = g.kernel * g.kernel * Math.ceil(g.inC / blocked.weightInChannels);
    dispatches.push(
      await createDispatch(gpu, {
        kernel: kernels.conv2dBlocked,
        entryPoint: "backward_weight",
        constants: { ...constants, SPLITS: splits, SPLIT_PIXELS: splitPixels },
        bindings: [t.x, t.x, t.dy, t.dy, partial],
        workgroups: [
          Math.ceil(columnBlocks / blocked.workgroupSize),
          Math.ceil(g.outC / blocked.weightOutChannels),
          splits,
        ],
      }),
    );
  } else {
    const constants = shapeConstants(g);
    if (t.dx) {
      dispatches.push(
        await createDispatch(gpu, {
          kernel: kernels.conv2dTiled,
          entryPoint: "backward_input",
          constants,
          bindings: [t.dy, t.weight, t.dx],
          workgroups: [Math.ceil(classPixels / tiled.tile), Math.ceil(g.inC / tiled.tile), classes],
        }),
      );
    }
    dispatches.push(
      await createDispatch(gpu, {
        kernel: kernels.conv2dTiled,
        entryPoint: "backward_weight",
        constants: { ...constants, SPLIT_PIXELS: splitPixels },
        bindings: [t.x, t.dy, partial],
        workgroups: [
          Math.ceil((g.kernel * g.kernel * g.inC) / tiled.tile),
          Math.ceil(g.outC / tiled.tile),
          splits,
        ],
      }),
    );
  }
  if (splits > 1) {
    dispatches.push(
      await createDispatch(gpu, {
        kernel: kernels.conv2dReduce,
        entryPoint: "reduce_splits",
        constants: { SPLITS: splits, WEIGHT_SIZE: weightSize },
        bindings: [partial, t.dweight],
        workgroups: linearGrid(weightSize, 64),
      }),
    );
  }
  return dispatches;
}

/** The first bytes of the workspace as a tensor of `shape`, checked to fit. */
function workspaceView(op: string, workspace: Tensor, shape: readonly number[]): Tensor {
  const view = { ...workspace, label: `${workspace.label} (conv2d partial sums)`, shape };
  if (byteSize(view) > byteSize(workspace)) {
    throw new RangeError(
      `${op}: workspace ${workspace.label} holds ${byteSize(workspace)} bytes, ` +
        `${byteSize(view)} needed: size it with conv2dWorkspaceSize`,
    );
  }
  return view;
}
