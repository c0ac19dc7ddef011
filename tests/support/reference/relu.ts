/** Reference ReLU in f64. */
import { checkLength } from "./shape.ts";

export function reluForward(x: Float64Array): Float64Array {
  return x.map((value) => Math.max(value, 0));
}

/**
 * dx = dy where the forward input x was positive, else 0. At exactly x = 0 the derivative is
 * taken as 0, as PyTorch does (its threshold backward passes gradient only where x > 0).
 */
export function reluBackward(x: Float64Array, dy: Float64Array): Float64Array {
  checkLength(dy, x.length, "relu dy");
  return dy.map((gradient, index) => (x[index] > 0 ? gradient : 0));
}
