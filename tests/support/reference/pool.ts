/**
 * Reference pooling in f64: global average pooling [N, H, W, C] -> [N, C]; max pooling with 2x2
 * windows at stride 2, floor mode, [N, H, W, C] -> [N, floor(H/2), floor(W/2), C]; global max
 * pooling [N, H, W, C] -> [N, C]. The max pools' backward sends each output's gradient to the
 * first maximum of its window in row-major order (a strict `>` scan, PyTorch's CPU tie rule).
 * `shape` is always the input's.
 */
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

/** The input offset of element (row, column) of channel c's plane in image n. */
function offsetOf(shape: NhwcShape, n: number, row: number, column: number, c: number): number {
  return ((n * shape.h + row) * shape.w + column) * shape.c + c;
}

/**
 * Every window's first maximum, as input offsets in output order: for max pooling the 2x2 windows
 * at stride 2 (floor mode), for global max pooling the whole (h, w) plane of each (n, c).
 */
function firstMaxima(x: Float64Array, shape: NhwcShape, global: boolean): number[] {
  const [outH, outW] = global ? [1, 1] : [Math.floor(shape.h / 2), Math.floor(shape.w / 2)];
  const [windowH, windowW] = global ? [shape.h, shape.w] : [2, 2];
  const maxima: number[] = [];
  for (let n = 0; n < shape.n; n++) {
    for (let i = 0; i < outH; i++) {
      for (let j = 0; j < outW; j++) {
        for (let c = 0; c < shape.c; c++) {
          let best = offsetOf(shape, n, i * windowH, j * windowW, c);
          for (let a = 0; a < windowH; a++) {
            for (let b = 0; b < windowW; b++) {
              const at = offsetOf(shape, n, i * windowH + a, j * windowW + b, c);
              if (x[at] > x[best]) best = at;
            }
          }
          maxima.push(best);
        }
      }
    }
  }
  return maxima;
}

function maxPoolOutputLength(shape: NhwcShape): number {
  return shape.n * Math.floor(shape.h / 2) * Math.floor(shape.w / 2) * shape.c;
}

/** y[n, i, j, c] = max of x[n, 2i..2i+1, 2j..2j+1, c]; an odd last row or column is dropped. */
export function maxPool2dForward(x: Float64Array, shape: NhwcShape): Float64Array {
  checkLength(x, nhwcLength(shape), "max pool x");
  return Float64Array.from(firstMaxima(x, shape, false), (at) => x[at]);
}

/** dy[n, i, j, c] lands on its window's first maximum; every other element of dx is 0. */
export function maxPool2dBackward(
  x: Float64Array,
  dy: Float64Array,
  shape: NhwcShape,
): Float64Array {
  checkLength(x, nhwcLength(shape), "max pool x");
  checkLength(dy, maxPoolOutputLength(shape), "max pool dy");
  const dx = new Float64Array(nhwcLength(shape));
  firstMaxima(x, shape, false).forEach((at, index) => dx[at] = dy[index]);
  return dx;
}

/** y[n, c] = max over (h, w) of x[n, h, w, c]. */
export function globalMaxPoolForward(x: Float64Array, shape: NhwcShape): Float64Array {
  checkLength(x, nhwcLength(shape), "global max pool x");
  return Float64Array.from(firstMaxima(x, shape, true), (at) => x[at]);
}

/** dy[n, c] lands on the first maximum of plane (n, c) in row-major (h, w) order; 0 elsewhere. */
export function globalMaxPoolBackward(
  x: Float64Array,
  dy: Float64Array,
  shape: NhwcShape,
): Float64Array {
  checkLength(x, nhwcLength(shape), "global max pool x");
  checkLength(dy, shape.n * shape.c, "global max pool dy");
  const dx = new Float64Array(nhwcLength(shape));
  firstMaxima(x, shape, true).forEach((at, index) => dx[at] = dy[index]);
  return dx;
}
