/** Shape of an NHWC activation: element (n, h, w, c) lives at ((n * H + h) * W + w) * C + c. */
export interface NhwcShape {
  n: number;
  h: number;
  w: number;
  c: number;
}

export function nhwcLength(shape: NhwcShape): number {
  return shape.n * shape.h * shape.w * shape.c;
}

/** Throws when an array does not hold the number of elements its shape says: a wrong shape
 * passed to a plain-loop reference would otherwise read `undefined` and quietly produce NaN. */
export function checkLength(array: ArrayLike<number>, expected: number, what: string): void {
  if (array.length !== expected) {
    throw new RangeError(`${what}: expected ${expected} elements, got ${array.length}`);
  }
}
