/**
 * Reference 2-D convolution in f64: NHWC activations, OHWI weights, no bias, zero padding.
 * Written as plain loops over the definition, for clarity rather than speed.
 */
import { checkLength } from "./shape.ts";

export interface Conv2dShape {
  /** Batch size. */
  n: number;
  /** Input height and width. */
  h: number;
  w: number;
  /** Input and output channels. */
  cin: number;
  cout: number;
  /** Square kernel size. */
  k: number;
  stride: number;
  /** Zero padding added on every side. */
  pad: number;
}

export interface Conv2dGradients {
  dx: Float64Array;
  dweight: Float64Array;
}

/** OH = floor((H + 2·pad − K) / stride) + 1, and likewise for the width. */
export function conv2dOutputSize(shape: Conv2dShape): { oh: number; ow: number } {
  const size = (extent: number) =>
    Math.floor((extent + 2 * shape.pad - shape.k) / shape.stride) + 1;
  const oh = size(shape.h);
  const ow = size(shape.w);
  if (oh < 1 || ow < 1) throw new RangeError(`conv2d: empty output for ${JSON.stringify(shape)}`);
  return { oh, ow };
}

/**
 * Visits every product y[yIndex] += x[xIndex] · weight[weightIndex] that makes up the
 * convolution; taps that fall in the zero padding contribute nothing and are skipped. Forward
 * and both backward products are sums over exactly this set, so they share it instead of each
 * repeating the index arithmetic.
 */
function forEachTap(
  shape: Conv2dShape,
  visit: (yIndex: number, xIndex: number, weightIndex: number) => void,
): void {
  const { n, h, w, cin, cout, k, stride, pad } = shape;
  const { oh, ow } = conv2dOutputSize(shape);
  for (let batch = 0; batch < n; batch++) {
    for (let outY = 0; outY < oh; outY++) {
      for (let outX = 0; outX < ow; outX++) {
        for (let o = 0; o < cout; o++) {
          const yIndex = ((batch * oh + outY) * ow + outX) * cout + o;
          for (let kh = 0; kh < k; kh++) {
            const inY = outY * stride - pad + kh;
            if (inY < 0 || inY >= h) continue;
            for (let kw = 0; kw < k; kw++) {
              const inX = outX * stride - pad + kw;
              if (inX < 0 || inX >= w) continue;
              for (let i = 0; i < cin; i++) {
                const xIndex = ((batch * h + inY) * w + inX) * cin + i;
                const weightIndex = ((o * k + kh) * k + kw) * cin + i;
                visit(yIndex, xIndex, weightIndex);
              }
            }
          }
        }
      }
    }
  }
}

function checkShapes(x: Float64Array, weight: Float64Array, shape: Conv2dShape): void {
  checkLength(x, shape.n * shape.h * shape.w * shape.cin, "conv2d x");
  checkLength(weight, shape.cout * shape.k * shape.k * shape.cin, "conv2d weight");
}

/** y [N, OH, OW, Cout] from x [N, H, W, Cin] and weight [Cout, K, K, Cin]. */
export function conv2dForward(
  x: Float64Array,
  weight: Float64Array,
  shape: Conv2dShape,
): Float64Array {
  checkShapes(x, weight, shape);
  const { oh, ow } = conv2dOutputSize(shape);
  const y = new Float64Array(shape.n * oh * ow * shape.cout);
  forEachTap(shape, (yIndex, xIndex, weightIndex) => {
    y[yIndex] += x[xIndex] * weight[weightIndex];
  });
  return y;
}

/** dx and dweight for the upstream gradient dy [N, OH, OW, Cout]. */
export function conv2dBackward(
  x: Float64Array,
  weight: Float64Array,
  dy: Float64Array,
  shape: Conv2dShape,
): Conv2dGradients {
  checkShapes(x, weight, shape);
  const { oh, ow } = conv2dOutputSize(shape);
  checkLength(dy, shape.n * oh * ow * shape.cout, "conv2d dy");
  const dx = new Float64Array(x.length);
  const dweight = new Float64Array(weight.length);
  forEachTap(shape, (yIndex, xIndex, weightIndex) => {
    dx[xIndex] += dy[yIndex] * weight[weightIndex];
    dweight[weightIndex] += dy[yIndex] * x[xIndex];
  });
  return { dx, dweight };
}
