/**
 * The convolution shapes and inputs of the gradient checks, shared by tests/ops/conv2d_test.ts
 * (Deno) and tests/browser/conv2d_subgroup_test.ts (the variant that needs a browser's subgroups,
 * and the Winograd variant through Chromium's WGSL compiler).
 */
import type { Conv2dConfig } from "../../src/ops/conv2d.ts";
import type { ActivationDType } from "../../src/ops/shape.ts";
import { roundTo } from "./gpu.ts";
import type { Conv2dShape } from "./reference/conv2d.ts";
import { f32Array, Random } from "./reference/random.ts";

export interface Conv2dCase {
  n: number;
  h: number;
  w: number;
  cin: number;
  cout: number;
  config: Conv2dConfig;
}

export function describeConv2dCase(c: Conv2dCase): string {
  const { kernelSize: k, stride: s, padding: p } = c.config;
  return `batch ${c.n}, ${c.h}x${c.w}x${c.cin} -> ${c.cout}, ${k}x${k} stride ${s} padding ${p}`;
}

export function referenceShape(c: Conv2dCase): Conv2dShape {
  const { kernelSize: k, stride, padding: pad } = c.config;
  return { n: c.n, h: c.h, w: c.w, cin: c.cin, cout: c.cout, k, stride, pad };
}

/**
 * Random x and He-scaled weights, f32-representable; x rounded to `dtype`, the activations'
 * element type (weights are f32 either way), so the reference sees what the GPU holds.
 */
export function randomInputs(c: Conv2dCase, dtype: ActivationDType = "f32") {
  const random = new Random(c.n * 1000 + c.h * 100 + c.cin * 10 + c.cout);
  const k = c.config.kernelSize;
  const bound = Math.sqrt(6 / (k * k * c.cin));
  return {
    x: roundTo(f32Array(c.n * c.h * c.w * c.cin, () => random.uniform(-1, 1)), dtype),
    weight: f32Array(c.cout * k * k * c.cin, () => random.uniform(-bound, bound)),
  };
}

// Odd shapes: batch 1 and 3, 5x5 and 7x7 (stride 2 included), channels 3, 5 and 17 (the
// scalar path, and blocks overhanging the last channel), 8, 12 and 20 (the vec4 path with a
// partial block), both kernel sizes, 1x1 stride 1 on both paths (pipelined's plain product),
// and 3x3 stride-1 layers with rows of two 16-pixel blocks (the blocked kernels' ROW_BLOCKS path:
// padding on the left of one block and the right of the other, and on the top and bottom rows),
// storing y and dx one channel at a time (5 -> 17) and four at a time (8 -> 12).
// Every variant gets the harness's full check, finite differences of the reference included, on
// f32 and on f16 activations (x, y, dy, dx; the f16 build of the kernels), where the GPU rounds y
// and dx to f16 once and dweight not at all.
export const CONV2D_ODD_CASES: Conv2dCase[] = [
  { n: 1, h: 5, w: 5, cin: 3, cout: 5, config: { kernelSize: 3, stride: 2, padding: 1 } },
  { n: 3, h: 7, w: 7, cin: 5, cout: 17, config: { kernelSize: 3, stride: 1, padding: 1 } },
  { n: 1, h: 7, w: 7, cin: 17, cout: 3, config: { kernelSize: 3, stride: 2, padding: 1 } },
  { n: 3, h: 7, w: 5, cin: 17, cout: 5, config: { kernelSize: 1, stride: 2, padding: 0 } },
  { n: 3, h: 5, w: 5, cin: 3, cout: 17, config: { kernelSize: 1, stride: 1, padding: 0 } },
  { n: 3, h: 5, w: 7, cin: 8, cout: 20, config: { kernelSize: 3, stride: 2, padding: 1 } },
  { n: 1, h: 7, w: 7, cin: 20, cout: 8, config: { kernelSize: 3, stride: 1, padding: 0 } },
  { n: 1, h: 5, w: 7, cin: 12, cout: 8, config: { kernelSize: 1, stride: 1, padding: 0 } },
  { n: 2, h: 3, w: 32, cin: 5, cout: 17, config: { kernelSize: 3, stride: 1, padding: 1 } },
  { n: 1, h: 2, w: 32, cin: 8, cout: 12, config: { kernelSize: 3, stride: 1, padding: 1 } },
];

const SAME: Conv2dConfig = { kernelSize: 3, stride: 1, padding: 1 };

// The winograd variant's own odd shapes (it runs only 3x3 layers of stride 1 and padding 1): batch
// 1 and 3, images that are not whole 4x4 tiles (5x5, 7x6, 1x2, 9x9) or are (4x4), channels that
// are not whole texels (3, 5, 17) and tiles that are not whole blocks of 16.
export const WINOGRAD_CASES: Conv2dCase[] = [
  { n: 1, h: 5, w: 5, cin: 3, cout: 5, config: SAME },
  { n: 3, h: 7, w: 6, cin: 17, cout: 12, config: SAME },
  { n: 2, h: 1, w: 2, cin: 5, cout: 3, config: SAME },
  { n: 1, h: 4, w: 4, cin: 12, cout: 8, config: SAME },
  { n: 2, h: 9, w: 9, cin: 8, cout: 20, config: SAME },
];
