/**
 * Reference fully connected layer in f64: y = scale·(x·Wᵀ + b), with W [out, in] as in PyTorch;
 * scale defaults to 1 (nn.Linear), ResNet-9's head uses 0.125.
 */
import { checkLength } from "./shape.ts";

export interface LinearShape {
  /** Batch size: x is [n, inFeatures]. */
  n: number;
  inFeatures: number;
  outFeatures: number;
}

export interface LinearGradients {
  dx: Float64Array;
  dweight: Float64Array;
  dbias: Float64Array;
}

/** Visits every product y[yIndex] += x[xIndex] · weight[weightIndex] of the matrix product. */
function forEachProduct(
  shape: LinearShape,
  visit: (yIndex: number, xIndex: number, weightIndex: number) => void,
): void {
  for (let row = 0; row < shape.n; row++) {
    for (let o = 0; o < shape.outFeatures; o++) {
      for (let i = 0; i < shape.inFeatures; i++) {
        visit(row * shape.outFeatures + o, row * shape.inFeatures + i, o * shape.inFeatures + i);
      }
    }
  }
}

function checkShapes(x: Float64Array, weight: Float64Array, shape: LinearShape): void {
  checkLength(x, shape.n * shape.inFeatures, "linear x");
  checkLength(weight, shape.outFeatures * shape.inFeatures, "linear weight");
}

/** y [n, outFeatures]. */
export function linearForward(
  x: Float64Array,
  weight: Float64Array,
  bias: Float64Array,
  shape: LinearShape,
  scale = 1,
): Float64Array {
  checkShapes(x, weight, shape);
  checkLength(bias, shape.outFeatures, "linear bias");
  const y = new Float64Array(shape.n * shape.outFeatures);
  for (let index = 0; index < y.length; index++) y[index] = bias[index % shape.outFeatures];
  forEachProduct(shape, (yIndex, xIndex, weightIndex) => {
    y[yIndex] += x[xIndex] * weight[weightIndex];
  });
  return scale === 1 ? y : y.map((value) => scale * value);
}

/** dx = scale·dy·W, dW = scale·dyᵀ·x, db = scale·(column sums of dy). */
export function linearBackward(
  x: Float64Array,
  weight: Float64Array,
  dy: Float64Array,
  shape: LinearShape,
  scale = 1,
): LinearGradients {
  checkShapes(x, weight, shape);
  checkLength(dy, shape.n * shape.outFeatures, "linear dy");
  const dx = new Float64Array(x.length);
  const dweight = new Float64Array(weight.length);
  const dbias = new Float64Array(shape.outFeatures);
  for (let index = 0; index < dy.length; index++) dbias[index % shape.outFeatures] += dy[index];
  forEachProduct(shape, (yIndex, xIndex, weightIndex) => {
    dx[xIndex] += dy[yIndex] * weight[weightIndex];
    dweight[weightIndex] += dy[yIndex] * x[xIndex];
  });
  if (scale === 1) return { dx, dweight, dbias };
  // The scaled layer's output is scale times the plain one's, so each gradient is too.
  const scaled = (values: Float64Array) => values.map((value) => scale * value);
  return { dx: scaled(dx), dweight: scaled(dweight), dbias: scaled(dbias) };
}
