/**
 * Elementwise add (shaders/add.wgsl), the residual connection. Its backward is the identity
 * (da = db = dy), so it has no kernel; the same kernel sums two gradients where a tensor feeds
 * two consumers.
 */
import { type KernelCall, kernelCall, linearGrid, read, write } from "../gpu/kernel_call.ts";
import type { TensorDesc } from "../gpu/tensor.ts";
import { elementCount } from "../util/shape.ts";
import { kernels } from "../shaders.ts";
import { expectTensor } from "./shape.ts";

const WORKGROUP_SIZE = 256;

/** y = a + b, into a tensor other than a and b (WebGPU forbids aliasing a written binding). */
export function addForward(t: { a: TensorDesc; b: TensorDesc; y: TensorDesc }): KernelCall[] {
  expectTensor("add", t.a, t.a.shape);
  expectTensor("add", t.b, t.a.shape);
  expectTensor("add", t.y, t.a.shape);
  const count = elementCount(t.a.shape);
  const vec4 = count % 4 === 0;
  return [kernelCall({
    kernel: kernels.add,
    entryPoint: vec4 ? "forward_vec4" : "forward",
    workgroupSize: WORKGROUP_SIZE,
    grid: linearGrid(vec4 ? count / 4 : count, WORKGROUP_SIZE),
    bindings: [read(t.a), read(t.b), write(t.y)],
  })];
}
