/**
 * How a weight gradient's sum over rows (output pixels, or Winograd tiles) splits into ranges,
 * each summed into partial sums of its own that a last pass adds: the rule the direct kernels
 * (conv2d.ts) and the Winograd products (conv2d_winograd.ts) share.
 */

/** Largest scratch for weight-gradient partial sums, whatever the layer. */
const MAX_PARTIAL_BYTES = 32 * 2 ** 20;

/**
 * Rows per range on a CPU adapter, for a sum over rows of `inC` + `outC` channels: every
 * workgroup streams both operands over its range, and lavapipe runs the workgroups in order,
 * those of one range back to back, so ranges whose rows fill about half a core's L2 (512 KiB) are
 * read from memory once, not once per workgroup (2.4x faster on the 64-channel layers,
 * bench/README.md).
 */
export function cpuRangeRows(inC: number, outC: number): number {
  return Math.max(256, 2 ** 19 / ((inC + outC) * 4));
}

/**
 * `rows` in ranges of about `wanted` rows each, a multiple of `step`, and no more ranges than
 * MAX_PARTIAL_BYTES holds partial sums of `partialBytes`: the ranges and the rows of each.
 */
export function splitRanges(
  rows: number,
  wanted: number,
  partialBytes: number,
  step: number,
): { ranges: number; rows: number } {
  const ranges = Math.max(
    1,
    Math.min(Math.ceil(rows / wanted), Math.floor(MAX_PARTIAL_BYTES / partialBytes)),
  );
  const rangeRows = Math.ceil(rows / ranges / step) * step;
  return { ranges: Math.ceil(rows / rangeRows), rows: rangeRows };
}
