import assert, { rejects, throws } from "node:assert/strict";
import type { Gpu } from "../../src/gpu/device.ts";
import { submitCommands } from "../../src/gpu/dispatch.ts";
import { type Call, callOp, isKernelCall, type KernelCall } from "../../src/gpu/kernel_call.ts";
import { byteSize, hasStorage, type TensorDesc, tensorDesc } from "../../src/gpu/tensor.ts";
import {
  conv2dBackward,
  type Conv2dConfig,
  conv2dForward,
  conv2dOutputShape,
  type Conv2dVariant,
} from "../../src/ops/conv2d.ts";
import { KERNEL_FAMILIES, KernelPolicy, KernelPolicyError } from "../../src/ops/policy.ts";
import { type ActivationDType, ShapeError } from "../../src/ops/shape.ts";
import { Staging } from "../../src/ops/staging.ts";
import { materialize, submitCalls } from "../../src/plan/materialize.ts";
import {
  CONV2D_ODD_CASES,
  type Conv2dCase,
  describeConv2dCase,
  randomInputs,
  referenceShape,
  WINOGRAD_CASES,
} from "../support/conv2d_cases.ts";
import { gradCheck } from "../support/gradcheck.ts";
import {
  activationTensor,
  f32Tensor,
  gpuTest,
  poisonedActivation,
  poisonedTensor,
  readTensor,
} from "../support/gpu.ts";
import { F16_STORAGE, REDUCTION } from "../support/tolerances.ts";
import { assertAllClose } from "../support/reference/compare.ts";
import {
  conv2dBackward as referenceBackward,
  conv2dForward as referenceForward,
} from "../support/reference/conv2d.ts";
import { f32Array, Random } from "../support/reference/random.ts";

const VARIANTS: Conv2dVariant[] = [
  "blocked",
  "blocked_texture",
  "tiled",
  "pipelined64",
  "pipelined128",
];

/**
 * The kernels (src/shaders.ts names) each variant's forward and backward calls run. The texture
 * kernels and the Winograd transforms store y and dx four channels at a time, their `_elements`
 * builds one at a time (`storesElements`).
 */
const VARIANT_KERNELS: Record<Conv2dVariant, readonly string[]> = {
  blocked: ["conv2d_blocked"],
  blocked_texture: ["conv2d_texture", "conv2d_texture_elements"],
  blocked_texture_subgroup: ["conv2d_texture_subgroup", "conv2d_texture_subgroup_elements"],
  tiled: ["conv2d_tiled"],
  pipelined64: ["conv2d_pipelined"],
  pipelined128: ["conv2d_pipelined"],
  // The transforms, and blocked_texture's kernel for the products and the weight gradient.
  winograd: ["conv2d_winograd", "conv2d_winograd_elements", "conv2d_texture"],
};

/**
 * Whether a call of a variant with `_elements` kernels should run one: a texture kernel's forward
 * pass where y's stored channel count is not a multiple of 4, its backward passes where dx's is
 * not, the Winograd output transform where the channels it stores are not. The Winograd products
 * (padded channels) and the other transforms (no activations stored) never do.
 */
function storesElements(call: KernelCall): boolean {
  const { STORED_IN_C, STORED_OUT_C, STORED_CHANNELS } = call.constants;
  switch (call.entryPoint) {
    case "transform_output":
      return STORED_CHANNELS % 4 !== 0;
    case "forward":
      return STORED_OUT_C % 4 !== 0;
    case "backward_input":
    case "backward_weight":
      return STORED_IN_C % 4 !== 0;
    default:
      return false;
  }
}

/** The calls that are not convolutions: the split reduction and blocked_texture's staging. */
const HELPER_ENTRY_POINTS = ["reduce_splits", "to_texture", "to_texture_padded"];

/** The calls that are a pass of the convolution itself: neither copies nor helper kernels. */
function convCalls(calls: readonly Call[]): KernelCall[] {
  return calls.filter((call): call is KernelCall =>
    isKernelCall(call) && !HELPER_ENTRY_POINTS.includes(call.entryPoint)
  );
}

/**
 * Every conv call (all but the helpers) runs one of `variant`'s kernels, and where the variant has
 * `_elements` kernels, the one its stored channel counts call for.
 */
function assertVariant(calls: readonly Call[], variant: Conv2dVariant, what: string): void {
  const stores = VARIANT_KERNELS[variant].some((name) => name.endsWith("_elements"));
  for (const call of convCalls(calls)) {
    assert.ok(
      VARIANT_KERNELS[variant].includes(call.kernel.name),
      `${what}: ${call.label} runs ${call.kernel.name}, not ${variant}'s`,
    );
    if (stores) {
      assert.equal(
        call.kernel.name.endsWith("_elements"),
        storesElements(call),
        `${what}: ${call.label} runs ${call.kernel.name}`,
      );
    }
  }
}

/**
 * Runs forward and backward on the GPU under `policy`, in one submit, with x, y, dy and dx of
 * element type `dtype`; y, dx and dweight start as NaN. Returns the calls too, to check what the
 * policy chose.
 */
async function runGpu(
  gpu: Gpu,
  c: Conv2dCase,
  policy: KernelPolicy,
  inputs: { x: Float64Array; weight: Float64Array },
  dy: Float64Array,
  dtype: ActivationDType = "f32",
) {
  const k = c.config.kernelSize;
  const yShape = conv2dOutputShape([c.n, c.h, c.w, c.cin], c.cout, c.config);
  const x = activationTensor(gpu, "x", [c.n, c.h, c.w, c.cin], inputs.x, dtype);
  const weight = f32Tensor(gpu, "weight", [c.cout, k, k, c.cin], inputs.weight);
  const y = poisonedActivation(gpu, "y", yShape, dtype);
  const dyTensor = activationTensor(gpu, "dy", yShape, dy, dtype);
  const dx = poisonedActivation(gpu, "dx", x.shape, dtype);
  const dweight = poisonedTensor(gpu, "dweight", weight.shape);
  const { config } = c;
  const calls = [
    ...conv2dForward({ x, weight, y }, config, policy),
    ...conv2dBackward({ x, weight, dy: dyTensor, dx, dweight }, config, policy),
  ];
  await submitCalls(gpu, calls);
  const result = {
    calls,
    y: await readTensor(gpu, y),
    grads: { x: await readTensor(gpu, dx), weight: await readTensor(gpu, dweight) },
  };
  for (const tensor of [x, weight, y, dyTensor, dx, dweight]) tensor.buffer.destroy();
  return result;
}

/**
 * The full gradient check of `variant` on case `c` with `dtype` activations: the GPU's forward and
 * gradients against the f64 reference, the reference against finite differences. `builds` checks
 * which builds (f32, or f16 for f16 activations) the variant's calls run.
 */
function gradientCheck(
  variant: Conv2dVariant,
  c: Conv2dCase,
  dtype: ActivationDType,
  builds: (calls: readonly Call[], what: string) => void,
): void {
  const what = `conv2d ${variant} ${describeConv2dCase(c)} ${dtype}`;
  gpuTest(
    `conv2d ${variant}: gradient check on ${describeConv2dCase(c)}, ${dtype}`,
    async (gpu) => {
      const shape = referenceShape(c);
      await gradCheck({
        name: what,
        inputs: randomInputs(c, dtype),
        reference: {
          forward: ({ x, weight }) => referenceForward(x, weight, shape),
          backward: ({ x, weight }, dy) => {
            const { dx, dweight } = referenceBackward(x, weight, dy, shape);
            return { x: dx, weight: dweight };
          },
        },
        tolerance: dtype === "f16" ? F16_STORAGE : REDUCTION,
        activations: dtype,
        gpu: async (inputs, dy) => {
          const policy = KernelPolicy.forcing("conv2d", variant);
          const result = await runGpu(gpu, c, policy, inputs, dy, dtype);
          assertVariant(result.calls, variant, what);
          builds(result.calls, what);
          return result;
        },
      });
    },
  );
}

/** The f16 build of a kernel for f16 activations, the source as written for f32. */
const buildOf = (dtype: ActivationDType) => dtype === "f16" ? "f16" : undefined;

for (const c of CONV2D_ODD_CASES) {
  for (const variant of VARIANTS) {
    for (const dtype of ["f32", "f16"] as const) {
      gradientCheck(variant, c, dtype, (calls, what) => {
        assert.ok(
          convCalls(calls).every((call) => call.kernel.build === buildOf(dtype)),
          `${what}: the ${dtype} build`,
        );
      });
    }
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
  gpuTest(
    `conv2d: GPU against the reference on ResNet-18's ${describeConv2dCase(c)}`,
    async (gpu) => {
      const shape = referenceShape(c);
      const inputs = randomInputs(c);
      const y = referenceForward(inputs.x, inputs.weight, shape);
      const random = new Random(7);
      const dy = f32Array(y.length, () => random.uniform(-1, 1));
      const { dx, dweight } = referenceBackward(inputs.x, inputs.weight, dy, shape);
      for (const variant of [...VARIANTS, ...(isWinogradCase(c) ? ["winograd" as const] : [])]) {
        const policy = KernelPolicy.forcing("conv2d", variant);
        const actual = await runGpu(gpu, c, policy, inputs, dy);
        const what = `conv2d ${variant} ${describeConv2dCase(c)}`;
        assertVariant(actual.calls, variant, what);
        assertAllClose(actual.y, y, REDUCTION, `${what}: forward`);
        assertAllClose(actual.grads.x, dx, REDUCTION, `${what}: dx`);
        assertAllClose(actual.grads.weight, dweight, REDUCTION, `${what}: dweight`);
      }
    },
  );
}

/** Whether the winograd variant runs a case: 3x3, stride 1, padding 1. */
function isWinogradCase(c: Conv2dCase): boolean {
  const { kernelSize, stride, padding } = c.config;
  return kernelSize === 3 && stride === 1 && padding === 1;
}

const SAME: Conv2dConfig = { kernelSize: 3, stride: 1, padding: 1 };

// The winograd variant's odd shapes (tests/support/conv2d_cases.ts): full gradient checks, f32 and
// f16, as the odd cases above. Its error against f64 is larger than the direct kernels' (the
// transforms' constants round in f32; measured up to 5e-6 of the output's scale) and well inside
// REDUCTION.
for (const c of WINOGRAD_CASES) {
  for (const dtype of ["f32", "f16"] as const) {
    gradientCheck("winograd", c, dtype, (calls, what) => {
      // The transforms that store activations are the dtype's build; the others work in f32
      // workspaces whatever the activations are.
      const outputs = calls.filter((call): call is KernelCall =>
        isKernelCall(call) && call.entryPoint === "transform_output"
      );
      assert.equal(outputs.length, 2, `${what}: forward and dx`);
      for (const call of outputs) assert.equal(call.kernel.build, buildOf(dtype), what);
    });
  }
}

// The calls of a Winograd layer: the inputs staged, U, V, M and Z each computed then copied into a
// texture for its reader, the products as one call of 36 each, in workspaces of the padded sizes.
Deno.test("conv2d winograd: the calls, their workspaces and their FLOPs", () => {
  const x = tensorDesc("x", [3, 7, 6, 17]);
  const weight = tensorDesc("weight", [12, 3, 3, 17]);
  const y = tensorDesc("y", [3, 7, 6, 12]);
  const dx = tensorDesc("dx", x.shape);
  const dweight = tensorDesc("dweight", weight.shape);
  const policy = KernelPolicy.forcing("conv2d", "winograd");
  const forward = conv2dForward({ x, weight, y }, SAME, policy);
  const copy = "copy.buffer_to_texture";
  // Staging: an image's transformed tiles, then copied to a texture.
  const tiles = ["conv2d_winograd.transform_tiles", copy];
  // y's 12 channels are stored four at a time, dx's 17 one at a time.
  const transformedConvolution = (output: string) => [
    "conv2d_winograd.transform_weight",
    copy,
    "conv2d_texture.transformed_product",
    copy,
    `${output}.transform_output`,
  ];
  // x has 17 channels: padded to whole texels by to_texture_padded, not copied.
  assert.deepEqual(forward.map(callOp), [
    "to_texture.to_texture_padded",
    ...tiles,
    ...transformedConvolution("conv2d_winograd"),
  ]);
  const backward = conv2dBackward({ x, weight, dy: y, dx, dweight }, SAME, policy);
  // Staged first: dy (copied) and its tiles for dx, x and its tiles, dy's gradient tiles (Z).
  const weightGradient = [
    "conv2d_texture.transformed_weight_product",
    "conv2d_winograd.transform_weight_gradient",
  ];
  assert.deepEqual(backward.map(callOp), [
    copy,
    ...tiles,
    "to_texture.to_texture_padded",
    ...tiles,
    ...tiles,
    ...transformedConvolution("conv2d_winograd_elements"),
    ...weightGradient,
  ]);
  // With the staging of a plan's step shared, the backward pass finds x's texture and tiles
  // where the forward pass left them: the same tensors, not staged again.
  const staging = new Staging();
  const stepForward = conv2dForward({ x, weight, y }, SAME, policy, staging);
  const stepBackward = conv2dBackward({ x, weight, dy: y, dx, dweight }, SAME, policy, staging);
  assert.deepEqual(stepForward.map(callOp), forward.map(callOp));
  assert.deepEqual(stepBackward.map(callOp), [
    copy,
    ...tiles,
    ...tiles,
    ...transformedConvolution("conv2d_winograd_elements"),
    ...weightGradient,
  ]);
  const forwardTiles = stepForward.filter(isKernelCall)
    .find((call) => call.entryPoint === "transformed_product")!.bindings[0].tensor;
  const backwardTiles = stepBackward.filter(isKernelCall)
    .find((call) => call.entryPoint === "transformed_weight_product")!.bindings[0].tensor;
  assert.equal(backwardTiles, forwardTiles);
  const find = (calls: Call[], entryPoint: string) =>
    calls.filter(isKernelCall).find((call) => call.entryPoint === entryPoint)!;
  // 3 images of 2x2 tiles: 12 tiles, padded to a block of 16; channels padded to 20 and 12.
  const product = find(forward, "transformed_product");
  const [imageTexels, weightTexels, m] = product.bindings;
  assert.deepEqual(imageTexels.tensor.shape, [36, 16, 20]);
  assert.deepEqual(weightTexels.tensor.shape, [12, 36, 20]);
  assert.deepEqual(m.tensor.shape, [36, 16, 12]);
  assert.equal(m.tensor.role, "workspace");
  assert.equal(product.flops, 2 * 36 * 16 * 12 * 20);
  // dx's product swaps the channels: 12 output channels reduced, 17 (padded to 20) produced.
  const dxProduct = find(backward, "transformed_product");
  assert.deepEqual(dxProduct.bindings[1].tensor.shape, [20, 36, 12]);
  assert.deepEqual(dxProduct.bindings[2].tensor.shape, [36, 16, 20]);
  // dweight's sums over the tiles: one range here, its partial sums of dU read by the last call,
  // which writes dweight.
  const weightProduct = find(backward, "transformed_weight_product");
  const [vTexels, zTexels, partials] = weightProduct.bindings;
  assert.deepEqual(vTexels.tensor.shape, [36, 16, 20]);
  assert.deepEqual(zTexels.tensor.shape, [36, 16, 12]);
  assert.deepEqual(partials.tensor.shape, [1, 12, 36, 20]);
  assert.equal(weightProduct.flops, 2 * 36 * 16 * 12 * 20);
  assert.deepEqual(
    find(backward, "transform_weight_gradient").bindings.map((b) => [b.tensor, b.access]),
    [[partials.tensor, "read"], [dweight, "write"]],
  );
});

// The Winograd weight gradient sums its tiles in ranges, each into its own partial sums of dU,
// which transform_weight_gradient adds: here 65 images of 16x16 tiles (16640) in two ranges. The
// gradients must be those of the whole sum.
gpuTest("conv2d winograd: a weight gradient summed in ranges", async (gpu) => {
  const c: Conv2dCase = { n: 65, h: 64, w: 64, cin: 4, cout: 4, config: SAME };
  const what = `conv2d winograd ${describeConv2dCase(c)}`;
  const shape = referenceShape(c);
  const inputs = randomInputs(c);
  const random = new Random(13);
  const dyValues = f32Array(c.n * c.h * c.w * c.cout, () => random.uniform(-1, 1));
  const x = f32Tensor(gpu, "x", [c.n, c.h, c.w, c.cin], inputs.x);
  const weight = f32Tensor(gpu, "weight", [c.cout, 3, 3, c.cin], inputs.weight);
  const dy = f32Tensor(gpu, "dy", [c.n, c.h, c.w, c.cout], dyValues);
  const dweight = poisonedTensor(gpu, "dweight", weight.shape);
  const calls = conv2dBackward(
    { x, weight, dy, dweight },
    c.config,
    KernelPolicy.forcing("conv2d", "winograd"),
  );
  const product = calls.filter(isKernelCall).find((call) =>
    call.entryPoint === "transformed_weight_product"
  )!;
  assert.equal(product.constants.SPLITS, 2, what);
  assert.deepEqual(product.bindings[2].tensor.shape, [2, 4, 36, 4], what);
  await submitCalls(gpu, calls);
  const expected = referenceBackward(inputs.x, inputs.weight, dyValues, shape).dweight;
  assertAllClose(await readTensor(gpu, dweight), expected, REDUCTION, `${what}: dweight`);
  for (const tensor of [x, weight, dy, dweight]) tensor.buffer.destroy();
});

Deno.test("conv2d blocked: ROW_BLOCKS on exactly the 3x3 stride-1 layers of whole 16-pixel rows", () => {
  const rowBlocks = (width: number, cin: number, config: Conv2dConfig, variant: Conv2dVariant) => {
    const xShape = [2, 5, width, cin];
    const x = tensorDesc("x", xShape);
    const k = config.kernelSize;
    const weight = tensorDesc("weight", [8, k, k, cin]);
    const y = tensorDesc("y", conv2dOutputShape(xShape, 8, config));
    const policy = KernelPolicy.forcing("conv2d", variant);
    const calls = [
      ...conv2dForward({ x, weight, y }, config, policy),
      ...conv2dBackward(
        { x, weight, dy: y, dx: tensorDesc("dx", xShape), dweight: tensorDesc("dw", weight.shape) },
        config,
        policy,
      ),
    ].filter(isKernelCall).filter((call) => call.constants.ROW_BLOCKS !== undefined);
    // forward, backward_input and backward_weight (which ignores it) share the constants.
    assert.deepEqual(calls.map((call) => call.entryPoint), [
      "forward",
      "backward_input",
      "backward_weight",
    ]);
    const values = new Set(calls.map((call) => call.constants.ROW_BLOCKS));
    assert.equal(values.size, 1);
    return [...values][0] === 1;
  };
  for (const variant of ["blocked", "blocked_texture"] as const) {
    assert.equal(rowBlocks(32, 16, SAME, variant), true, variant);
    assert.equal(rowBlocks(16, 5, SAME, variant), true, `${variant}: padded channels`);
    assert.equal(rowBlocks(24, 16, SAME, variant), false, `${variant}: rows of 1.5 blocks`);
    assert.equal(rowBlocks(32, 16, { kernelSize: 3, stride: 2, padding: 1 }, variant), false);
    assert.equal(rowBlocks(32, 16, { kernelSize: 3, stride: 1, padding: 0 }, variant), false);
    assert.equal(rowBlocks(32, 16, { kernelSize: 1, stride: 1, padding: 0 }, variant), false);
  }
});

// The CPU rules pick winograd for 3x3 stride-1 layers of at least 32 channels in and out, and the
// direct kernels elsewhere; forcing it on a layer it cannot run is the policy's error.
Deno.test("conv2d winograd: where the CPU rules choose it", () => {
  const chosen = (cin: number, cout: number, config: Conv2dConfig) => {
    const xShape = [8, 16, 16, cin];
    const x = tensorDesc("x", xShape);
    const weight = tensorDesc("weight", [cout, config.kernelSize, config.kernelSize, cin]);
    const y = tensorDesc("y", conv2dOutputShape(xShape, cout, config));
    const policy = new KernelPolicy({ family: "cpu" });
    conv2dForward({ x, weight, y }, config, policy);
    return Object.values(policy.choices().choices)[0];
  };
  assert.equal(chosen(64, 64, SAME), "winograd");
  assert.equal(chosen(128, 64, SAME), "winograd");
  assert.equal(chosen(32, 32, SAME), "winograd");
  assert.equal(chosen(32, 16, SAME), "blocked_texture");
  assert.equal(chosen(16, 16, SAME), "blocked_texture");
  assert.equal(chosen(16, 64, SAME), "blocked_texture");
  assert.equal(chosen(3, 64, SAME), "blocked_texture");
  assert.equal(chosen(64, 64, { kernelSize: 3, stride: 2, padding: 1 }), "blocked_texture");
  assert.equal(chosen(64, 64, { kernelSize: 1, stride: 1, padding: 0 }), "blocked_texture");
  // GPUs keep their tiled kernels.
  const x = tensorDesc("x", [8, 16, 16, 64]);
  const weight = tensorDesc("weight", [64, 3, 3, 64]);
  const y = tensorDesc("y", [8, 16, 16, 64]);
  assertVariant(
    conv2dForward({ x, weight, y }, SAME, new KernelPolicy({ family: "gpu" })),
    "tiled",
    "gpu",
  );
  // Forced, it runs 16 channels too, but not a stride-2 layer.
  assertVariant(
    conv2dForward(
      {
        x: tensorDesc("x", [8, 16, 16, 16]),
        weight: tensorDesc("w", [16, 3, 3, 16]),
        y: tensorDesc("y", [8, 16, 16, 16]),
      },
      SAME,
      KernelPolicy.forcing("conv2d", "winograd"),
    ),
    "winograd",
    "forced on 16 channels",
  );
  throws(
    () =>
      conv2dForward(
        { x, weight, y: tensorDesc("y", [8, 8, 8, 64]) },
        { kernelSize: 3, stride: 2, padding: 1 },
        KernelPolicy.forcing("conv2d", "winograd"),
      ),
    (error) =>
      error instanceof KernelPolicyError &&
      /winograd variant runs only 3x3 layers of stride 1 and padding 1/.test(error.message),
  );
});

gpuTest("conv2d: tensors under 4 elements run on the tiled or texture kernels", async (gpu) => {
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
  // Each family's first variant that can run them: blocked_texture (whose textures pad the
  // channels) on CPU adapters, tiled on GPUs.
  const expectedVariant = (family: string) => family === "cpu" ? "blocked_texture" : "tiled";
  // The adapter's default policy picks it, and the results are right.
  const policy = KernelPolicy.forAdapter(gpu);
  const actual = await runGpu(gpu, c, policy, inputs, dy);
  assertVariant(actual.calls, expectedVariant(policy.family), "adapter default");
  const expected = referenceBackward(inputs.x, inputs.weight, dy, shape);
  assertAllClose(actual.y, referenceForward(inputs.x, inputs.weight, shape), REDUCTION, "y");
  assertAllClose(actual.grads.x, expected.dx, REDUCTION, "dx");
  assertAllClose(actual.grads.weight, expected.dweight, REDUCTION, "dweight");
  // So does either family's, whatever this adapter is.
  const x = tensorDesc("x", [1, 1, 1, 3]);
  const weight = tensorDesc("weight", [1, 1, 1, 3]);
  const y = tensorDesc("y", [1, 1, 1, 1]);
  const dyDesc = tensorDesc("dy", [1, 1, 1, 1]);
  const dx = tensorDesc("dx", [1, 1, 1, 3]);
  const dweight = tensorDesc("dweight", [1, 1, 1, 3]);
  for (const family of KERNEL_FAMILIES) {
    const policy = KernelPolicy.forAdapter(gpu, family);
    const variant = expectedVariant(family);
    assertVariant(conv2dForward({ x, weight, y }, c.config, policy), variant, `${family} forward`);
    assertVariant(
      conv2dBackward({ x, weight, dy: dyDesc, dx, dweight }, c.config, policy),
      variant,
      `${family} backward`,
    );
    assert.deepEqual(Object.values(policy.choices().choices), [variant]);
  }
  // Forcing blocked or pipelined (they bind vec4 views) on them is the policy's error, raised
  // when the calls are planned.
  for (const variant of ["blocked", "pipelined64", "pipelined128"] as const) {
    const forced = KernelPolicy.forcing("conv2d", variant);
    throws(
      () => conv2dForward({ x, weight, y }, c.config, forced),
      (error) => error instanceof KernelPolicyError && /at least 4 elements/.test(error.message),
    );
    throws(
      () => conv2dBackward({ x, weight, dy: dyDesc, dx, dweight }, c.config, forced),
      (error) => error instanceof KernelPolicyError && /at least 4 elements/.test(error.message),
    );
    await rejects(runGpu(gpu, c, forced, inputs, dy), KernelPolicyError);
  }
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
    const calls = conv2dBackward(
      { x, weight, dy: dyTensor, dweight },
      c.config,
      KernelPolicy.forcing("conv2d", variant),
    );
    assertVariant(calls, variant, `${variant} stem backward`);
    assert.ok(
      calls.every((call) => !isKernelCall(call) || call.entryPoint !== "backward_input"),
      `${variant}: no backward_input without dx`,
    );
    await submitCalls(gpu, calls);
    assertAllClose(await readTensor(gpu, dweight), expected, REDUCTION, `${variant} dweight`);
  }
});

/** The weight-gradient call and, where the sum is split, the reduction and its partial sums. */
function weightGradientCalls(calls: readonly KernelCall[]) {
  const weight = calls.find((call) => call.entryPoint === "backward_weight");
  if (!weight) throw new Error("no backward_weight call");
  const reduce = calls.find((call) => call.entryPoint === "reduce_splits");
  return { weight, reduce, partial: weight.bindings.at(-1)! };
}

// The weight gradient of a layer with many output pixels is summed in ranges into partial sums
// (a workspace the op names and the allocator gives storage), then reduced; this layer is split
// by every variant that runs it. Its gradients must be those of the unsplit sum.
const SPLIT_CASE: Conv2dCase = {
  n: 16,
  h: 32,
  w: 32,
  cin: 3,
  cout: 8,
  config: { kernelSize: 3, stride: 1, padding: 1 },
};
for (const variant of VARIANTS) {
  gpuTest(`conv2d ${variant}: a split weight gradient goes through a workspace`, async (gpu) => {
    const c = SPLIT_CASE;
    const what = `conv2d ${variant} ${describeConv2dCase(c)}`;
    const shape = referenceShape(c);
    const inputs = randomInputs(c);
    const yShape = conv2dOutputShape([c.n, c.h, c.w, c.cin], c.cout, c.config);
    const pixels = yShape[0] * yShape[1] * yShape[2];
    const random = new Random(5);
    const dyValues = f32Array(pixels * c.cout, () => random.uniform(-1, 1));
    const x = f32Tensor(gpu, "x", [c.n, c.h, c.w, c.cin], inputs.x);
    const weight = f32Tensor(gpu, "weight", [c.cout, 3, 3, c.cin], inputs.weight);
    const dy = f32Tensor(gpu, "dy", yShape, dyValues);
    const dx = poisonedTensor(gpu, "dx", x.shape);
    const dweight = poisonedTensor(gpu, "dweight", weight.shape);
    const calls = conv2dBackward(
      { x, weight, dy, dx, dweight },
      c.config,
      KernelPolicy.forcing("conv2d", variant),
    );
    assertVariant(calls, variant, what);
    // blocked_texture's staging calls come first (tested below).
    const kernelCalls = calls.filter(isKernelCall);
    assert.deepEqual(
      kernelCalls.map((call) => call.entryPoint).filter((name) => !name.startsWith("to_texture")),
      ["backward_input", "backward_weight", "reduce_splits"],
      what,
    );
    const split = weightGradientCalls(kernelCalls);
    const partial: TensorDesc = split.partial.tensor;
    const splits = partial.shape[0];
    // The partial sums: a workspace without storage of [splits, ...weight shape], written by
    // backward_weight, read by the reduction, which writes dweight.
    assert.equal(partial.role, "workspace", what);
    assert.equal(hasStorage(partial), false, what);
    assert.ok(splits > 1, `${what}: ${splits} splits`);
    assert.deepEqual(partial.shape, [splits, ...weight.shape], what);
    assert.equal(split.partial.access, "write", what);
    assert.deepEqual(
      split.reduce!.bindings.map((binding) => [binding.tensor, binding.access]),
      [[partial, "read"], [dweight, "write"]],
      what,
    );
    assert.equal(split.reduce!.constants.SPLITS, splits, what);
    // Its ranges cover the output pixels, none of them empty.
    const rangePixels = split.weight.constants.SPLIT_PIXELS;
    assert.ok(
      rangePixels * splits >= pixels && rangePixels * (splits - 1) < pixels,
      `${what}: ${splits} ranges of ${rangePixels} pixels for ${pixels}`,
    );
    // The allocator gives it storage, as a workspace; nothing else is transient but textures.
    const materialized = await materialize(gpu, calls, { label: "conv2d split" });
    const transients = [...materialized.allocation.transients.keys()];
    assert.deepEqual(transients.filter((tensor) => !tensor.texture), [partial], what);
    const textureBytes = materialized.allocation.slots
      .filter((slot) => slot.texture)
      .reduce((sum, slot) => sum + slot.bytes, 0);
    assert.equal(materialized.allocation.bytes.workspace, byteSize(partial) + textureBytes, what);
    assert.equal(materialized.allocation.bytes.activation, 0, what);
    submitCommands(gpu, materialized.commands);
    materialized.destroy();
    const expected = referenceBackward(inputs.x, inputs.weight, dyValues, shape);
    assertAllClose(await readTensor(gpu, dx), expected.dx, REDUCTION, `${what}: dx`);
    assertAllClose(await readTensor(gpu, dweight), expected.dweight, REDUCTION, `${what}: dweight`);
    for (const tensor of [x, weight, dy, dx, dweight]) tensor.buffer.destroy();
  });
}

// blocked_texture reads its operands from rgba32float textures that to_texture calls fill first,
// each input once (dy serves both backward passes); the textures are transient tensors, placed
// in texture slots that only textures of the same size share. This layer's weight gradient is
// split, as SPLIT_CASE's, with 4 input channels: no padding.
gpuTest("conv2d blocked_texture: inputs staged once as textures", async (gpu) => {
  const c: Conv2dCase = { ...SPLIT_CASE, cin: 4 };
  const what = `conv2d blocked_texture ${describeConv2dCase(c)}`;
  const shape = referenceShape(c);
  const inputs = randomInputs(c);
  const yShape = conv2dOutputShape([c.n, c.h, c.w, c.cin], c.cout, c.config);
  const random = new Random(11);
  const dyValues = f32Array(yShape.reduce((a, b) => a * b), () => random.uniform(-1, 1));
  const x = f32Tensor(gpu, "x", [c.n, c.h, c.w, c.cin], inputs.x);
  const weight = f32Tensor(gpu, "weight", [c.cout, 3, 3, c.cin], inputs.weight);
  const y = poisonedTensor(gpu, "y", yShape);
  const dy = f32Tensor(gpu, "dy", yShape, dyValues);
  const dx = poisonedTensor(gpu, "dx", x.shape);
  const dweight = poisonedTensor(gpu, "dweight", weight.shape);
  const policy = KernelPolicy.forcing("conv2d", "blocked_texture");
  const forward = conv2dForward({ x, weight, y }, c.config, policy);
  const backward = conv2dBackward({ x, weight, dy, dx, dweight }, c.config, policy);
  assertVariant([...forward, ...backward], "blocked_texture", what);
  // f32 operands of whole texels are staged by copy commands, no kernel.
  const copy = "copy.buffer_to_texture";
  assert.deepEqual(forward.map(callOp), [copy, copy, "conv2d_texture.forward"]);
  assert.deepEqual(
    backward.map(callOp),
    [
      copy,
      copy,
      copy,
      "conv2d_texture.backward_input",
      "conv2d_texture.backward_weight",
      "conv2d_reduce.reduce_splits",
    ],
  );
  // Each staging call reads a buffer and writes a texture that a conv call then reads.
  const staged = (calls: Call[]) =>
    calls.filter((call) => !isKernelCall(call)).map(({ bindings: [source, texels] }) => {
      assert.equal(source.access, "read", what);
      assert.equal(texels.access, "storage_texture", what);
      return [source.tensor, texels.tensor];
    });
  const conv = (calls: Call[], entryPoint: string) =>
    calls.filter(isKernelCall).find((call) => call.entryPoint === entryPoint)!.bindings.map((
      b,
    ) => [b.tensor, b.access]);
  const [[, xForward], [, weightForward]] = staged(forward);
  const [[dySource, dyTexels], [weightSource, weightTexels], [xSource, xTexels]] = staged(backward);
  assert.deepEqual([dySource, weightSource, xSource], [dy, weight, x], what);
  assert.deepEqual(conv(forward, "forward"), [
    [xForward, "texture"],
    [weightForward, "texture"],
    [y, "write"],
  ]);
  assert.deepEqual(conv(backward, "backward_input"), [
    [dyTexels, "texture"],
    [weightTexels, "texture"],
    [dx, "write"],
  ]);
  assert.equal(conv(backward, "backward_weight")[1][0], dyTexels, `${what}: dy staged once`);
  assert.deepEqual(conv(backward, "backward_weight")[0], [xTexels, "texture"], what);
  // Five textures of three sizes: backward's reuse forward's slots of their size.
  const materialized = await materialize(gpu, [...forward, ...backward], { label: what });
  const textureSlots = materialized.allocation.slots.filter((slot) => slot.texture);
  assert.deepEqual(
    textureSlots.map((slot) => slot.texture),
    [[8192, 2], [128, 1], [8192, 4]],
    `${what}: x (16384 texels), weight (72) and dy (32768)`,
  );
  submitCommands(gpu, materialized.commands);
  materialized.destroy();
  const expected = referenceBackward(inputs.x, inputs.weight, dyValues, shape);
  const expectedY = referenceForward(inputs.x, inputs.weight, shape);
  assertAllClose(await readTensor(gpu, y), expectedY, REDUCTION, `${what}: y`);
  assertAllClose(await readTensor(gpu, dx), expected.dx, REDUCTION, `${what}: dx`);
  assertAllClose(await readTensor(gpu, dweight), expected.dweight, REDUCTION, `${what}: dweight`);
  for (const tensor of [x, weight, y, dy, dx, dweight]) tensor.buffer.destroy();
});

// Layers blocked_texture cannot run: tensors past 8192 x 8192 texels. Forcing it is the policy's
// error; the CPU rules run blocked instead.
Deno.test("conv2d blocked_texture: layers past the texture size fall back to blocked", () => {
  const config: Conv2dConfig = { kernelSize: 3, stride: 1, padding: 1 };
  const xShape = [1024, 256, 256, 16];
  const x = tensorDesc("x", xShape);
  const weight = tensorDesc("weight", [16, 3, 3, 16]);
  const y = tensorDesc("y", conv2dOutputShape(xShape, 16, config));
  throws(
    () =>
      conv2dForward({ x, weight, y }, config, KernelPolicy.forcing("conv2d", "blocked_texture")),
    (error) => error instanceof KernelPolicyError && /at most 8192² texels/.test(error.message),
  );
  const policy = new KernelPolicy({ family: "cpu" });
  assertVariant(conv2dForward({ x, weight, y }, config, policy), "blocked", `[${xShape}]`);
});

// Channels that are not multiples of 4 (the 3-channel stem) reach blocked_texture through
// to_texture_padded, which writes each row as whole texels, the missing channels zero: the
// gradient checks above run such layers, but on fresh (zeroed) textures. Here the texture holds
// other values first, as a reused texture slot does, and must hold zeros after.
gpuTest("conv2d blocked_texture: staging pads channels with zeros", async (gpu) => {
  const config: Conv2dConfig = { kernelSize: 3, stride: 1, padding: 1 };
  const xShape = [2, 5, 5, 3];
  const random = new Random(5);
  const values = f32Array(2 * 5 * 5 * 3, () => random.uniform(-1, 1));
  const x = f32Tensor(gpu, "x", xShape, values);
  const weight = tensorDesc("weight", [5, 3, 3, 3]);
  const y = tensorDesc("y", conv2dOutputShape(xShape, 5, config));
  const [stage] = conv2dForward(
    { x, weight, y },
    config,
    KernelPolicy.forcing("conv2d", "blocked_texture"),
  );
  assert.ok(isKernelCall(stage));
  assert.equal(stage.entryPoint, "to_texture_padded");
  const [source, target] = stage.bindings;
  assert.equal(source.tensor, x);
  assert.deepEqual(target.tensor.shape, [2, 5, 5, 4]);
  const [width, height] = target.tensor.texture!;
  const texture = gpu.device.createTexture({
    size: [width, height],
    format: "rgba32float",
    usage: GPUTextureUsage.STORAGE_BINDING | GPUTextureUsage.COPY_SRC | GPUTextureUsage.COPY_DST,
  });
  const bytesPerRow = width * 16;
  gpu.device.queue.writeTexture(
    { texture },
    new Float32Array(width * height * 4).fill(7),
    { bytesPerRow },
    [width, height],
  );
  const pipeline = await gpu.pipelines.get(stage.kernel, stage.entryPoint, stage.constants);
  const readback = gpu.device.createBuffer({
    size: bytesPerRow * height,
    usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ,
  });
  const encoder = gpu.device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(
    0,
    gpu.device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: x.buffer } },
        { binding: 1, resource: texture.createView() },
      ],
    }),
  );
  pass.dispatchWorkgroups(...stage.grid);
  pass.end();
  encoder.copyTextureToBuffer({ texture }, { buffer: readback, bytesPerRow }, [width, height]);
  gpu.device.queue.submit([encoder.finish()]);
  await readback.mapAsync(GPUMapMode.READ);
  const texels = new Float32Array(readback.getMappedRange().slice(0));
  readback.unmap();
  const expected = Array.from(
    { length: 50 * 4 },
    (_, i) => i % 4 === 3 ? 0 : values[Math.floor(i / 4) * 3 + (i % 4)],
  );
  assert.deepEqual(Array.from(texels.subarray(0, 200)), expected);
  // Texels past the tensor are never written.
  assert.ok(texels.subarray(200).every((value) => value === 7));
  for (const resource of [texture, readback, x.buffer]) resource.destroy();
});

Deno.test("conv2d: a small weight gradient is not split and needs no workspace", () => {
  // 9 output pixels: a single range for every variant, written straight into dweight; no
  // workspace but blocked_texture's textures.
  const config: Conv2dConfig = { kernelSize: 3, stride: 2, padding: 1 };
  const x = tensorDesc("x", [1, 5, 5, 3]);
  const weight = tensorDesc("weight", [5, 3, 3, 3]);
  const dy = tensorDesc("dy", conv2dOutputShape(x.shape, 5, config));
  const dx = tensorDesc("dx", x.shape);
  const dweight = tensorDesc("dweight", weight.shape);
  for (const variant of VARIANTS) {
    const calls = conv2dBackward(
      { x, weight, dy, dx, dweight },
      config,
      KernelPolicy.forcing("conv2d", variant),
    );
    assert.deepEqual(convCalls(calls).map((call) => call.entryPoint), [
      "backward_input",
      "backward_weight",
    ]);
    const split = weightGradientCalls(calls.filter(isKernelCall));
    assert.equal(split.reduce, undefined, variant);
    assert.equal(split.partial.tensor, dweight, variant);
    assert.ok(
      calls.every((call) =>
        call.bindings.every((binding) =>
          binding.tensor.role === undefined || binding.tensor.texture
        )
      ),
      `${variant}: no workspace`,
    );
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

Deno.test("conv2d: unsupported parameters and mismatched shapes are rejected", () => {
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
  // Planning checks the tensors before any variant is chosen, whichever is forced.
  const config: Conv2dConfig = { kernelSize: 3, stride: 1, padding: 1 };
  const x = tensorDesc("x", [1, 4, 4, 3]);
  const weight = tensorDesc("weight", [8, 3, 3, 3]);
  const wrongWeight = tensorDesc("weight", [8, 1, 1, 3]);
  const wrongY = tensorDesc("y", [1, 4, 4, 4]);
  const dy = tensorDesc("dy", [1, 4, 4, 8]);
  const dweight = tensorDesc("dweight", [8, 3, 3, 3]);
  const wrongDweight = tensorDesc("dweight", [8, 3, 3, 4]);
  const u32X = tensorDesc("x", [1, 4, 4, 3], "u32");
  for (const variant of VARIANTS) {
    const policy = KernelPolicy.forcing("conv2d", variant);
    throws(() => conv2dForward({ x, weight: wrongWeight, y: wrongY }, config, policy), ShapeError);
    throws(() => conv2dForward({ x, weight, y: wrongY }, config, policy), ShapeError);
    throws(() => conv2dForward({ x: u32X, weight, y: dy }, config, policy), ShapeError);
    throws(() => conv2dBackward({ x, weight, dy: wrongY, dweight }, config, policy), ShapeError);
    throws(
      () => conv2dBackward({ x, weight, dy, dx: wrongY, dweight }, config, policy),
      ShapeError,
    );
    throws(
      () => conv2dBackward({ x, weight, dy, dweight: wrongDweight }, config, policy),
      ShapeError,
    );
  }
  // f16 activations: y, dy and dx must be f16 like x, the weight and dweight f32.
  const half = (label: string, shape: number[]) => tensorDesc(label, shape, "f16");
  const x16 = half("x", [1, 4, 4, 3]);
  const y16 = half("y", [1, 4, 4, 8]);
  const policy = KernelPolicy.forcing("conv2d", "tiled");
  assert.equal(conv2dForward({ x: x16, weight, y: y16 }, config, policy).length, 1);
  throws(
    () => conv2dForward({ x: x16, weight, y: dy }, config, policy),
    (error) =>
      error instanceof ShapeError && /y holds f32 elements, expected f16$/.test(error.message),
  );
  throws(
    () => conv2dForward({ x: x16, weight: half("weight", [8, 3, 3, 3]), y: y16 }, config, policy),
    (error) =>
      error instanceof ShapeError && /weight holds f16 elements, expected f32$/.test(error.message),
  );
  throws(
    () => conv2dBackward({ x: x16, weight, dy, dweight }, config, policy),
    (error) =>
      error instanceof ShapeError && /dy holds f32 elements, expected f16$/.test(error.message),
  );
  throws(
    () =>
      conv2dBackward(
        { x: x16, weight, dy: y16, dx: tensorDesc("dx", [1, 4, 4, 3]), dweight },
        config,
        policy,
      ),
    (error) =>
      error instanceof ShapeError && /dx holds f32 elements, expected f16$/.test(error.message),
  );
  throws(
    () =>
      conv2dBackward(
        { x: x16, weight, dy: y16, dweight: half("dweight", [8, 3, 3, 3]) },
        config,
        policy,
      ),
    (error) =>
      error instanceof ShapeError &&
      /dweight holds f16 elements, expected f32$/.test(error.message),
  );
  // The old check that a workspace smaller than conv2dWorkspaceSize was refused has no object
  // now (the op names its own workspace); "a split weight gradient goes through a workspace"
  // checks the split and its workspace instead.
});
