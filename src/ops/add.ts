/**
 * Elementwise add (shaders/add.wgsl), the residual connection. Its backward is the identity
 * (da = db = dy), so it has no kernel; the same kernel sums two gradients where a tensor feeds
 * two consumers.
 */
import { type KernelCall, kernelCall, linearGrid, read, write } from "../gpu/kernel_call.ts";
import type { TensorDesc } from "../gpu/tensor.ts";
import { elementCount } from "../util/shape.ts";
import { activationKernel, kernels } from "../shaders.ts";
import { activationDtype, expectTensor } from "./shape.ts";

const WORKGROUP_SIZE = 256;

/**
 * y = a + b on f32 or f16 activations (all three of one type), into a tensor other than a and b
 * (WebGPU forbids aliasing a written binding).
 */
export function addForward(t: { a: TensorDesc; b: TensorDesc; y: TensorDesc }): KernelCall[] {
  const dtype = activationDtype("add", t.a);
  expectTensor("add", t.b, t.a.shape, dtype);
  expectTensor("add", t.y, t.a.shape, dtype);
  const count = elementCount(t.a.shape);
  const vec4 = count % 4 === 0;
  return [kernelCall({
    kernel: activationKernel(kernels.add, dtype),
    entryPoint: vec4 ? "forward_vec4" : "forward",
    workgroupSize: WORKGROUP_SIZE,
    grid: linearGrid(vec4 ? count / 4 : count, WORKGROUP_SIZE),
    bindings: [read(t.a), read(t.b), write(t.y)],
  })];
}
