/** ReLU forward and backward (shaders/relu.wgsl). */
import { type KernelCall, kernelCall, linearGrid, read, write } from "../gpu/kernel_call.ts";
import type { TensorDesc } from "../gpu/tensor.ts";
import { elementCount } from "../util/shape.ts";
import { activationKernel, kernels } from "../shaders.ts";
import { activationDtype, expectTensor } from "./shape.ts";

const WORKGROUP_SIZE = 256;

/**
 * y = max(x, 0), on f32 or f16 activations. WebGPU forbids binding one buffer range as both input
 * and output.
 */
export function reluForward(t: { x: TensorDesc; y: TensorDesc }): KernelCall[] {
  const dtype = activationDtype("relu", t.x);
  expectTensor("relu", t.y, t.x.shape, dtype);
  return [kernelCall({
    kernel: activationKernel(kernels.relu, dtype),
    entryPoint: "forward",
    workgroupSize: WORKGROUP_SIZE,
    grid: linearGrid(elementCount(t.x.shape), WORKGROUP_SIZE),
    bindings: [read(t.x), write(t.y)],
  })];
}

/** dx = dy where y > 0, else 0, from the forward's output y. */
export function reluBackward(t: { y: TensorDesc; dy: TensorDesc; dx: TensorDesc }): KernelCall[] {
  const dtype = activationDtype("relu backward", t.y);
  for (const tensor of [t.dy, t.dx]) expectTensor("relu backward", tensor, t.y.shape, dtype);
  return [kernelCall({
    kernel: activationKernel(kernels.relu, dtype),
    entryPoint: "backward",
    workgroupSize: WORKGROUP_SIZE,
    grid: linearGrid(elementCount(t.y.shape), WORKGROUP_SIZE),
    bindings: [read(t.y), read(t.dy), write(t.dx)],
  })];
}
