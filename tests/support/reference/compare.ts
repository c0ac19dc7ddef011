import { AssertionError } from "node:assert/strict";

/** Largest absolute value in the array (0 for an empty one). */
export function maxAbs(values: ArrayLike<number>): number {
  let largest = 0;
  for (let index = 0; index < values.length; index++) {
    largest = Math.max(largest, Math.abs(values[index]));
  }
  return largest;
}

/**
 * max |actual − expected| divided by max |expected|. Measuring against the largest magnitude
 * rather than element by element keeps near-zero elements (whose own relative error is
 * meaningless after cancellation) from failing an otherwise accurate result.
 */
export function relativeMaxError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) {
    throw new RangeError(`lengths differ: ${actual.length} vs ${expected.length}`);
  }
  let worst = 0;
  for (let index = 0; index < actual.length; index++) {
    const difference = Math.abs(actual[index] - expected[index]);
    // NaN compares false with everything, so turn it into an infinite error explicitly.
    worst = Number.isNaN(difference) ? Infinity : Math.max(worst, difference);
  }
  return worst / Math.max(maxAbs(expected), Number.MIN_VALUE);
}

/** Asserts relativeMaxError(actual, expected) <= tolerance and returns the error measured. */
export function assertAllClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tolerance: number,
  what: string,
): number {
  const error = relativeMaxError(actual, expected);
  if (!(error <= tolerance)) {
    const worstIndex = Array.from(actual, (value, index) => Math.abs(value - expected[index]))
      .reduce((best, difference, index, all) => (difference > all[best] ? index : best), 0);
    throw new AssertionError({
      message: `${what}: relative max error ${error.toExponential(3)} > ${tolerance} ` +
        `(worst at ${worstIndex}: ${actual[worstIndex]} vs ${expected[worstIndex]}, ` +
        `max |expected| ${maxAbs(expected)})`,
    });
  }
  return error;
}
