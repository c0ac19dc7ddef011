/**
 * Elementwise add (shaders/add.wgsl), the residual connection. Its backward is the identity
 * (da = db = dy), so it has no dispatch; the same kernel sums two gradients where a tensor feeds
 * two consumers.
 */
import { createDispatch, type Dispatch, linearGrid } from "../gpu/dispatch.ts";
import type { Gpu } from "../gpu/device.ts";
import { elementCount, type Tensor } from "../gpu/tensor.ts";
import { kernels } from "../shaders.ts";
import { expectShape } from "./shape.ts";

const WORKGROUP_SIZE = 256;

/** y = a + b, into a tensor other than a and b (WebGPU forbids aliasing a written binding). */
export function addForward(gpu: Gpu, a: Tensor, b: Tensor, y: Tensor): Promise<Dispatch> {
  expectShape("add", b, a.shape);
  expectShape("add", y, a.shape);
  const count = elementCount(a.shape);
  const vec4 = count % 4 === 0;
  return createDispatch(gpu, {
    kernel: kernels.add,
    entryPoint: vec4 ? "forward_vec4" : "forward",
    bindings: [a, b, y],
    workgroups: linearGrid(vec4 ? count / 4 : count, WORKGROUP_SIZE),
  });
}
