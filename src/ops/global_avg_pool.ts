/** Global average pooling, NHWC [N, H, W, C] -> [N, C] (shaders/global_avg_pool.wgsl). */
import { type KernelCall, kernelCall, linearGrid, read, write } from "../gpu/kernel_call.ts";
import type { TensorDesc } from "../gpu/tensor.ts";
import { kernels } from "../shaders.ts";
import { expectTensor, nhwc } from "./shape.ts";

const WORKGROUP_SIZE = 64;

export function globalAvgPoolForward(t: { x: TensorDesc; y: TensorDesc }): KernelCall[] {
  const { n, h, w, c } = nhwc("global_avg_pool", t.x);
  expectTensor("global_avg_pool", t.y, [n, c]);
  return [kernelCall({
    kernel: kernels.globalAvgPool,
    entryPoint: "forward",
    workgroupSize: WORKGROUP_SIZE,
    constants: { SPATIAL: h * w, CHANNELS: c },
    grid: linearGrid(n * c, WORKGROUP_SIZE),
    bindings: [read(t.x), write(t.y)],
  })];
}

export function globalAvgPoolBackward(t: { dy: TensorDesc; dx: TensorDesc }): KernelCall[] {
  const { n, h, w, c } = nhwc("global_avg_pool backward", t.dx);
  expectTensor("global_avg_pool backward", t.dy, [n, c]);
  return [kernelCall({
    kernel: kernels.globalAvgPool,
    entryPoint: "backward",
    workgroupSize: WORKGROUP_SIZE,
    constants: { SPATIAL: h * w, CHANNELS: c },
    grid: linearGrid(n * h * w * c, WORKGROUP_SIZE),
    bindings: [read(t.dy), write(t.dx)],
  })];
}
