/**
 * Fully connected layer y = scale · (x · Wᵀ + b), PyTorch's layout (shaders/linear.wgsl); the
 * scale (default 1, nn.Linear itself) is ResNet-9's fc(x) * 0.125.
 */
import { type KernelCall, kernelCall, linearGrid, read, write } from "../gpu/kernel_call.ts";
import type { TensorDesc } from "../gpu/tensor.ts";
import { kernels } from "../shaders.ts";
import { expectTensor, ShapeError } from "./shape.ts";

const WORKGROUP_SIZE = 64;

export interface LinearTensors {
  /** [batch, in] */
  x: TensorDesc;
  /** [out, in] */
  weight: TensorDesc;
  /** [out] */
  bias: TensorDesc;
}

export interface LinearOptions {
  /** The constant the layer's output is multiplied by: finite and nonzero, default 1. */
  scale?: number;
}

function sizes(op: string, t: LinearTensors, options: LinearOptions) {
  const { scale = 1 } = options;
  if (!Number.isFinite(scale) || scale === 0) {
    throw new RangeError(`${op}: scale must be a finite nonzero number, got ${scale}`);
  }
  const { x, weight, bias } = t;
  if (x.shape.length !== 2 || weight.shape.length !== 2) {
    throw new ShapeError(`${op}: expected x [batch, in] and weight [out, in]`);
  }
  const [batch, inFeatures] = x.shape;
  const [outFeatures] = weight.shape;
  expectTensor(op, x, [batch, inFeatures]);
  expectTensor(op, weight, [outFeatures, inFeatures]);
  expectTensor(op, bias, [outFeatures]);
  return {
    batch,
    inFeatures,
    outFeatures,
    constants: { BATCH: batch, IN: inFeatures, OUT: outFeatures, SCALE: scale },
    /** Each pass is one batch x in x out product. */
    flops: 2 * batch * inFeatures * outFeatures,
  };
}

export function linearForward(
  t: LinearTensors & { y: TensorDesc },
  options: LinearOptions = {},
): KernelCall[] {
  const { batch, outFeatures, constants, flops } = sizes("linear", t, options);
  expectTensor("linear", t.y, [batch, outFeatures]);
  return [kernelCall({
    kernel: kernels.linear,
    entryPoint: "forward",
    workgroupSize: WORKGROUP_SIZE,
    constants,
    grid: linearGrid(batch * outFeatures, WORKGROUP_SIZE),
    bindings: [read(t.x), read(t.weight), read(t.bias), write(t.y)],
    flops,
  })];
}

export interface LinearGradients {
  dy: TensorDesc;
  /** Omit where no gradient flows to the input. */
  dx?: TensorDesc;
  dweight: TensorDesc;
  dbias: TensorDesc;
}

/**
 * The gradients of x (if asked for), weight and bias; they overwrite, not accumulate. `scale` must
 * be the forward's.
 */
export function linearBackward(
  t: LinearTensors & LinearGradients,
  options: LinearOptions = {},
): KernelCall[] {
  const op = "linear backward";
  const { batch, inFeatures, outFeatures, constants, flops } = sizes(op, t, options);
  expectTensor(op, t.dy, [batch, outFeatures]);
  expectTensor(op, t.dweight, t.weight.shape);
  expectTensor(op, t.dbias, [outFeatures]);
  const calls = [kernelCall({
    kernel: kernels.linear,
    entryPoint: "backward_params",
    workgroupSize: WORKGROUP_SIZE,
    constants,
    grid: linearGrid(outFeatures * inFeatures, WORKGROUP_SIZE),
    bindings: [read(t.x), read(t.dy), write(t.dweight), write(t.dbias)],
    flops,
  })];
  if (t.dx) {
    expectTensor(op, t.dx, t.x.shape);
    calls.push(kernelCall({
      kernel: kernels.linear,
      entryPoint: "backward_input",
      workgroupSize: WORKGROUP_SIZE,
      constants,
      grid: linearGrid(batch * inFeatures, WORKGROUP_SIZE),
      bindings: [read(t.dy), read(t.weight), write(t.dx)],
      flops,
    }));
  }
  return calls;
}
