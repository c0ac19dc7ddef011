/**
 * Checks shared by the op modules: a tensor's shape and element type. Each failure names the op,
 * the tensor, what it is and what was expected.
 */
import { UserError } from "../errors.ts";
import type { DType, TensorDesc } from "../gpu/tensor.ts";

/** A tensor of the wrong shape or element type for an op. */
export class ShapeError extends UserError {
  override name = "ShapeError";
}

/** Checks the shape and the element type (f32 unless said). */
export function expectTensor(
  op: string,
  tensor: TensorDesc,
  shape: readonly number[],
  dtype: DType = "f32",
): void {
  if (tensor.shape.length !== shape.length || tensor.shape.some((size, i) => size !== shape[i])) {
    throw new ShapeError(
      `${op}: ${tensor.label} has shape [${tensor.shape}], expected [${shape}]`,
    );
  }
  expectDtype(op, tensor, dtype);
}

export function expectDtype(op: string, tensor: TensorDesc, dtype: DType): void {
  if (tensor.dtype !== dtype) {
    throw new ShapeError(
      `${op}: ${tensor.label} holds ${tensor.dtype} elements, expected ${dtype}`,
    );
  }
}

/** Element types activations and their gradients are stored in (see `activationKernel`). */
export type ActivationDType = "f32" | "f16";

/** The element type of an activation tensor: f32 or f16. */
export function activationDtype(op: string, tensor: TensorDesc): ActivationDType {
  if (tensor.dtype !== "f32" && tensor.dtype !== "f16") {
    throw new ShapeError(
      `${op}: ${tensor.label} holds ${tensor.dtype} elements, expected f32 or f16 activations`,
    );
  }
  return tensor.dtype;
}

/** The NHWC dimensions and element type (f32 or f16) of a rank-4 activation tensor. */
export function nhwc(
  op: string,
  tensor: TensorDesc,
): { n: number; h: number; w: number; c: number; dtype: ActivationDType } {
  if (tensor.shape.length !== 4) {
    throw new ShapeError(`${op}: ${tensor.label} has shape [${tensor.shape}], expected NHWC`);
  }
  const dtype = activationDtype(op, tensor);
  const [n, h, w, c] = tensor.shape;
  return { n, h, w, c, dtype };
}
