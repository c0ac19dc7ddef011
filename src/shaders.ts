/**
 * Every production WGSL kernel, imported as text from `shaders/` (the benchmarks' yardsticks live
 * in bench/shaders/, out of the bundle). Deno and the esbuild browser bundle read
 * the same files through these imports (tests/build/bundle_test.ts checks the bundle carries them
 * unchanged), so there is no copy to drift. A kernel is one file of its name, or several joined
 * (`KERNEL_FILES`) where kernels share arithmetic but not bindings, as WGSL has no includes.
 */
import type { Kernel } from "./gpu/pipeline.ts";
import type { DType } from "./gpu/tensor.ts";
import add from "../shaders/add.wgsl" with { type: "text" };
import batchnorm from "../shaders/batchnorm.wgsl" with { type: "text" };
import conv2dBlocked from "../shaders/conv2d_blocked.wgsl" with { type: "text" };
import conv2dBlockedMath from "../shaders/conv2d_blocked_math.wgsl" with { type: "text" };
import conv2dPipelined from "../shaders/conv2d_pipelined.wgsl" with { type: "text" };
import conv2dReduce from "../shaders/conv2d_reduce.wgsl" with { type: "text" };
import conv2dStoresElements from "../shaders/conv2d_stores_elements.wgsl" with { type: "text" };
import conv2dStoresVec4 from "../shaders/conv2d_stores_vec4.wgsl" with { type: "text" };
import conv2dTexture from "../shaders/conv2d_texture.wgsl" with { type: "text" };
import conv2dTiled from "../shaders/conv2d_tiled.wgsl" with { type: "text" };
import conv2dWeightsLane from "../shaders/conv2d_weights_lane.wgsl" with { type: "text" };
import conv2dWeightsSubgroup from "../shaders/conv2d_weights_subgroup.wgsl" with { type: "text" };
import conv2dWinograd from "../shaders/conv2d_winograd.wgsl" with { type: "text" };
import ema from "../shaders/ema.wgsl" with { type: "text" };
import globalAvgPool from "../shaders/global_avg_pool.wgsl" with { type: "text" };
import globalMaxPool from "../shaders/global_max_pool.wgsl" with { type: "text" };
import inputBatch from "../shaders/input_batch.wgsl" with { type: "text" };
import linear from "../shaders/linear.wgsl" with { type: "text" };
import maxPool from "../shaders/max_pool.wgsl" with { type: "text" };
import optimizer from "../shaders/optimizer.wgsl" with { type: "text" };
import relu from "../shaders/relu.wgsl" with { type: "text" };
import softmaxCrossEntropy from "../shaders/softmax_cross_entropy.wgsl" with { type: "text" };
import subgroupProbe from "../shaders/subgroup_probe.wgsl" with { type: "text" };
import toTexture from "../shaders/to_texture.wgsl" with { type: "text" };

export function kernel(name: string, code: string, uses?: Kernel["uses"]): Kernel {
  return uses ? { name, code, uses } : { name, code };
}

/**
 * The files of `shaders/` (without `.wgsl`) that a kernel's source joins, in order, where it is not
 * the one file of its name: conv2d_blocked_math.wgsl holds the blocked convolution's arithmetic
 * (overrides, helpers, entry points), a weights file how it loads weight blocks, a loads file the
 * bindings and loads it calls, and a stores file how it stores y and dx (conv2d_winograd.wgsl's
 * transforms take one too): four channels per store, or one where a layer's channel counts are
 * not multiples of 4 (the `_elements` kernels, and the storage variant's).
 */
export const KERNEL_FILES: Readonly<Record<string, readonly string[]>> = {
  conv2d_blocked: [
    "conv2d_blocked_math",
    "conv2d_weights_lane",
    "conv2d_blocked",
    "conv2d_stores_elements",
  ],
  conv2d_texture: [
    "conv2d_blocked_math",
    "conv2d_weights_lane",
    "conv2d_texture",
    "conv2d_stores_vec4",
  ],
  conv2d_texture_elements: [
    "conv2d_blocked_math",
    "conv2d_weights_lane",
    "conv2d_texture",
    "conv2d_stores_elements",
  ],
  conv2d_texture_subgroup: [
    "conv2d_blocked_math",
    "conv2d_weights_subgroup",
    "conv2d_texture",
    "conv2d_stores_vec4",
  ],
  conv2d_texture_subgroup_elements: [
    "conv2d_blocked_math",
    "conv2d_weights_subgroup",
    "conv2d_texture",
    "conv2d_stores_elements",
  ],
  conv2d_winograd: ["conv2d_winograd", "conv2d_stores_vec4"],
  conv2d_winograd_elements: ["conv2d_winograd", "conv2d_stores_elements"],
};

/** A kernel's source from its files' texts (`KERNEL_FILES`), one blank line between them. */
export function joinSources(...texts: string[]): string {
  return texts.join("\n");
}

export const kernels = {
  add: kernel("add", add),
  batchnorm: kernel("batchnorm", batchnorm),
  conv2dBlocked: kernel(
    "conv2d_blocked",
    joinSources(conv2dBlockedMath, conv2dWeightsLane, conv2dBlocked, conv2dStoresElements),
  ),
  conv2dPipelined: kernel("conv2d_pipelined", conv2dPipelined),
  conv2dReduce: kernel("conv2d_reduce", conv2dReduce),
  conv2dTexture: kernel(
    "conv2d_texture",
    joinSources(conv2dBlockedMath, conv2dWeightsLane, conv2dTexture, conv2dStoresVec4),
  ),
  conv2dTextureElements: kernel(
    "conv2d_texture_elements",
    joinSources(conv2dBlockedMath, conv2dWeightsLane, conv2dTexture, conv2dStoresElements),
  ),
  conv2dTextureSubgroup: kernel(
    "conv2d_texture_subgroup",
    joinSources(conv2dBlockedMath, conv2dWeightsSubgroup, conv2dTexture, conv2dStoresVec4),
    "subgroups",
  ),
  conv2dTextureSubgroupElements: kernel(
    "conv2d_texture_subgroup_elements",
    joinSources(conv2dBlockedMath, conv2dWeightsSubgroup, conv2dTexture, conv2dStoresElements),
    "subgroups",
  ),
  conv2dTiled: kernel("conv2d_tiled", conv2dTiled),
  conv2dWinograd: kernel("conv2d_winograd", joinSources(conv2dWinograd, conv2dStoresVec4)),
  conv2dWinogradElements: kernel(
    "conv2d_winograd_elements",
    joinSources(conv2dWinograd, conv2dStoresElements),
  ),
  ema: kernel("ema", ema),
  globalAvgPool: kernel("global_avg_pool", globalAvgPool),
  globalMaxPool: kernel("global_max_pool", globalMaxPool),
  inputBatch: kernel("input_batch", inputBatch),
  linear: kernel("linear", linear),
  maxPool: kernel("max_pool", maxPool),
  optimizer: kernel("optimizer", optimizer),
  relu: kernel("relu", relu),
  softmaxCrossEntropy: kernel("softmax_cross_entropy", softmaxCrossEntropy),
  subgroupProbe: kernel("subgroup_probe", subgroupProbe, "subgroups"),
  toTexture: kernel("to_texture", toTexture),
} as const;

/**
 * Activations (and their gradients) are stored as f32 or f16; arithmetic is f32 either way. A
 * kernel that stores activations declares their type once (in one of its files where it joins
 * several), as the line `alias act = f32;`, and converts on every load (`f32(x[i])`,
 * `vec4f(x4[i])`) and store (`act(v)`, `vec4<act>(v)`). Its f16 build is the same source with
 * that line made `alias act = f16;` and `enable f16;` put first (WGSL has no type parameters, and
 * an override cannot be a type): one source, two builds. The device must have `shader-f16`.
 */
export const ACTIVATION_ALIAS = "alias act = f32;";

const f16Builds = new Map<Kernel, Kernel>();

/** The build of `kernel` for activations of element type `dtype` (f32: the source as written). */
export function activationKernel(kernel: Kernel, dtype: DType): Kernel {
  if (dtype === "f32") return kernel;
  if (dtype !== "f16") throw new TypeError(`${kernel.name}: no build for ${dtype} activations`);
  let build = f16Builds.get(kernel);
  if (!build) {
    const lines = kernel.code.split("\n");
    const at = lines.findIndex((line) => line.trim() === ACTIVATION_ALIAS);
    if (at < 0 || lines.findIndex((line, i) => i > at && line.trim() === ACTIVATION_ALIAS) >= 0) {
      throw new TypeError(
        `${kernel.name}.wgsl has no f16 build: it must declare \`${ACTIVATION_ALIAS}\` once`,
      );
    }
    lines[at] = "alias act = f16;";
    build = { ...kernel, code: `enable f16;\n${lines.join("\n")}`, build: "f16" };
    f16Builds.set(kernel, build);
  }
  return build;
}
