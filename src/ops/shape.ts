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

/** The NHWC dimensions of a rank-4 f32 tensor. */
export function nhwc(
  op: string,
  tensor: TensorDesc,
): { n: number; h: number; w: number; c: number } {
  if (tensor.shape.length !== 4) {
    throw new ShapeError(`${op}: ${tensor.label} has shape [${tensor.shape}], expected NHWC`);
  }
  expectDtype(op, tensor, "f32");
  const [n, h, w, c] = tensor.shape;
  return { n, h, w, c };
}
