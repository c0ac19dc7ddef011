/**
 * 2-D convolution without bias: NHWC activations, OHWI weights, zero padding; the 3x3 and 1x1
 * layers of a CIFAR ResNet (stride 1 or 2) and its 3-channel stem. Activations (x, y, dy, dx) are
 * f32 or f16, all four alike (the kernels' f16 builds, src/shaders.ts); weights and dweight f32.
 * Each pass is an implicit GEMM in one of six variants (five kernels), or Winograd products in a
 * seventh, chosen by the kernel policy (src/ops/policy.ts) per layer:
 *   - "blocked" (shaders/conv2d_blocked_math.wgsl + conv2d_blocked.wgsl): no workgroup memory,
 *     16 pixels x 16 channels in registers per invocation, vec4 loads: fast on CPU adapters
 *     (lavapipe), where every memory access is a scalar loop over the SIMD lanes.
 *   - "blocked_texture" (shaders/conv2d_blocked_math.wgsl + conv2d_texture.wgsl): blocked's
 *     arithmetic, reading both operands with textureLoad from rgba32float textures that staging
 *     calls fill first (./staging.ts: a copy command, or shaders/to_texture.wgsl): on lavapipe a
 *     texel fetch is one gather, a storage load one scalar per element and lane (5.5x dearer
 *     without AVX-512).
 *     Channel counts that are not multiples of 4 are padded with zeros in the textures. y and
 *     dx are stored four channels per store where their channel count is a multiple of 4
 *     (shaders/conv2d_stores_vec4.wgsl), else one (the `_elements` kernels).
 *   - "blocked_texture_subgroup": blocked_texture with each weight row loaded by one lane in 4 and
 *     shared by subgroup broadcasts (shaders/conv2d_weights_subgroup.wgsl), where the device has
 *     subgroups (`Gpu.subgroups`: Chromium's SwiftShader, not Deno's lavapipe).
 *   - "tiled" (shaders/conv2d_tiled.wgsl): 64x64 output tiles staged through workgroup memory
 *     by 256 invocations, 4x4 each: the recipe for real GPUs, and the measured GPU baseline.
 *   - "pipelined64" and "pipelined128" (shaders/conv2d_pipelined.wgsl): 64x64 tiles of 4x4 per
 *     invocation (tiled's) or 128x128 of 8x8, with vec4 global loads, double-buffered workgroup
 *     tiles filled one step ahead, index arithmetic once per tap and 1x1 stride-1 layers as plain
 *     matrix products: the SGEMM recipe, not yet timed on a GPU.
 *   - "winograd" (./conv2d_winograd.ts: shaders/conv2d_winograd.wgsl's transforms around
 *     products in blocked_texture's kernel): all three passes of 3x3 stride-1 padding-1 layers as
 *     Winograd F(4x4, 3x3), 36 multiply-adds per 4x4 tile and channel pair instead of 144. The CPU
 *     rules take it from 32 channels up, where it measured faster than the direct kernels on
 *     lavapipe (bench/README.md, "Winograd" and "Zen 5").
 * On lavapipe blocked is 3.4x tiled, on an H100 tiled is 2-4x blocked (bench/README.md).
 * The weight gradient sums over batch x height x width; that sum is split into ranges, each
 * computed by its own workgroups into a workspace of partial sums, then added by a reduce pass
 * (shaders/conv2d_reduce.wgsl): on a GPU so that small layers still fill the device, on a CPU
 * so that a range's activations stay in cache while all its workgroups read them.
 */
import {
  type Binding,
  type Call,
  kernelCall,
  linearGrid,
  read,
  sampled,
  write,
} from "../gpu/kernel_call.ts";
import type { Kernel, OverrideConstants } from "../gpu/pipeline.ts";
import {
  MAX_TEXTURE_SIDE,
  type TensorDesc,
  texelChannels,
  textureExtent,
  workspaceDesc,
} from "../gpu/tensor.ts";
import { elementCount } from "../util/shape.ts";
import { activationKernel, kernels } from "../shaders.ts";
import { KernelPolicy } from "./policy.ts";
import { Staging } from "./staging.ts";
import { cpuRangeRows, splitRanges } from "./conv2d_split.ts";
import { winogradCalls, winogradUnsupported, winogradWeightCalls } from "./conv2d_winograd.ts";
import { type ActivationDType, expectTensor, nhwc, ShapeError } from "./shape.ts";

export interface Conv2dConfig {
  kernelSize: 1 | 3;
  stride: 1 | 2;
  padding: 0 | 1;
}

export type Conv2dVariant =
  | "blocked"
  | "blocked_texture"
  | "blocked_texture_subgroup"
  | "tiled"
  | "pipelined64"
  | "pipelined128"
  | "winograd";

export const CONV2D_VARIANTS: readonly Conv2dVariant[] = [
  "blocked",
  "blocked_texture",
  "blocked_texture_subgroup",
  "tiled",
  "pipelined64",
  "pipelined128",
  "winograd",
];

/** Every size a kernel needs, validated, and the activations' element type. */
interface Geometry {
  /** x, y, dy and dx: f32 or f16 (weights and their gradients are f32 either way). */
  dtype: ActivationDType;
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

function geometry(
  op: string,
  input: readonly number[],
  cout: number,
  config: Conv2dConfig,
  dtype: ActivationDType = "f32",
): Geometry {
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
  return { dtype, batch, inH, inW, inC, outH, outW, outC: cout, kernel, stride, padding };
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

/**
 * Floating-point operations of each pass (forward, input gradient, weight gradient): one
 * multiply-add per output element, tap and input channel, the same for all three.
 */
function passFlops(g: Geometry): number {
  return 2 * outputPixels(g) * g.outC * g.kernel * g.kernel * g.inC;
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
  t: { x: TensorDesc; weight: TensorDesc },
  config: Conv2dConfig,
): Geometry {
  const { c: inC, dtype } = nhwc(op, t.x);
  const k = config.kernelSize;
  if (t.weight.shape.length !== 4) {
    throw new ShapeError(`${op}: ${t.weight.label} has shape [${t.weight.shape}], expected OHWI`);
  }
  const cout = t.weight.shape[0];
  const g = geometry(op, t.x.shape, cout, config, dtype);
  expectTensor(op, t.weight, [cout, k, k, inC]);
  return g;
}

type Grid = [number, number, number];

/** What differs between the variants: kernel file, workgroup, constants, bindings, grids, split. */
interface VariantKernels {
  /**
   * The kernel for a pass that stores rows of `channels` activations: y's (forward), dx's (the
   * backward passes, which share one).
   */
  kernel(channels: number): Kernel;
  workgroupSize: number | [number, number];
  constants(g: Geometry): OverrideConstants;
  /**
   * The bindings of one read-only input: blocked binds each twice (vec4 and scalar views),
   * blocked_texture a texture that a call it adds to `staging` fills.
   */
  views(tensor: TensorDesc, staging: Staging): Binding[];
  forwardGrid(g: Geometry): Grid;
  inputGrid(g: Geometry): Grid;
  weightGrid(g: Geometry, splits: number): Grid;
  /** Output pixels per weight-gradient range, before rounding to whole steps. */
  splitPixels(g: Geometry): number;
  /** backward_weight's output pixels per step. */
  weightStep: number;
}

const outputPixels = (g: Geometry) => g.batch * g.outH * g.outW;
/** backward_input runs over STRIDE² parity classes of input pixels, each at most this many. */
const classPixels = (g: Geometry) =>
  g.batch * Math.ceil(g.inH / g.stride) * Math.ceil(g.inW / g.stride);

/**
 * Two of lavapipe's 8-lane SIMD vectors: on a Zen 5 with AVX-512 code every pass ran 1.15-1.35x
 * faster than with 8 (one vector) and than with 32 or 64; with AVX2 code alone 8 and 16 ran
 * alike (bench/README.md, "Zen 5: workgroups of 16, Winograd from 32 channels, and 512-bit
 * vectors").
 */
const BLOCKED_WORKGROUP = 16;

/**
 * Pixels and channels per invocation of shaders/conv2d_blocked_math.wgsl: 16 pixels x 16 channels
 * (forward and backward_input), or 16 output x 16 input channels at one tap (backward_weight).
 * On llvmpipe every storage-buffer element costs the same whoever shares it, so multiply-adds
 * per element loaded (8 here, 5.3 with the former 8 x 16) set the speed, most of all on CPUs
 * without AVX-512, where such loads are 5x dearer (bench/README.md, "CPU adapters").
 */
const BLOCKED_PIXELS = 16;
const BLOCKED_CHANNELS = 16;

/**
 * Whether forward and backward_input of the blocked kernels take ROW_BLOCKS
 * (shaders/conv2d_blocked_math.wgsl): 3x3 layers of stride 1 and padding 1 whose rows are whole
 * blocks of 16 pixels, where the three taps of a kernel row share the input texels they fetch and
 * their products are summed before they reach the accumulators.
 */
function rowBlocks(g: Geometry): boolean {
  return g.kernel === 3 && g.stride === 1 && g.padding === 1 && g.outW % BLOCKED_PIXELS === 0;
}

/** shaders/conv2d_blocked_math.wgsl with conv2d_blocked.wgsl's storage loads, blocked as above. */
const BLOCKED: VariantKernels = {
  kernel: () => kernels.conv2dBlocked,
  workgroupSize: BLOCKED_WORKGROUP,
  constants: (g) => ({
    ...shapeConstants(g),
    ROW_BLOCKS: rowBlocks(g) ? 1 : 0,
    VECTORIZED: g.inC % 4 === 0 && g.outC % 4 === 0 ? 1 : 0,
  }),
  views: (tensor) => [read(tensor), read(tensor)],
  forwardGrid: (g) => [
    Math.ceil(outputPixels(g) / BLOCKED_PIXELS / BLOCKED_WORKGROUP),
    Math.ceil(g.outC / BLOCKED_CHANNELS),
    1,
  ],
  inputGrid: (g) => [
    Math.ceil(classPixels(g) / BLOCKED_PIXELS / BLOCKED_WORKGROUP),
    Math.ceil(g.inC / BLOCKED_CHANNELS),
    g.stride ** 2,
  ],
  // One dimension: range-major blocks of tap x 16 input x 16 output channels.
  weightGrid: (g, splits) => [
    Math.ceil(
      (splits * g.kernel * g.kernel * Math.ceil(g.inC / BLOCKED_CHANNELS) *
        Math.ceil(g.outC / BLOCKED_CHANNELS)) / BLOCKED_WORKGROUP,
    ),
    1,
    1,
  ],
  splitPixels: (g) => cpuRangeRows(g.inC, g.outC),
  weightStep: 4,
};

/** The GPU kernels' workgroups: 16x16 invocations (their tilings assume this). */
const TILED_SIDE = 16;

/** The three passes' grids of workgroups for square output tiles of `tile` x `tile`. */
function tileGrids(tile: number): Pick<VariantKernels, "forwardGrid" | "inputGrid" | "weightGrid"> {
  return {
    forwardGrid: (g) => [Math.ceil(outputPixels(g) / tile), Math.ceil(g.outC / tile), 1],
    inputGrid: (g) => [Math.ceil(classPixels(g) / tile), Math.ceil(g.inC / tile), g.stride ** 2],
    weightGrid: (g, splits) => [
      Math.ceil((g.kernel * g.kernel * g.inC) / tile),
      Math.ceil(g.outC / tile),
      splits,
    ],
  };
}

/**
 * The GPU kernels' weight-gradient ranges for `tile` x `tile` output tiles: about 1024
 * workgroups, a few per multiprocessor of a large GPU (132 on an H100), with at least 256 pixels
 * each.
 */
function gpuSplitPixels(g: Geometry, tile: number): number {
  const tiles = Math.ceil((g.kernel * g.kernel * g.inC) / tile) * Math.ceil(g.outC / tile);
  return Math.max(256, (outputPixels(g) * tiles) / 1024);
}

/**
 * shaders/conv2d_tiled.wgsl: 64x64 output tiles of 4x4 per invocation, 16 reduction elements per
 * step. (128x64 tiles of 8x4 per invocation measured 10-40% slower on an H100, bench/README.md.)
 */
const TILED: VariantKernels = {
  kernel: () => kernels.conv2dTiled,
  workgroupSize: [TILED_SIDE, TILED_SIDE],
  constants: shapeConstants,
  views: (tensor) => [read(tensor)],
  ...tileGrids(64),
  splitPixels: (g) => gpuSplitPixels(g, 64),
  weightStep: 16,
};

/**
 * shaders/conv2d_pipelined.wgsl with `block` x `block` outputs per invocation: tiles of 16·block
 * square, 1024 / tile reduction elements per step (64x64 in steps of 16, or 128x128 in steps of
 * 8), vec4 global loads (inputs bound as vec4 and scalar views, as blocked does), double-buffered
 * tiles (16 KiB) filled from registers loaded one step ahead, index arithmetic once per tap, and
 * 1x1 stride-1 layers as plain matrix products.
 */
function pipelined(block: 4 | 8): VariantKernels {
  const tile = TILED_SIDE * block;
  return {
    kernel: () => kernels.conv2dPipelined,
    workgroupSize: [TILED_SIDE, TILED_SIDE],
    constants: (g) => ({
      ...shapeConstants(g),
      VECTORIZED: g.inC % 4 === 0 && g.outC % 4 === 0 ? 1 : 0,
      BLOCK: block,
    }),
    views: (tensor) => [read(tensor), read(tensor)],
    ...tileGrids(tile),
    splitPixels: (g) => gpuSplitPixels(g, tile),
    weightStep: 1024 / tile,
  };
}

/** log2 of the texels per row of the texture holding `elements` floats. */
function rowShift(elements: number): number {
  return Math.log2(textureExtent(elements)![0]);
}

/** Elements of blocked_texture's three textures (x, weight, dy), channels padded to texels. */
function textureElements(g: Geometry): { x: number; weight: number; dy: number } {
  const inC = texelChannels(g.inC);
  return {
    x: g.batch * g.inH * g.inW * inC,
    weight: g.outC * g.kernel * g.kernel * inC,
    dy: outputPixels(g) * texelChannels(g.outC),
  };
}

/**
 * Why blocked_texture cannot run a layer, or undefined where it can: each texture is at most
 * MAX_TEXTURE_SIDE x MAX_TEXTURE_SIDE texels.
 */
function textureUnsupported(g: Geometry): string | undefined {
  const largest = Math.max(...Object.values(textureElements(g)));
  if (!textureExtent(largest)) {
    return `needs tensors of at most ${MAX_TEXTURE_SIDE}² texels (4 elements each)`;
  }
  return undefined;
}

/**
 * Whether rows of `channels` activations are stored four channels at a time
 * (shaders/conv2d_stores_vec4.wgsl; on llvmpipe with AVX-512 code forward and dx ran 1.01-1.18x
 * faster than with element stores, the 1x1 layers' 1.1-1.5x, bench/README.md "vec4 stores"), else
 * one at a time.
 */
function wholeUnits(channels: number): boolean {
  return channels % 4 === 0;
}

/**
 * shaders/conv2d_blocked_math.wgsl with conv2d_texture.wgsl's loads: blocked's grids, textures.
 * Channels that are not multiples of 4 (the 3-channel stem) are padded with zeros in the textures:
 * the kernel runs on the padded channel counts and stores only the real channels.
 */
const BLOCKED_TEXTURE: VariantKernels = {
  ...BLOCKED,
  kernel: (channels) =>
    wholeUnits(channels) ? kernels.conv2dTexture : kernels.conv2dTextureElements,
  constants: (g) => {
    const elements = textureElements(g);
    return {
      ...shapeConstants(g),
      ROW_BLOCKS: rowBlocks(g) ? 1 : 0,
      IN_C: texelChannels(g.inC),
      OUT_C: texelChannels(g.outC),
      STORED_IN_C: g.inC,
      STORED_OUT_C: g.outC,
      X_ROW_SHIFT: rowShift(elements.x),
      WEIGHT_ROW_SHIFT: rowShift(elements.weight),
      DY_ROW_SHIFT: rowShift(elements.dy),
    };
  },
  views: (tensor, staging) => [sampled(staging.texture(tensor))],
};

/**
 * blocked_texture with each weight row loaded by one lane in 4 and shared by subgroup broadcasts
 * (shaders/conv2d_weights_subgroup.wgsl): forward and backward_input load 4 texels per step where
 * blocked_texture loads 16 (with 16 of x either way). Needs `Gpu.subgroups`.
 */
const BLOCKED_TEXTURE_SUBGROUP: VariantKernels = {
  ...BLOCKED_TEXTURE,
  kernel: (channels) =>
    wholeUnits(channels) ? kernels.conv2dTextureSubgroup : kernels.conv2dTextureSubgroupElements,
};

/** The implicit-GEMM variants; "winograd" plans its own calls (./conv2d_winograd.ts). */
const VARIANTS: Record<Exclude<Conv2dVariant, "winograd">, VariantKernels> = {
  blocked: BLOCKED,
  blocked_texture: BLOCKED_TEXTURE,
  blocked_texture_subgroup: BLOCKED_TEXTURE_SUBGROUP,
  tiled: TILED,
  pipelined64: pipelined(4),
  pipelined128: pipelined(8),
};

const REDUCE_WORKGROUP = 64;

/**
 * The weight gradient's split of its sum over output pixels into ranges (the partial sums are
 * bounded, which only limits the split of the deepest layers).
 */
function weightSplit(g: Geometry, variant: VariantKernels): { splits: number; pixels: number } {
  const weightBytes = g.outC * g.kernel * g.kernel * g.inC * 4;
  const split = splitRanges(
    outputPixels(g),
    variant.splitPixels(g),
    weightBytes,
    variant.weightStep,
  );
  return { splits: split.ranges, pixels: split.rows };
}

/** Names a layer's call sites for the policy: forward and backward share the choice. */
function conv2dKey(g: Geometry): string {
  // f16 layers are other call sites: their fastest variant (and a tune's pin) may differ.
  const precision = g.dtype === "f32" ? "" : ` ${g.dtype}`;
  return `conv2d [${g.batch},${g.inH},${g.inW},${g.inC}]->${g.outC} ` +
    `k${g.kernel} s${g.stride} p${g.padding}${precision}`;
}

/**
 * The policy's variant. The blocked and pipelined kernels read every input through a vec4 view
 * too, which WebGPU refuses for a tensor smaller than one vector: such toy shapes can only run the
 * tiled and texture kernels.
 * `plan` builds the calls of the asking pass in a given variant, for the autotune to time.
 */
function chooseVariant(
  g: Geometry,
  policy: KernelPolicy,
  plan: (variant: Conv2dVariant) => Call[],
): VariantKernels | "winograd" {
  const smallest = Math.min(
    g.batch * g.inH * g.inW * g.inC,
    g.outC * g.kernel * g.kernel * g.inC,
    outputPixels(g) * g.outC,
  );
  const texture = textureUnsupported(g);
  const variant = policy.choose({
    op: "conv2d",
    key: conv2dKey(g),
    variants: CONV2D_VARIANTS,
    unsupported: {
      ...(smallest < 4
        ? Object.fromEntries(
          (["blocked", "pipelined64", "pipelined128"] as const).map((variant) => [
            variant,
            "needs tensors of at least 4 elements (it binds each as vec4 too)",
          ]),
        )
        : {}),
      ...(texture === undefined ? {} : { blocked_texture: texture }),
      ...(winogradUnsupportedFor(g, texture) ?? {}),
      ...(texture !== undefined || !policy.subgroups
        ? {
          blocked_texture_subgroup: texture ??
            "needs subgroups (the adapter's `subgroups` feature, lanes as " +
              "src/gpu/subgroup_probe.ts checks), which this device lacks",
        }
        : {}),
    },
    slower: Math.min(g.inC, g.outC) < WINOGRAD_MIN_CHANNELS
      ? {
        winograd: `is slower than the direct kernels below ${WINOGRAD_MIN_CHANNELS} channels ` +
          "(its transforms' stores outweigh the multiply-adds it saves)",
      }
      : {},
    plan,
  });
  return variant === "winograd" ? variant : VARIANTS[variant];
}

/**
 * The fewest channels (input and output) at which the rules pick winograd: below, its transforms
 * (V, M and Z written and read, 36/16 of the image's and the output's elements each) cost more
 * than the multiply-adds it saves. On lavapipe, the three passes side by side with blocked_texture
 * (bench/README.md, "Winograd" and "Zen 5"): on a Zen 4, with AVX-512 and with AVX2 code, 16
 * channels 0.7-0.9x, 32 channels 0.9-1.05x, 64 channels 1.25-1.4x, 128 channels 1.45-1.8x; on a
 * Zen 5, with the direct kernels in workgroups of 16, 16 channels 0.65-0.95x and 32 channels
 * 1.3-1.5x (AVX-512 code) and 1.1-1.5x (AVX2 code).
 */
const WINOGRAD_MIN_CHANNELS = 32;

/** Why the winograd variant cannot run a layer, as an `unsupported` entry, or undefined. */
function winogradUnsupportedFor(
  g: Geometry,
  texture: string | undefined,
): { winograd: string } | undefined {
  if (g.kernel !== 3 || g.stride !== 1 || g.padding !== 1) {
    return { winograd: "runs only 3x3 layers of stride 1 and padding 1" };
  }
  const reason = texture ?? winogradUnsupported([g.batch, g.inH, g.inW, g.inC], g.outC);
  return reason === undefined ? undefined : { winograd: reason };
}

/**
 * y = conv(x, weight): x [N, H, W, Cin], weight [Cout, K, K, Cin], y [N, OH, OW, Cout]. `staging`
 * stages the inputs the CPU kernels read as textures: the call's own, or one a plan shares among
 * its ops so that each tensor is copied once (./staging.ts).
 */
export function conv2dForward(
  t: { x: TensorDesc; weight: TensorDesc; y: TensorDesc },
  config: Conv2dConfig,
  policy: KernelPolicy,
  staging = new Staging(),
): Call[] {
  const op = "conv2d";
  const g = checkedGeometry(op, t, config);
  expectTensor(op, t.y, [g.batch, g.outH, g.outW, g.outC], g.dtype);
  const variant = chooseVariant(
    g,
    policy,
    (name) =>
      conv2dForward(
        t,
        config,
        KernelPolicy.forcing("conv2d", name, policy.family, policy.subgroups),
      ),
  );
  if (variant === "winograd") {
    const pass = { image: t.x, weight: t.weight, output: t.y, flip: false, staging };
    const calls = winogradCalls({ ...pass, inC: g.inC, outC: g.outC }, g.dtype);
    return [...staging.take(), ...calls];
  }
  const bindings = [
    ...variant.views(t.x, staging),
    ...variant.views(t.weight, staging),
    write(t.y),
  ];
  return [
    ...staging.take(),
    kernelCall({
      kernel: activationKernel(variant.kernel(g.outC), g.dtype),
      entryPoint: "forward",
      workgroupSize: variant.workgroupSize,
      constants: variant.constants(g),
      grid: variant.forwardGrid(g),
      bindings,
      flops: passFlops(g),
    }),
  ];
}

/**
 * dx (if given; the stem's input needs none) and dweight for the upstream gradient dy. Both are
 * overwritten, not accumulated. The calls are backward_input (if dx), backward_weight, and where
 * the weight gradient's sum is split, the reduce pass over a workspace of partial sums. `staging`
 * as conv2dForward's: shared with the forward pass, it serves x's texture (and a Winograd layer's
 * transformed tiles) without filling them again.
 */
export function conv2dBackward(
  t: { x: TensorDesc; weight: TensorDesc; dy: TensorDesc; dx?: TensorDesc; dweight: TensorDesc },
  config: Conv2dConfig,
  policy: KernelPolicy,
  staging = new Staging(),
): Call[] {
  const op = "conv2d backward";
  const g = checkedGeometry(op, t, config);
  expectTensor(op, t.dy, [g.batch, g.outH, g.outW, g.outC], g.dtype);
  expectTensor(op, t.dweight, t.weight.shape);
  if (t.dx) expectTensor(op, t.dx, t.x.shape, g.dtype);
  const variant = chooseVariant(
    g,
    policy,
    (name) =>
      conv2dBackward(
        t,
        config,
        KernelPolicy.forcing("conv2d", name, policy.family, policy.subgroups),
      ),
  );
  // Staged inputs (textures) come first: dy's serves both passes.
  const calls: Call[] = [];
  if (variant === "winograd") {
    const channels = { inC: g.inC, outC: g.outC, staging };
    if (t.dx) {
      const pass = { image: t.dy, weight: t.weight, output: t.dx, flip: true };
      calls.push(...winogradCalls({ ...pass, ...channels }, g.dtype));
    }
    calls.push(...winogradWeightCalls({ x: t.x, dy: t.dy, dweight: t.dweight, ...channels }));
    return [...staging.take(), ...calls];
  }
  const kernel = activationKernel(variant.kernel(g.inC), g.dtype);
  const constants = variant.constants(g);
  const split = weightSplit(g, variant);
  const partial = split.splits > 1
    ? workspaceDesc(`${t.dweight.label} partial sums`, [split.splits, ...t.weight.shape])
    : t.dweight;
  if (t.dx) {
    calls.push(kernelCall({
      kernel,
      entryPoint: "backward_input",
      workgroupSize: variant.workgroupSize,
      constants,
      grid: variant.inputGrid(g),
      bindings: [
        ...variant.views(t.dy, staging),
        ...variant.views(t.weight, staging),
        write(t.dx),
      ],
      flops: passFlops(g),
    }));
  }
  calls.push(kernelCall({
    kernel,
    entryPoint: "backward_weight",
    workgroupSize: variant.workgroupSize,
    constants: { ...constants, SPLIT_PIXELS: split.pixels },
    grid: variant.weightGrid(g, split.splits),
    bindings: [...variant.views(t.x, staging), ...variant.views(t.dy, staging), write(partial)],
    flops: passFlops(g),
  }));
  calls.unshift(...staging.take());
  if (split.splits > 1) {
    const weightSize = elementCount(t.weight.shape);
    calls.push(kernelCall({
      kernel: kernels.conv2dReduce,
      entryPoint: "reduce_splits",
      workgroupSize: REDUCE_WORKGROUP,
      constants: { SPLITS: split.splits, WEIGHT_SIZE: weightSize },
      grid: linearGrid(weightSize, REDUCE_WORKGROUP),
      bindings: [read(partial), write(t.dweight)],
    }));
  }
  return calls;
}
