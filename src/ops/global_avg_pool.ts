/** Global average pooling, NHWC [N, H, W, C] -> [N, C] (shaders/global_avg_pool.wgsl). */
import { createDispatch, type Dispatch, linearGrid } from "../gpu/dispatch.ts";
import type { Gpu } from "../gpu/device.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { kernels } from "../shaders.ts";
import { expectShape, nhwc } from "./shape.ts";

const WORKGROUP_SIZE = 64;

export function globalAvgPoolForward(gpu: Gpu, x: Tensor, y: Tensor): Promise<Dispatch> {
  const { n, h, w, c } = nhwc("global_avg_pool", x);
  expectShape("global_avg_pool", y, [n, c]);
  return createDispatch(gpu, {
    kernel: kernels.globalAvgPool,
    entryPoint: "forward",
    constants: { SPATIAL: h * w, CHANNELS: c },
    bindings: [x, y],
    workgroups: linearGrid(n * c, WORKGROUP_SIZE),
  });
}

export function globalAvgPoolBackward(gpu: Gpu, dy: Tensor, dx: Tensor): Promise<Dispatch> {
  const { n, h, w, c } = nhwc("global_avg_pool backward", dx);
  expectShape("global_avg_pool backward", dy, [n, c]);
  return createDispatch(gpu, {
    kernel: kernels.globalAvgPool,
    entryPoint: "backward",
    constants: { SPATIAL: h * w, CHANNELS: c },
    bindings: [dy, dx],
    workgroups: linearGrid(n * h * w * c, WORKGROUP_SIZE),
  });
}
