/**
 * The benchmarks' yardstick kernels (bench/shaders/): a tuned matrix product of a convolution's
 * FLOPs and a plain copy of a pass's bytes. They measure what the adapter can do, so they stay out
 * of the production kernel table and the browser bundle.
 */
import { kernel } from "../src/shaders.ts";
import copy from "./shaders/copy.wgsl" with { type: "text" };
import matmul from "./shaders/matmul.wgsl" with { type: "text" };

export const yardsticks = {
  copy: kernel("copy", copy),
  matmul: kernel("matmul", matmul),
} as const;
