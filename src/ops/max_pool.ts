/**
 * Max pooling with 2x2 windows at stride 2, floor mode, NHWC (shaders/max_pool.wgsl): PyTorch's
 * MaxPool2d(2), as ResNet-9 downsamples. x, y, dy and dx are activations of one element type, f32
 * or f16. The backward reads the forward's input x to find each window's first maximum (ties go to
 * the first in row-major order, as PyTorch's CPU kernel), so x must be kept for it, not y.
 */
import { type KernelCall, kernelCall, linearGrid, read, write } from "../gpu/kernel_call.ts";
import type { TensorDesc } from "../gpu/tensor.ts";
import { activationKernel, kernels } from "../shaders.ts";
import { elementCount } from "../util/shape.ts";
import { expectTensor, nhwc, ShapeError } from "./shape.ts";

const WORKGROUP_SIZE = 256;

/**
 * The output shape [N, floor(H / 2), floor(W / 2), C] of an NHWC input `shape`: an odd last row or
 * column is dropped (floor mode). An input under 2 high or wide has no window and is refused.
 */
export function maxPoolOutputShape(shape: readonly number[]): number[] {
  return outputShape("max_pool", "input", shape);
}

function outputShape(op: string, label: string, shape: readonly number[]): number[] {
  if (shape.length !== 4) {
    throw new ShapeError(`${op}: ${label} has shape [${shape}], expected NHWC`);
  }
  const [n, h, w, c] = shape;
  if (h < 2 || w < 2) {
    throw new ShapeError(
      `${op}: ${label} has shape [${shape}], smaller than the 2x2 window: H and W must be at least 2`,
    );
  }
  return [n, Math.floor(h / 2), Math.floor(w / 2), c];
}

function constants(x: { n: number; h: number; w: number; c: number }) {
  return { BATCH: x.n, HEIGHT: x.h, WIDTH: x.w, CHANNELS: x.c };
}

/** y = the maximum of each 2x2 window of x: one invocation per element of y. */
export function maxPoolForward(t: { x: TensorDesc; y: TensorDesc }): KernelCall[] {
  const x = nhwc("max_pool", t.x);
  const shape = outputShape("max_pool", t.x.label, t.x.shape);
  expectTensor("max_pool", t.y, shape, x.dtype);
  return [kernelCall({
    kernel: activationKernel(kernels.maxPool, x.dtype),
    entryPoint: "forward",
    workgroupSize: WORKGROUP_SIZE,
    constants: constants(x),
    grid: linearGrid(elementCount(shape), WORKGROUP_SIZE),
    bindings: [read(t.x), write(t.y)],
  })];
}

/**
 * dx = dy at each window's first maximum of x (the forward's input), 0 elsewhere, including an odd
 * last row and column: all of dx is written. One invocation per window.
 */
export function maxPoolBackward(
  t: { x: TensorDesc; dy: TensorDesc; dx: TensorDesc },
): KernelCall[] {
  const x = nhwc("max_pool backward", t.x);
  const shape = outputShape("max_pool backward", t.x.label, t.x.shape);
  expectTensor("max_pool backward", t.dy, shape, x.dtype);
  expectTensor("max_pool backward", t.dx, t.x.shape, x.dtype);
  return [kernelCall({
    kernel: activationKernel(kernels.maxPool, x.dtype),
    entryPoint: "backward",
    workgroupSize: WORKGROUP_SIZE,
    constants: constants(x),
    grid: linearGrid(elementCount(shape), WORKGROUP_SIZE),
    bindings: [read(t.x), read(t.dy), write(t.dx)],
  })];
}
