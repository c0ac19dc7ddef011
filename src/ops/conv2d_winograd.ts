/**
 * The Winograd convolution F(4x4, 3x3) of conv2d.ts's "winograd" variant, for 3x3 layers of stride
 * 1 and padding 1. The forward pass (x -> y) and the input gradient (dy -> dx, the same
 * convolution with the filters rotated and their channels swapped) are four calls each:
 *   transform_weight  weight -> U [rows, 36, cols]      (shaders/conv2d_winograd.wgsl)
 *   transform_tiles   image  -> V [36, tiles, cols]     (x or dy, read as a texture)
 *   transformed_product V, U -> M [36, tiles, rows]     (shaders/conv2d_blocked_math.wgsl's
 *                                                        blocked arithmetic on textures)
 *   transform_output  M -> y or dx                      (rows: output channels)
 * and the weight gradient four more:
 *   transform_tiles   x  -> V [36, tiles, in]
 *   transform_tiles   dy -> Z [36, tiles, out]          (GRADIENT: dL/dM = A dY A^T)
 *   transformed_weight_product Z, V -> dU partial sums [ranges, out, 36, in]
 *   transform_weight_gradient dU -> dweight             (the ranges summed, G^T dU G)
 * with U, V, M and Z copied into textures before their readers (src/ops/staging.ts; where the
 * forward pass and the weight gradient share a staging, as in a training step, x's V is made once
 * for both). The products do 36 multiply-adds per 4x4 tile and channel pair, the direct kernels
 * 144; the transforms write and read V, M and Z, 36/16 of the image's and the output's elements
 * each, in workspaces.
 */
import { type Call, kernelCall, linearGrid, read, sampled, write } from "../gpu/kernel_call.ts";
import type { OverrideConstants } from "../gpu/pipeline.ts";
import { type TensorDesc, texelChannels, textureExtent, workspaceDesc } from "../gpu/tensor.ts";
import { activationKernel, kernels } from "../shaders.ts";
import type { ActivationDType } from "./shape.ts";
import { cpuRangeRows, splitRanges } from "./conv2d_split.ts";
import { rowShiftOf, Staging } from "./staging.ts";

/** Positions of the transformed 6x6 tile: one matrix product each. */
const POSITIONS = 36;
/** Tiles per block of the product (16 rows per invocation, all of one position). */
const TILE_BLOCK = 16;
/** The transforms' workgroup: one tile and 4 channels per invocation, a streaming pass. */
const TRANSFORM_WORKGROUP = 64;
/** The product's blocking: the blocked kernels' (conv2d.ts). */
const PRODUCT_BLOCK = 16;

/**
 * The product's workgroup for a layer of `rows` x `cols` channels: 16 invocations (the blocked
 * kernels' workgroup) from 64 channels, where they ran 1.05-1.25x faster than 8; 8 below, where 16
 * ran at 0.65-0.85x (llvmpipe on a Zen 5, AVX-512 code; bench/README.md, "Zen 5: workgroups of 16,
 * Winograd from 32 channels, and 512-bit vectors").
 */
function productWorkgroup(rows: number, cols: number): number {
  return Math.min(rows, cols) >= 64 ? 16 : 8;
}

/** One Winograd pass: `image` [N, H, W, inC] and the layer's OHWI weight to `output`. */
export interface WinogradPass {
  image: TensorDesc;
  weight: TensorDesc;
  output: TensorDesc;
  /** The layer's channels (weight [outC, 3, 3, inC]). */
  inC: number;
  outC: number;
  /** false: forward (image x, output y); true: input gradient (image dy, output dx). */
  flip: boolean;
  /** Staging of the pass's image (the op's, shared with its other readers). */
  staging: Staging;
}

/** Tiles of 4x4 output pixels, padded to whole blocks of the product. */
function paddedTiles(batch: number, height: number, width: number): number {
  const tiles = batch * Math.ceil(height / 4) * Math.ceil(width / 4);
  return Math.ceil(tiles / TILE_BLOCK) * TILE_BLOCK;
}

/**
 * Why the Winograd pass cannot run a layer of `input` [N, H, W, inC] to outC channels, or
 * undefined: V and M must each fit a texture (at most 8192² texels).
 */
export function winogradUnsupported(input: readonly number[], outC: number): string | undefined {
  const [batch, height, width, inC] = input;
  const elements = POSITIONS * paddedTiles(batch, height, width) *
    Math.max(texelChannels(inC), texelChannels(outC));
  return textureExtent(elements)
    ? undefined
    : "needs transformed tiles (36/16 of a tensor) of at most 8192² texels";
}

/**
 * The products' geometry in blocked_texture's kernel: 36 products over `tiles` rows, a 1x1 layer
 * over one 36 x tiles image of `cols` channels to `rows` channels (padded, stored padded).
 */
function productConstants(tiles: number, cols: number, rows: number): OverrideConstants {
  return {
    BATCH: 1,
    IN_H: POSITIONS,
    IN_W: tiles,
    IN_C: cols,
    OUT_H: POSITIONS,
    OUT_W: tiles,
    OUT_C: rows,
    KERNEL: 1,
    STRIDE: 1,
    PADDING: 0,
    TAPS: POSITIONS,
  };
}

/**
 * The texture of `image`'s transformed tiles [36, tiles, channels]: V of input tiles, or
 * (`gradient`) Z of dy tiles; transform_tiles of `image`'s texture into a workspace, then a copy,
 * added to `staging` once: a plan that shares its staging computes a layer's V once for the
 * forward pass and the weight gradient.
 */
function tileTexels(image: TensorDesc, staging: Staging, gradient: boolean): TensorDesc {
  const what = gradient ? "gradient tiles" : "tiles";
  return staging.derived(image, `winograd ${what}`, () => {
    const imageTexels = staging.texture(image);
    const [batch, height, width, channels] = imageTexels.shape;
    const tiles = paddedTiles(batch, height, width);
    const transformed = workspaceDesc(`${image.label} transformed ${what}`, [
      POSITIONS,
      tiles,
      channels,
    ]);
    staging.add(kernelCall({
      kernel: kernels.conv2dWinograd,
      entryPoint: "transform_tiles",
      label: `${image.label} transform_tiles`,
      workgroupSize: TRANSFORM_WORKGROUP,
      constants: {
        BATCH: batch,
        HEIGHT: height,
        WIDTH: width,
        CHANNELS: channels,
        IMAGE_ROW_SHIFT: rowShiftOf(imageTexels),
        GRADIENT: gradient ? 1 : 0,
      },
      grid: linearGrid((tiles * channels) / 4, TRANSFORM_WORKGROUP),
      bindings: [sampled(imageTexels), write(transformed)],
    }));
    return staging.texture(transformed);
  });
}

/** The four calls of one pass, with the staging of U, V and M between them. */
export function winogradCalls(pass: WinogradPass, dtype: ActivationDType): Call[] {
  const [batch, height, width] = pass.image.shape;
  const tiles = paddedTiles(batch, height, width);
  // The product's reduction (cols) and output (rows) channels, padded to texels.
  const [colsReal, rowsReal] = pass.flip ? [pass.outC, pass.inC] : [pass.inC, pass.outC];
  const cols = texelChannels(colsReal);
  const rows = texelChannels(rowsReal);
  const what = pass.output.label;
  const transformed = workspaceDesc(`${what} transformed weight`, [rows, POSITIONS, cols]);
  const product = workspaceDesc(`${what} transformed product`, [POSITIONS, tiles, rows]);
  const geometry = { BATCH: batch, HEIGHT: height, WIDTH: width };
  const later = new Staging();

  const imageTransformTexels = tileTexels(pass.image, pass.staging, false);
  const calls: Call[] = [
    kernelCall({
      kernel: kernels.conv2dWinograd,
      entryPoint: "transform_weight",
      label: `${what} transform_weight`,
      workgroupSize: TRANSFORM_WORKGROUP,
      constants: {
        ...geometry,
        CHANNELS: cols,
        IN_C: pass.inC,
        OUT_C: pass.outC,
        ROWS: rows,
        COLS: cols,
        FLIP: pass.flip ? 1 : 0,
      },
      // Four columns per invocation.
      grid: linearGrid((rows * cols) / 4, TRANSFORM_WORKGROUP),
      bindings: [read(pass.weight), write(transformed)],
    }),
  ];
  const weightTexels = later.texture(transformed);
  calls.push(...later.take());
  calls.push(kernelCall({
    kernel: kernels.conv2dTexture,
    entryPoint: "transformed_product",
    label: `${what} transformed_product`,
    workgroupSize: productWorkgroup(rows, cols),
    constants: {
      ...productConstants(tiles, cols, rows),
      X_ROW_SHIFT: rowShiftOf(imageTransformTexels),
      WEIGHT_ROW_SHIFT: rowShiftOf(weightTexels),
      DY_ROW_SHIFT: 0,
    },
    grid: [
      Math.ceil((POSITIONS * tiles) / PRODUCT_BLOCK / productWorkgroup(rows, cols)),
      Math.ceil(rows / PRODUCT_BLOCK),
      1,
    ],
    bindings: [sampled(imageTransformTexels), sampled(weightTexels), write(product)],
    flops: 2 * POSITIONS * tiles * rows * cols,
  }));
  const productTexels = later.texture(product);
  calls.push(...later.take());
  calls.push(kernelCall({
    // The one transform that stores activations: the dtype's build, four channels per store where
    // the stored channels are whole vec4s (as the direct kernels', src/ops/conv2d.ts).
    kernel: activationKernel(
      rowsReal % 4 === 0 ? kernels.conv2dWinograd : kernels.conv2dWinogradElements,
      dtype,
    ),
    entryPoint: "transform_output",
    label: `${what} transform_output`,
    workgroupSize: TRANSFORM_WORKGROUP,
    constants: {
      ...geometry,
      CHANNELS: rows,
      STORED_CHANNELS: rowsReal,
      PRODUCT_ROW_SHIFT: rowShiftOf(productTexels),
    },
    grid: linearGrid(
      (batch * Math.ceil(height / 4) * Math.ceil(width / 4) * rows) / 4,
      TRANSFORM_WORKGROUP,
    ),
    bindings: [sampled(productTexels), write(pass.output)],
  }));
  return calls;
}

/** The weight gradient's pass: x and dy of a layer (`staging` stages them) to dweight. */
export interface WinogradWeightPass {
  x: TensorDesc;
  dy: TensorDesc;
  dweight: TensorDesc;
  inC: number;
  outC: number;
  staging: Staging;
}

/** The four calls of the weight gradient, with the staging of V and Z between them. */
export function winogradWeightCalls(pass: WinogradWeightPass): Call[] {
  const [batch, height, width] = pass.x.shape;
  const tiles = paddedTiles(batch, height, width);
  const cols = texelChannels(pass.inC);
  const rows = texelChannels(pass.outC);
  const what = pass.dweight.label;
  // Ranges of tiles as the direct kernels' ranges of pixels (conv2d_split.ts).
  const split = splitRanges(tiles, cpuRangeRows(cols, rows), rows * POSITIONS * cols * 4, 4);
  const partials = workspaceDesc(`${what} transformed partial sums`, [
    split.ranges,
    rows,
    POSITIONS,
    cols,
  ]);
  const imageTexels = tileTexels(pass.x, pass.staging, false);
  const gradientTexels = tileTexels(pass.dy, pass.staging, true);
  const calls: Call[] = [];
  const blocks = POSITIONS * Math.ceil(cols / PRODUCT_BLOCK) * Math.ceil(rows / PRODUCT_BLOCK);
  calls.push(
    kernelCall({
      kernel: kernels.conv2dTexture,
      entryPoint: "transformed_weight_product",
      label: `${what} transformed_weight_product`,
      workgroupSize: productWorkgroup(rows, cols),
      constants: {
        ...productConstants(tiles, cols, rows),
        X_ROW_SHIFT: rowShiftOf(imageTexels),
        WEIGHT_ROW_SHIFT: 0,
        DY_ROW_SHIFT: rowShiftOf(gradientTexels),
        SPLIT_PIXELS: split.rows,
        SPLITS: split.ranges,
      },
      grid: [Math.ceil((split.ranges * blocks) / productWorkgroup(rows, cols)), 1, 1],
      bindings: [sampled(imageTexels), sampled(gradientTexels), write(partials)],
      flops: 2 * POSITIONS * tiles * rows * cols,
    }),
    kernelCall({
      kernel: kernels.conv2dWinograd,
      entryPoint: "transform_weight_gradient",
      label: `${what} transform_weight_gradient`,
      workgroupSize: TRANSFORM_WORKGROUP,
      constants: {
        IN_C: pass.inC,
        OUT_C: pass.outC,
        ROWS: rows,
        COLS: cols,
        SPLITS: split.ranges,
      },
      // Four input channels (of the padded cols) per invocation.
      grid: linearGrid((pass.outC * cols) / 4, TRANSFORM_WORKGROUP),
      bindings: [read(partials), write(pass.dweight)],
    }),
  );
  return calls;
}
