/**
 * Global max pooling, NHWC [N, H, W, C] -> [N, C] (shaders/global_max_pool.wgsl): PyTorch's
 * AdaptiveMaxPool2d(1), ResNet-9's head. x and dx are activations of f32 or f16; the pooled
 * features and their gradient are f32 either way, as global_avg_pool's, so the classifier head
 * always runs in f32. The backward reads the forward's input x to find each plane's first maximum
 * (ties go to the first in row-major (h, w) order, as PyTorch's CPU kernel).
 */
import { type KernelCall, kernelCall, linearGrid, read, write } from "../gpu/kernel_call.ts";
import type { TensorDesc } from "../gpu/tensor.ts";
import { activationKernel, kernels } from "../shaders.ts";
import { expectTensor, nhwc } from "./shape.ts";

const WORKGROUP_SIZE = 64;

/** y[n, c] = the maximum of x over (h, w): one invocation per (n, c). */
export function globalMaxPoolForward(t: { x: TensorDesc; y: TensorDesc }): KernelCall[] {
  const { n, h, w, c, dtype } = nhwc("global_max_pool", t.x);
  expectTensor("global_max_pool", t.y, [n, c]);
  return [kernelCall({
    kernel: activationKernel(kernels.globalMaxPool, dtype),
    entryPoint: "forward",
    workgroupSize: WORKGROUP_SIZE,
    constants: { SPATIAL: h * w, CHANNELS: c },
    grid: linearGrid(n * c, WORKGROUP_SIZE),
    bindings: [read(t.x), write(t.y)],
  })];
}

/**
 * dx = dy[n, c] at the first maximum of x's plane (n, c), 0 elsewhere: all of dx is written. One
 * invocation per (n, c), which rescans its plane of x and writes all of the plane's dx.
 */
export function globalMaxPoolBackward(
  t: { x: TensorDesc; dy: TensorDesc; dx: TensorDesc },
): KernelCall[] {
  const { n, h, w, c, dtype } = nhwc("global_max_pool backward", t.x);
  expectTensor("global_max_pool backward", t.dy, [n, c]);
  expectTensor("global_max_pool backward", t.dx, t.x.shape, dtype);
  return [kernelCall({
    kernel: activationKernel(kernels.globalMaxPool, dtype),
    entryPoint: "backward",
    workgroupSize: WORKGROUP_SIZE,
    constants: { SPATIAL: h * w, CHANNELS: c },
    grid: linearGrid(n * c, WORKGROUP_SIZE),
    bindings: [read(t.x), read(t.dy), write(t.dx)],
  })];
}
