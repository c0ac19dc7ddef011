/** ReLU forward and backward (shaders/relu.wgsl). */
import { createDispatch, type Dispatch, linearGrid } from "../gpu/dispatch.ts";
import type { Gpu } from "../gpu/device.ts";
import { elementCount, type Tensor } from "../gpu/tensor.ts";
import { kernels } from "../shaders.ts";
import { expectShape } from "./shape.ts";

const WORKGROUP_SIZE = 256;

/** y = max(x, 0). WebGPU forbids binding one buffer range as both input and output. */
export function reluForward(gpu: Gpu, x: Tensor, y: Tensor): Promise<Dispatch> {
  expectShape("relu", y, x.shape);
  return createDispatch(gpu, {
    kernel: kernels.relu,
    entryPoint: "forward",
    bindings: [x, y],
    workgroups: linearGrid(elementCount(x.shape), WORKGROUP_SIZE),
  });
}

/** dx = dy where y > 0, else 0, from the forward's output y. */
export function reluBackward(gpu: Gpu, y: Tensor, dy: Tensor, dx: Tensor): Promise<Dispatch> {
  expectShape("relu backward", dy, y.shape);
  expectShape("relu backward", dx, y.shape);
  return createDispatch(gpu, {
    kernel: kernels.relu,
    entryPoint: "backward",
    bindings: [y, dy, dx],
    workgroups: linearGrid(elementCount(y.shape), WORKGROUP_SIZE),
  });
}
