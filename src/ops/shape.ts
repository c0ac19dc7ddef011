/** Shape checks shared by the op modules; each failure names the op and the tensor. */
import type { Tensor } from "../gpu/tensor.ts";

export class ShapeError extends Error {
  override name = "ShapeError";
}

export function expectShape(op: string, tensor: Tensor, shape: readonly number[]): void {
  if (tensor.shape.length !== shape.length || tensor.shape.some((size, i) => size !== shape[i])) {
    throw new ShapeError(
      `${op}: ${tensor.label} has shape [${tensor.shape}], expected [${shape}]`,
    );
  }
}

/** The NHWC dimensions of a rank-4 tensor. */
export function nhwc(op: string, tensor: Tensor): { n: number; h: number; w: number; c: number } {
  if (tensor.shape.length !== 4) {
    throw new ShapeError(`${op}: ${tensor.label} has shape [${tensor.shape}], expected NHWC`);
  }
  const [n, h, w, c] = tensor.shape;
  return { n, h, w, c };
}
