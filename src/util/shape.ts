/** The number of elements of a tensor of this shape (1 for a scalar's []). */
export function elementCount(shape: readonly number[]): number {
  return shape.reduce((product, size) => product * size, 1);
}
