/**
 * Global average pooling, NHWC [N, H, W, C] -> [N, C] (shaders/global_avg_pool.wgsl). x and dx are
 * activations of f32 or f16; the pooled features and their gradient are f32 either way, so the
 * classifier head (linear, softmax cross-entropy) always runs in f32: its tensors are tiny, and
 * the logits and loss keep f32's range and digits.
 */
import { type KernelCall, kernelCall, linearGrid, read, write } from "../gpu/kernel_call.ts";
import type { TensorDesc } from "../gpu/tensor.ts";
import { activationKernel, kernels } from "../shaders.ts";
import { expectTensor, nhwc } from "./shape.ts";

const WORKGROUP_SIZE = 64;

export function globalAvgPoolForward(t: { x: TensorDesc; y: TensorDesc }): KernelCall[] {
  const { n, h, w, c, dtype } = nhwc("global_avg_pool", t.x);
  expectTensor("global_avg_pool", t.y, [n, c]);
  return [kernelCall({
    kernel: activationKernel(kernels.globalAvgPool, dtype),
    entryPoint: "forward",
    workgroupSize: WORKGROUP_SIZE,
    constants: { SPATIAL: h * w, CHANNELS: c },
    grid: linearGrid(n * c, WORKGROUP_SIZE),
    bindings: [read(t.x), write(t.y)],
  })];
}

export function globalAvgPoolBackward(t: { dy: TensorDesc; dx: TensorDesc }): KernelCall[] {
  const { n, h, w, c, dtype } = nhwc("global_avg_pool backward", t.dx);
  expectTensor("global_avg_pool backward", t.dy, [n, c]);
  return [kernelCall({
    kernel: activationKernel(kernels.globalAvgPool, dtype),
    entryPoint: "backward",
    workgroupSize: WORKGROUP_SIZE,
    constants: { SPATIAL: h * w, CHANNELS: c },
    grid: linearGrid(n * h * w * c, WORKGROUP_SIZE),
    bindings: [read(t.dy), write(t.dx)],
  })];
}
