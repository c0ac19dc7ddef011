/** ReLU forward and backward (shaders/relu.wgsl). */
import { type KernelCall, kernelCall, linearGrid, read, write } from "../gpu/kernel_call.ts";
import type { TensorDesc } from "../gpu/tensor.ts";
import { elementCount } from "../util/shape.ts";
import { kernels } from "../shaders.ts";
import { expectTensor } from "./shape.ts";

const WORKGROUP_SIZE = 256;

/** y = max(x, 0). WebGPU forbids binding one buffer range as both input and output. */
export function reluForward(t: { x: TensorDesc; y: TensorDesc }): KernelCall[] {
  expectTensor("relu", t.x, t.x.shape);
  expectTensor("relu", t.y, t.x.shape);
  return [kernelCall({
    kernel: kernels.relu,
    entryPoint: "forward",
    workgroupSize: WORKGROUP_SIZE,
    grid: linearGrid(elementCount(t.x.shape), WORKGROUP_SIZE),
    bindings: [read(t.x), write(t.y)],
  })];
}

/** dx = dy where y > 0, else 0, from the forward's output y. */
export function reluBackward(t: { y: TensorDesc; dy: TensorDesc; dx: TensorDesc }): KernelCall[] {
  for (const tensor of [t.y, t.dy, t.dx]) expectTensor("relu backward", tensor, t.y.shape);
  return [kernelCall({
    kernel: kernels.relu,
    entryPoint: "backward",
    workgroupSize: WORKGROUP_SIZE,
    grid: linearGrid(elementCount(t.y.shape), WORKGROUP_SIZE),
    bindings: [read(t.y), read(t.dy), write(t.dx)],
  })];
}
