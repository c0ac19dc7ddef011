/** Reference elementwise addition in f64 (the residual connection). */
import { checkLength } from "./shape.ts";

export function addForward(a: Float64Array, b: Float64Array): Float64Array {
  checkLength(b, a.length, "add b");
  return a.map((value, index) => value + b[index]);
}

/** Both addends receive the upstream gradient unchanged; each gets its own copy. */
export function addBackward(dy: Float64Array): { da: Float64Array; db: Float64Array } {
  return { da: dy.slice(), db: dy.slice() };
}
