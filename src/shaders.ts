/**
 * Every production WGSL kernel, imported as text from `shaders/` (the benchmarks' yardsticks live
 * in bench/shaders/, out of the bundle). Deno and the esbuild browser bundle read
 * the same files through these imports (tests/build/bundle_test.ts checks the bundle carries them
 * unchanged), so there is no copy to drift.
 */
import type { Kernel } from "./gpu/pipeline.ts";
import add from "../shaders/add.wgsl" with { type: "text" };
import batchnorm from "../shaders/batchnorm.wgsl" with { type: "text" };
import conv2dBlocked from "../shaders/conv2d_blocked.wgsl" with { type: "text" };
import conv2dReduce from "../shaders/conv2d_reduce.wgsl" with { type: "text" };
import conv2dTiled from "../shaders/conv2d_tiled.wgsl" with { type: "text" };
import globalAvgPool from "../shaders/global_avg_pool.wgsl" with { type: "text" };
import inputBatch from "../shaders/input_batch.wgsl" with { type: "text" };
import linear from "../shaders/linear.wgsl" with { type: "text" };
import optimizer from "../shaders/optimizer.wgsl" with { type: "text" };
import relu from "../shaders/relu.wgsl" with { type: "text" };
import softmaxCrossEntropy from "../shaders/softmax_cross_entropy.wgsl" with { type: "text" };

export function kernel(name: string, code: string): Kernel {
  return { name, code };
}

export const kernels = {
  add: kernel("add", add),
  batchnorm: kernel("batchnorm", batchnorm),
  conv2dBlocked: kernel("conv2d_blocked", conv2dBlocked),
  conv2dReduce: kernel("conv2d_reduce", conv2dReduce),
  conv2dTiled: kernel("conv2d_tiled", conv2dTiled),
  globalAvgPool: kernel("global_avg_pool", globalAvgPool),
  inputBatch: kernel("input_batch", inputBatch),
  linear: kernel("linear", linear),
  optimizer: kernel("optimizer", optimizer),
  relu: kernel("relu", relu),
  softmaxCrossEntropy: kernel("softmax_cross_entropy", softmaxCrossEntropy),
} as const;
