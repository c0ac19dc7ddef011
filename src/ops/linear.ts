/** Fully connected layer y = x · Wᵀ + b, PyTorch's layout (shaders/linear.wgsl). */
import { createDispatch, type Dispatch, linearGrid } from "../gpu/dispatch.ts";
import type { Gpu } from "../gpu/device.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { kernels } from "../shaders.ts";
import { expectShape, ShapeError } from "./shape.ts";

const WORKGROUP_SIZE = 64;

export interface LinearTensors {
  /** [batch, in] */
  x: Tensor;
  /** [out, in] */
  weight: Tensor;
  /** [out] */
  bias: Tensor;
}

function sizes(tensors: LinearTensors) {
  const { x, weight, bias } = tensors;
  if (x.shape.length !== 2 || weight.shape.length !== 2) {
    throw new ShapeError(`linear: expected x [batch, in] and weight [out, in]`);
  }
  const [batch, inFeatures] = x.shape;
  const [outFeatures] = weight.shape;
  expectShape("linear", weight, [outFeatures, inFeatures]);
  expectShape("linear", bias, [outFeatures]);
  return {
    batch,
    inFeatures,
    outFeatures,
    constants: { BATCH: batch, IN: inFeatures, OUT: outFeatures },
  };
}

export function linearForward(gpu: Gpu, tensors: LinearTensors & { y: Tensor }): Promise<Dispatch> {
  const { batch, outFeatures, constants } = sizes(tensors);
  expectShape("linear", tensors.y, [batch, outFeatures]);
  return createDispatch(gpu, {
    kernel: kernels.linear,
    entryPoint: "forward",
    constants,
    bindings: [tensors.x, tensors.weight, tensors.bias, tensors.y],
    workgroups: linearGrid(batch * outFeatures, WORKGROUP_SIZE),
  });
}

export interface LinearGradients {
  dy: Tensor;
  /** Omit where no gradient flows to the input. */
  dx?: Tensor;
  dweight: Tensor;
  dbias: Tensor;
}

/** The gradients of x (if asked for), weight and bias; they overwrite, not accumulate. */
export async function linearBackward(
  gpu: Gpu,
  tensors: LinearTensors & LinearGradients,
): Promise<Dispatch[]> {
  const { batch, inFeatures, outFeatures, constants } = sizes(tensors);
  const { x, weight, dy, dx, dweight, dbias } = tensors;
  expectShape("linear backward", dy, [batch, outFeatures]);
  expectShape("linear backward", dweight, weight.shape);
  expectShape("linear backward", dbias, [outFeatures]);
  const dispatches = [
    await createDispatch(gpu, {
      kernel: kernels.linear,
      entryPoint: "backward_params",
      constants,
      bindings: [x, dy, dweight, dbias],
      workgroups: linearGrid(outFeatures * inFeatures, WORKGROUP_SIZE),
    }),
  ];
  if (dx) {
    expectShape("linear backward", dx, x.shape);
    dispatches.push(
      await createDispatch(gpu, {
        kernel: kernels.linear,
        entryPoint: "backward_input",
        constants,
        bindings: [dy, weight, dx],
        workgroups: linearGrid(batch * inFeatures, WORKGROUP_SIZE),
      }),
    );
  }
  return dispatches;
}
