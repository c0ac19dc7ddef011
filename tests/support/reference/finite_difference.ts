/**
 * Central finite differences in f64, used to check every reference backward against its own
 * forward. With step h the truncation error is O(h²) and the rounding error O(ε·|L|/h); h = 1e-6
 * balances them at roughly 1e-10 relative for the smooth, well-scaled functions tested here.
 */

export const DEFAULT_STEP = 1e-6;

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`dot: lengths ${a.length} and ${b.length}`);
  let sum = 0;
  for (let index = 0; index < a.length; index++) sum += a[index] * b[index];
  return sum;
}

/**
 * d scalar / d input[j] for every j, by (scalar(x + h·e_j) − scalar(x − h·e_j)) / 2h.
 * `input` is perturbed in place (the scalar function must read it afresh on every call) and is
 * restored exactly before returning.
 */
export function centralDifferenceGradient(
  scalar: () => number,
  input: Float64Array,
  step = DEFAULT_STEP,
): Float64Array {
  return centralDifferenceAt(scalar, input, Array.from(input.keys()), step);
}

/** Like centralDifferenceGradient but only for the listed elements of `input`; the result holds
 * one derivative per listed index, in the same order. For inputs too large to check fully. */
export function centralDifferenceAt(
  scalar: () => number,
  input: Float64Array,
  indices: readonly number[],
  step = DEFAULT_STEP,
): Float64Array {
  return Float64Array.from(indices, (index) => {
    const original = input[index];
    input[index] = original + step;
    const above = scalar();
    input[index] = original - step;
    const below = scalar();
    input[index] = original;
    return (above - below) / (2 * step);
  });
}

/**
 * The gradient of L = sum(forward() * dyProjection) with respect to `input`: exactly what a
 * backward pass given dy = dyProjection must return for that input.
 */
export function projectedGradient(
  forward: () => Float64Array,
  dyProjection: Float64Array,
  input: Float64Array,
  step = DEFAULT_STEP,
): Float64Array {
  return centralDifferenceGradient(() => dot(forward(), dyProjection), input, step);
}
