/** Conversion between PyTorch's OIHW conv weights and the project's OHWI (see shaders/README.md). */

/**
 * Permutes the axes of a rank-4 tensor: output axis j is input axis `order[j]`, so
 * `permute4(x, [O, I, H, W], [0, 2, 3, 1])` turns OIHW into OHWI.
 */
export function permute4(
  values: ArrayLike<number>,
  shape: readonly number[],
  order: readonly [number, number, number, number],
): Float32Array {
  const strides = [shape[1] * shape[2] * shape[3], shape[2] * shape[3], shape[3], 1];
  const outShape = order.map((axis) => shape[axis]);
  const out = new Float32Array(values.length);
  let index = 0;
  for (let a = 0; a < outShape[0]; a++) {
    for (let b = 0; b < outShape[1]; b++) {
      for (let c = 0; c < outShape[2]; c++) {
        for (let d = 0; d < outShape[3]; d++) {
          out[index++] = values[
            a * strides[order[0]] + b * strides[order[1]] + c * strides[order[2]] +
            d * strides[order[3]]
          ];
        }
      }
    }
  }
  return out;
}

export function oihwToOhwi(values: ArrayLike<number>, oihwShape: readonly number[]): Float32Array {
  return permute4(values, oihwShape, [0, 2, 3, 1]);
}

export function ohwiToOihw(values: ArrayLike<number>, ohwiShape: readonly number[]): Float32Array {
  return permute4(values, ohwiShape, [0, 3, 1, 2]);
}
