/**
 * The benchmarks' yardstick kernels (bench/shaders/): a tuned matrix product of a convolution's
 * FLOPs, a plain copy of a pass's bytes, and an FMA loop for the adapter's arithmetic peak. They
 * measure what the adapter can do, so they stay out of the production kernel table and the browser
 * bundle.
 */
import type { Gpu } from "../src/gpu/device.ts";
import { kernel } from "../src/shaders.ts";
import copy from "./shaders/copy.wgsl" with { type: "text" };
import fma from "./shaders/fma.wgsl" with { type: "text" };
import matmul from "./shaders/matmul.wgsl" with { type: "text" };

export const yardsticks = {
  copy: kernel("copy", copy),
  fma: kernel("fma", fma),
  matmul: kernel("matmul", matmul),
} as const;

/**
 * Copy tilings worth trying on this adapter (the fastest is the yardstick). llvmpipe: each SIMD
 * lane streams its own run of vectors, long ones for large tensors. GPUs: one or a few vectors per
 * invocation.
 */
export function copyTilings(
  gpu: Gpu,
): { WORKGROUP_SIZE: number; VECTORS_PER_INVOCATION: number }[] {
  return gpu.isFallbackAdapter
    ? [64, 256, 1024].map((vectors) => ({ WORKGROUP_SIZE: 8, VECTORS_PER_INVOCATION: vectors }))
    : [1, 4].map((vectors) => ({ WORKGROUP_SIZE: 256, VECTORS_PER_INVOCATION: vectors }));
}
