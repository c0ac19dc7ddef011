import { rejects, throws } from "node:assert/strict";
import { submitDispatches } from "../../src/gpu/dispatch.ts";
import type { Gpu } from "../../src/gpu/device.ts";
import {
  conv2dBackward,
  type Conv2dConfig,
  conv2dForward,
  conv2dOutputShape,
  type Conv2dVariant,
  conv2dWorkspaceSize,
} from "../../src/ops/conv2d.ts";
import { ShapeError } from "../../src/ops/shape.ts";
import { gradCheck } from "../support/gradcheck.ts";
import { f32Tensor, gpuTest, poisonedTensor, readTensor } from "../support/gpu.ts";
import { REDUCTION } from "../support/tolerances.ts";
import { assertAllClose } from "../support/reference/compare.ts";
import {
  conv2dBackward as referenceBackward,
  conv2dForward as referenceForward,
  type Conv2dShape,
} from "../support/reference/conv2d.ts";
import { f32Array, Random } from "../support/reference/random.ts";

const VARIANTS: Conv2dVariant[] = ["blocked", "tiled"];

interface Conv2dCase {
  n: number;
  h: number;
  w: number;
  cin: number;
  cout: number;
  config: Conv2dConfig;
}

function describe(c: Conv2dCase): string {
  const { kernelSize: k, stride: s, padding: p } = c.config;
  return `batch ${c.n}, ${c.h}x${c.w}x${c.cin} -> ${c.cout}, ${k}x${k} stride ${s} padding ${p}`;
}

function referenceShape(c: Conv2dCase): Conv2dShape {
  const { kernelSize: k, stride, padding: pad } = c.config;
  return { n: c.n, h: c.h, w: c.w, cin: c.cin, cout: c.cout, k, stride, pad };
}

/** Random x and He-scaled weights, f32-representable. */
function randomInputs(c: Conv2dCase) {
  const random = new Random(c.n * 1000 + c.h * 100 + c.cin * 10 + c.cout);
  const k = c.config.kernelSize;
  const bound = Math.sqrt(6 / (k * k * c.cin));
  return {
    x: f32Array(c.n * c.h * c.w * c.cin, () => random.uniform(-1, 1)),
    weight: f32Array(c.cout * k * k * c.cin, () => random.uniform(-bound, bound)),
  };
}

/** Runs forward and backward of one variant on the GPU; dx and dweight start as NaN. */
async function runGpu(
  gpu: Gpu,
  c: Conv2dCase,
  variant: Conv2dVariant | undefined,
  inputs: { x: Float64Array; weight: Float64Array },
  dy: Float64Array,
) {
  const k = c.config.kernelSize;
  const yShape = conv2dOutputShape([c.n, c.h, c.w, c.cin], c.cout, c.config);
  const x = f32Tensor(gpu, "x", [c.n, c.h, c.w, c.cin], inputs.x);
  const weight = f32Tensor(gpu, "weight", [c.cout, k, k, c.cin], inputs.weight);
  const y = poisonedTensor(gpu, "y", yShape);
  const dyTensor = f32Tensor(gpu, "dy", yShape, dy);
  const dx = poisonedTensor(gpu, "dx", x.shape as number[]);
  const dweight = poisonedTensor(gpu, "dweight", weight.shape as number[]);
  const workspaceBytes = conv2dWorkspaceSize(gpu, x.shape, c.cout, c.config, variant);
  const workspace = poisonedTensor(gpu, "workspace", [Math.max(1, workspaceBytes / 4)]);
  const { config } = c;
  submitDispatches(gpu, [
    ...await conv2dForward(gpu, { x, weight, y, config, variant }),
    ...await conv2dBackward(gpu, {
      x,
      weight,
      dy: dyTensor,
      dx,
      dweight,
      workspace,
      config,
      variant,
    }),
  ]);
  return {
    y: await readTensor(gpu, y),
    grads: { x: await readTensor(gpu, dx), weight: await readTensor(gpu, dweight) },
  };
}

// Odd shapes: batch 1 and 3, 5x5 and 7x7 (stride 2 included), channels 3, 5 and 17 (the
// scalar path, and blocks overhanging the last channel), 8 and 20 (the vec4 path with a partial
// block), both kernel sizes. Every variant gets the harness's full check, finite differences
// of the reference included.
const ODD_CASES: Conv2dCase[] = [
  { n: 1, h: 5, w: 5, cin: 3, cout: 5, config: { kernelSize: 3, stride: 2, padding: 1 } },
  { n: 3, h: 7, w: 7, cin: 5, cout: 17, config: { kernelSize: 3, stride: 1, padding: 1 } },
  { n: 1, h: 7, w: 7, cin: 17, cout: 3, config: { kernelSize: 3, stride: 2, padding: 1 } },
  { n: 3, h: 7, w: 5, cin: 17, cout: 5, config: { kernelSize: 1, stride: 2, padding: 0 } },
  { n: 3, h: 5, w: 5, cin: 3, cout: 17, config: { kernelSize: 1, stride: 1, padding: 0 } },
  { n: 3, h: 5, w: 7, cin: 8, cout: 20, config: { kernelSize: 3, stride: 2, padding: 1 } },
  { n: 1, h: 7, w: 7, cin: 20, cout: 8, config: { kernelSize: 3, stride: 1, padding: 0 } },
];

for (const c of ODD_CASES) {
  for (const variant of VARIANTS) {
    gpuTest(`conv2d ${variant}: gradient check on ${describe(c)}`, async (gpu) => {
      const shape = referenceShape(c);
      await gradCheck({
        name: `conv2d ${variant} ${describe(c)}`,
        inputs: randomInputs(c),
        reference: {
          forward: ({ x, weight }) => referenceForward(x, weight, shape),
          backward: ({ x, weight }, dy) => {
            const { dx, dweight } = referenceBackward(x, weight, dy, shape);
            return { x: dx, weight: dweight };
          },
        },
        tolerance: REDUCTION,
        gpu: (inputs, dy) => runGpu(gpu, c, variant, inputs, dy),
      });
    });
  }
}

// ResNet-18's own layer shapes at batch 2. Finite differences on every element would take
// minutes here (two reference forwards per element), and these shapes add nothing the odd ones
// do not prove about the reference; so the GPU is compared with the reference only.
const RESNET_CASES: Conv2dCase[] = [
  { n: 2, h: 32, w: 32, cin: 3, cout: 64, config: { kernelSize: 3, stride: 1, padding: 1 } },
  { n: 2, h: 32, w: 32, cin: 64, cout: 64, config: { kernelSize: 3, stride: 1, padding: 1 } },
  { n: 2, h: 32, w: 32, cin: 64, cout: 128, config: { kernelSize: 3, stride: 2, padding: 1 } },
  { n: 2, h: 32, w: 32, cin: 64, cout: 128, config: { kernelSize: 1, stride: 2, padding: 0 } },
  { n: 2, h: 16, w: 16, cin: 128, cout: 256, config: { kernelSize: 3, stride: 2, padding: 1 } },
  { n: 2, h: 8, w: 8, cin: 256, cout: 512, config: { kernelSize: 3, stride: 2, padding: 1 } },
  { n: 2, h: 4, w: 4, cin: 512, cout: 512, config: { kernelSize: 3, stride: 1, padding: 1 } },
];

for (const c of RESNET_CASES) {
  gpuTest(`conv2d: GPU against the reference on ResNet-18's ${describe(c)}`, async (gpu) => {
    const shape = referenceShape(c);
    const inputs = randomInputs(c);
    const y = referenceForward(inputs.x, inputs.weight, shape);
    const random = new Random(7);
    const dy = f32Array(y.length, () => random.uniform(-1, 1));
    const { dx, dweight } = referenceBackward(inputs.x, inputs.weight, dy, shape);
    for (const variant of VARIANTS) {
      const actual = await runGpu(gpu, c, variant, inputs, dy);
      const what = `conv2d ${variant} ${describe(c)}`;
      assertAllClose(actual.y, y, REDUCTION, `${what}: forward`);
      assertAllClose(actual.grads.x, dx, REDUCTION, `${what}: dx`);
      assertAllClose(actual.grads.weight, dweight, REDUCTION, `${what}: dweight`);
    }
  });
}

gpuTest("conv2d: tensors under 4 elements run on the tiled kernels", async (gpu) => {
  const c: Conv2dCase = {
    n: 1,
    h: 1,
    w: 1,
    cin: 3,
    cout: 1,
    config: { kernelSize: 1, stride: 1, padding: 0 },
  };
  const shape = referenceShape(c);
  const inputs = randomInputs(c);
  const dy = Float64Array.of(0.5);
  const actual = await runGpu(gpu, c, undefined, inputs, dy);
  const expected = referenceBackward(inputs.x, inputs.weight, dy, shape);
  assertAllClose(actual.y, referenceForward(inputs.x, inputs.weight, shape), REDUCTION, "y");
  assertAllClose(actual.grads.x, expected.dx, REDUCTION, "dx");
  assertAllClose(actual.grads.weight, expected.dweight, REDUCTION, "dweight");
  await rejects(runGpu(gpu, c, "blocked", inputs, dy), RangeError);
});

gpuTest("conv2d: the stem's backward without dx", async (gpu) => {
  const c: Conv2dCase = {
    n: 3,
    h: 5,
    w: 7,
    cin: 3,
    cout: 8,
    config: { kernelSize: 3, stride: 1, padding: 1 },
  };
  const shape = referenceShape(c);
  const inputs = randomInputs(c);
  const random = new Random(3);
  const dy = f32Array(c.n * c.h * c.w * c.cout, () => random.uniform(-1, 1));
  const expected = referenceBackward(inputs.x, inputs.weight, dy, shape).dweight;
  for (const variant of VARIANTS) {
    const x = f32Tensor(gpu, "x", [c.n, c.h, c.w, c.cin], inputs.x);
    const weight = f32Tensor(gpu, "weight", [c.cout, 3, 3, c.cin], inputs.weight);
    const dyTensor = f32Tensor(gpu, "dy", [c.n, c.h, c.w, c.cout], dy);
    const dweight = poisonedTensor(gpu, "dweight", [c.cout, 3, 3, c.cin]);
    const bytes = conv2dWorkspaceSize(gpu, x.shape, c.cout, c.config, variant);
    const workspace = poisonedTensor(gpu, "workspace", [Math.max(1, bytes / 4)]);
    const dispatches = await conv2dBackward(gpu, {
      x,
      weight,
      dy: dyTensor,
      dweight,
      workspace,
      config: c.config,
      variant,
    });
    submitDispatches(gpu, dispatches);
    assertAllClose(await readTensor(gpu, dweight), expected, REDUCTION, `${variant} dweight`);
  }
});

Deno.test("conv2d: output shapes", () => {
  const shape = (input: number[], cout: number, config: Conv2dConfig) =>
    conv2dOutputShape(input, cout, config).join("x");
  const same = { kernelSize: 3, stride: 1, padding: 1 } as const;
  const down = { kernelSize: 3, stride: 2, padding: 1 } as const;
  const shortcut = { kernelSize: 1, stride: 2, padding: 0 } as const;
  if (shape([128, 32, 32, 3], 64, same) !== "128x32x32x64") throw new Error("stem");
  if (shape([128, 32, 32, 64], 128, down) !== "128x16x16x128") throw new Error("3x3 stride 2");
  if (shape([128, 32, 32, 64], 128, shortcut) !== "128x16x16x128") throw new Error("1x1 s2");
  if (shape([1, 7, 7, 5], 3, down) !== "1x4x4x3") throw new Error("odd size, stride 2");
});

gpuTest("conv2d: unsupported parameters and mismatched shapes are rejected", async (gpu) => {
  const bad = (config: object) => config as Conv2dConfig;
  throws(
    () => conv2dOutputShape([1, 8, 8, 3], 4, bad({ kernelSize: 5, stride: 1, padding: 1 })),
    RangeError,
  );
  throws(
    () => conv2dOutputShape([1, 8, 8, 3], 4, bad({ kernelSize: 3, stride: 3, padding: 1 })),
    RangeError,
  );
  throws(
    () => conv2dOutputShape([1, 8, 8, 3], 4, bad({ kernelSize: 3, stride: 1, padding: 2 })),
    RangeError,
  );
  throws(
    () => conv2dOutputShape([8, 8, 3], 4, { kernelSize: 3, stride: 1, padding: 1 }),
    ShapeError,
  );
  throws(
    () => conv2dOutputShape([1, 2, 2, 3], 4, { kernelSize: 3, stride: 1, padding: 0 }),
    ShapeError,
  );
  const config: Conv2dConfig = { kernelSize: 3, stride: 1, padding: 1 };
  const x = poisonedTensor(gpu, "x", [1, 4, 4, 3]);
  const weight = poisonedTensor(gpu, "weight", [8, 3, 3, 3]);
  const wrongWeight = poisonedTensor(gpu, "weight", [8, 1, 1, 3]);
  const wrongY = poisonedTensor(gpu, "y", [1, 4, 4, 4]);
  await rejects(conv2dForward(gpu, { x, weight: wrongWeight, y: wrongY, config }), ShapeError);
  await rejects(conv2dForward(gpu, { x, weight, y: wrongY, config }), ShapeError);
  const dy = poisonedTensor(gpu, "dy", [1, 4, 4, 8]);
  const dweight = poisonedTensor(gpu, "dweight", [8, 3, 3, 3]);
  const workspace = poisonedTensor(gpu, "workspace", [1]);
  await rejects(
    conv2dBackward(gpu, { x, weight, dy: wrongY, dweight, workspace, config }),
    ShapeError,
  );
  await rejects(
    conv2dBackward(gpu, { x, weight, dy, dx: wrongY, dweight, workspace, config }),
    ShapeError,
  );
  // A workspace smaller than conv2dWorkspaceSize asks for.
  const big = [16, 32, 32, 3];
  const needed = conv2dWorkspaceSize(gpu, big, 8, config, "blocked");
  if (needed === 0) throw new Error(`[${big}] was meant to split its weight gradient`);
  await rejects(
    conv2dBackward(gpu, {
      x: poisonedTensor(gpu, "x", big),
      weight,
      dy: poisonedTensor(gpu, "dy", [16, 32, 32, 8]),
      dweight,
      workspace: poisonedTensor(gpu, "workspace", [needed / 4 - 1]),
      config,
      variant: "blocked",
    }),
    RangeError,
  );
});
