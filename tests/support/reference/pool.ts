/** Reference global average pooling in f64: [N, H, W, C] -> [N, C]. */
import { checkLength, nhwcLength, type NhwcShape } from "./shape.ts";

export function globalAvgPoolForward(x: Float64Array, shape: NhwcShape): Float64Array {
  checkLength(x, nhwcLength(shape), "global average pool x");
  const positions = shape.h * shape.w;
  const y = new Float64Array(shape.n * shape.c);
  for (let batch = 0; batch < shape.n; batch++) {
    for (let position = 0; position < positions; position++) {
      for (let channel = 0; channel < shape.c; channel++) {
        y[batch * shape.c + channel] += x[(batch * positions + position) * shape.c + channel];
      }
    }
  }
  return y.map((sum) => sum / positions);
}

/** Every input position of (n, c) receives dy[n, c] / (H·W). `shape` is the input's shape. */
export function globalAvgPoolBackward(dy: Float64Array, shape: NhwcShape): Float64Array {
  checkLength(dy, shape.n * shape.c, "global average pool dy");
  const positions = shape.h * shape.w;
  const dx = new Float64Array(nhwcLength(shape));
  for (let index = 0; index < dx.length; index++) {
    const batch = Math.floor(index / (positions * shape.c));
    dx[index] = dy[batch * shape.c + (index % shape.c)] / positions;
  }
  return dx;
}
