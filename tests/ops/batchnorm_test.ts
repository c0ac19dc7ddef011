import assert from "node:assert/strict";
import { readBuffer, writeBuffer } from "../../src/gpu/buffer.ts";
import type { Gpu } from "../../src/gpu/device.ts";
import { submitCommands } from "../../src/gpu/dispatch.ts";
import { type Call, isKernelCall } from "../../src/gpu/kernel_call.ts";
import { byteSize, type Tensor, type TensorDesc, tensorDesc } from "../../src/gpu/tensor.ts";
import { addForward } from "../../src/ops/add.ts";
import {
  BATCH_NORM_VARIANTS,
  type BatchNormActivation,
  batchNormBackward,
  batchNormEvalForward,
  type BatchNormParams,
  type BatchNormSaved,
  batchNormTrainForward,
  type BatchNormVariant,
  planBatchNorm,
} from "../../src/ops/batchnorm.ts";
import { KernelPolicy } from "../../src/ops/policy.ts";
import { reluBackward, reluForward } from "../../src/ops/relu.ts";
import { materialize, submitCalls } from "../../src/plan/materialize.ts";
import { elementCount } from "../../src/util/shape.ts";
import { type Arrays, gradCheck } from "../support/gradcheck.ts";
import {
  activationTensor,
  f32Tensor,
  gpuTest,
  poisonedActivation,
  poisonedTensor,
  readTensor,
  roundTo,
  u32Tensor,
} from "../support/gpu.ts";
import { ELEMENTWISE, F16_STORAGE, REDUCTION } from "../support/tolerances.ts";
import type { ActivationDType } from "../../src/ops/shape.ts";
import {
  addBackward as referenceAddBackward,
  addForward as referenceAdd,
} from "../support/reference/add.ts";
import {
  batchNormEvalForward as referenceEvalForward,
  batchNormTrainBackward as referenceTrainBackward,
  batchNormTrainForward as referenceTrainForward,
  type BatchNormTrainResult,
} from "../support/reference/batchnorm.ts";
import { assertAllClose, relativeMaxError } from "../support/reference/compare.ts";
import { f32Array, Random } from "../support/reference/random.ts";
import {
  reluBackward as referenceReluBackward,
  reluForward as referenceRelu,
} from "../support/reference/relu.ts";
import type { NhwcShape } from "../support/reference/shape.ts";

type Shape = [number, number, number, number];

/** The three forms the op takes in a ResNet: BN, BN + ReLU, BN + residual add + ReLU. */
type Form = "bn" | "bn+relu" | "bn+add+relu";
const FORMS: Form[] = ["bn", "bn+relu", "bn+add+relu"];

const activationOf = (form: Form): BatchNormActivation => form === "bn" ? "none" : "relu";
const hasResidual = (form: Form): boolean => form === "bn+add+relu";
const nhwcOf = ([n, h, w, c]: Shape): NhwcShape => ({ n, h, w, c });
const count = elementCount;
/** The policy that runs `variant` for every batch norm, as each test asks. */
const forcing = (variant: BatchNormVariant): KernelPolicy =>
  KernelPolicy.forcing("batchnorm", variant);

interface Running {
  runningMean: Float64Array;
  runningVar: Float64Array;
}

function randomRunning(random: Random, channels: number): Running {
  return {
    runningMean: f32Array(channels, () => random.uniform(-1, 1)),
    runningVar: f32Array(channels, () => random.uniform(0.5, 2)),
  };
}

/**
 * x, gamma, beta and (for the residual form) residual, f32-representable; the activations (x,
 * residual) representable in `dtype`, so the reference sees what an f16 tensor holds.
 */
function randomInputs(
  random: Random,
  shape: Shape,
  form: Form,
  mean = 0,
  dtype: ActivationDType = "f32",
): Arrays {
  const inputs: Arrays = {
    x: roundTo(f32Array(count(shape), () => mean + random.uniform(-2, 2)), dtype),
    gamma: f32Array(shape[3], () => random.uniform(0.5, 1.5)),
    beta: f32Array(shape[3], () => random.uniform(-0.5, 0.5)),
  };
  if (hasResidual(form)) {
    inputs.residual = roundTo(f32Array(count(shape), () => random.uniform(-1, 1)), dtype);
  }
  return inputs;
}

// ---- The f64 reference of each form, composed of the colleagues' reference ops ----------------

interface ReferenceForward {
  bn: BatchNormTrainResult;
  /** Before the ReLU. */
  preActivation: Float64Array;
  y: Float64Array;
}

const affineOf = (inputs: Arrays) => ({ gamma: inputs.gamma, beta: inputs.beta });

function referenceForward(inputs: Arrays, running: Running, shape: Shape, form: Form) {
  const bn = referenceTrainForward(inputs.x, affineOf(inputs), running, nhwcOf(shape));
  const preActivation = hasResidual(form) ? referenceAdd(bn.y, inputs.residual) : bn.y;
  const y = activationOf(form) === "relu" ? referenceRelu(preActivation) : preActivation;
  return { bn, preActivation, y } satisfies ReferenceForward;
}

/**
 * Gradients of every input for upstream dy. `mask`, if given, replaces the ReLU's own decision
 * (pre-activation > 0): see compareWithReference.
 */
function referenceBackward(
  inputs: Arrays,
  running: Running,
  shape: Shape,
  form: Form,
  dy: Float64Array,
  mask?: ArrayLike<boolean>,
): Record<string, Float64Array> {
  const { bn, preActivation } = referenceForward(inputs, running, shape, form);
  let dPre = dy;
  if (activationOf(form) === "relu") {
    dPre = mask
      ? dy.map((gradient, index) => mask[index] ? gradient : 0)
      : referenceReluBackward(preActivation, dy);
  }
  const { da: dBn, db: dResidual } = referenceAddBackward(dPre);
  const { dx, dgamma, dbeta } = referenceTrainBackward(
    inputs.x,
    dBn,
    affineOf(inputs),
    bn,
    nhwcOf(shape),
  );
  const gradients: Record<string, Float64Array> = { x: dx, gamma: dgamma, beta: dbeta };
  if (hasResidual(form)) gradients.residual = dResidual;
  return gradients;
}

// ---- Running the op on the GPU --------------------------------------------------------------

/** The ops take descriptions; the tests' tensors have storage, to fill and read back. */
type Stored<T> = { [K in keyof T]: Tensor };

interface GpuParams {
  params: Stored<BatchNormParams>;
  saved: Stored<BatchNormSaved>;
}

function gpuParams(gpu: Gpu, inputs: Arrays, running: Running, batchesTracked = 7): GpuParams {
  const channels = inputs.gamma.length;
  return {
    params: {
      gamma: f32Tensor(gpu, "gamma", [channels], inputs.gamma),
      beta: f32Tensor(gpu, "beta", [channels], inputs.beta),
      runningMean: f32Tensor(gpu, "running_mean", [channels], running.runningMean),
      runningVar: f32Tensor(gpu, "running_var", [channels], running.runningVar),
      numBatchesTracked: u32Tensor(gpu, "num_batches_tracked", [1], [batchesTracked]),
    },
    saved: {
      mean: poisonedTensor(gpu, "saved mean", [channels]),
      invStd: poisonedTensor(gpu, "saved invstd", [channels]),
    },
  };
}

/**
 * Runs `calls` in one submit as submitCalls does (the allocator places the ops' workspaces, one
 * slot shared by the forward's and the backward's as in training), with every workspace slot
 * filled with NaN first, so that a pass reading what no pass wrote fails the comparison.
 */
async function submitPoisoned(gpu: Gpu, calls: readonly Call[]): Promise<void> {
  const materialized = await materialize(gpu, calls, { label: "batch norm test" });
  const poisoned = new Set<GPUBuffer>();
  for (const [tensor, { slot }] of materialized.allocation.transients) {
    // Textures (serial_texture's staged activations) are written whole before any read.
    if (slot.role !== "workspace" || slot.texture) continue;
    const { buffer } = materialized.resolve(tensor);
    if (poisoned.has(buffer)) continue;
    writeBuffer(gpu, buffer, new Float32Array(slot.bytes / 4).fill(NaN));
    poisoned.add(buffer);
  }
  assert.ok(poisoned.size > 0, "batch norm: the calls name no workspace to poison");
  submitCommands(gpu, materialized.commands);
  materialized.destroy();
}

/**
 * The distinct buffer tensors of role "workspace" that the calls bind, in order of first binding
 * (serial_texture's textures, workspaces too, are not counted).
 */
function workspacesOf(calls: readonly Call[]): TensorDesc[] {
  const found = calls.flatMap((call) =>
    call.bindings.map(({ tensor }) => tensor).filter((tensor) =>
      tensor.role === "workspace" && !tensor.texture
    )
  );
  return [...new Set(found)];
}

async function readU32(gpu: Gpu, tensor: Tensor): Promise<number> {
  return new Uint32Array(await readBuffer(gpu, tensor.buffer, tensor.offset, 4))[0];
}

interface GpuResult {
  y: Float32Array;
  grads: Record<string, Float32Array>;
  mean: Float32Array;
  invStd: Float32Array;
  runningMean: Float32Array;
  runningVar: Float32Array;
  numBatchesTracked: number;
}

/**
 * One training forward and its backward in one submit, on activations (x, residual, y and their
 * gradients) of `dtype`; parameters, statistics and their gradients are f32 either way. With
 * `dySecond` the backward takes the output's gradient as the two terms dy + dySecond.
 */
async function trainStep(
  gpu: Gpu,
  variant: BatchNormVariant,
  shape: Shape,
  form: Form,
  inputs: Arrays,
  running: Running,
  dy: Float64Array,
  dtype: ActivationDType = "f32",
  dySecond?: Float64Array,
): Promise<GpuResult> {
  const { params, saved } = gpuParams(gpu, inputs, running);
  const x = activationTensor(gpu, "x", shape, inputs.x, dtype);
  const residual = hasResidual(form)
    ? activationTensor(gpu, "residual", shape, inputs.residual, dtype)
    : undefined;
  const y = poisonedActivation(gpu, "y", shape, dtype);
  const dx = poisonedActivation(gpu, "dx", shape, dtype);
  const dgamma = poisonedTensor(gpu, "dgamma", [shape[3]]);
  const dbeta = poisonedTensor(gpu, "dbeta", [shape[3]]);
  const dResidual = residual ? poisonedActivation(gpu, "dresidual", shape, dtype) : undefined;
  const activation = activationOf(form);
  const policy = forcing(variant);
  await submitPoisoned(gpu, [
    ...batchNormTrainForward({ x, y, params, saved, residual }, { activation }, policy),
    ...batchNormBackward(
      {
        x,
        y,
        dy: activationTensor(gpu, "dy", shape, dy, dtype),
        dySecond: dySecond && activationTensor(gpu, "dy second", shape, dySecond, dtype),
        dx,
        dgamma,
        dbeta,
        params,
        saved,
        dResidual,
      },
      { activation },
      policy,
    ),
  ]);
  const grads: Record<string, Float32Array> = {
    x: await readTensor(gpu, dx),
    gamma: await readTensor(gpu, dgamma),
    beta: await readTensor(gpu, dbeta),
  };
  if (dResidual) grads.residual = await readTensor(gpu, dResidual);
  return {
    y: await readTensor(gpu, y),
    grads,
    mean: await readTensor(gpu, saved.mean),
    invStd: await readTensor(gpu, saved.invStd),
    runningMean: await readTensor(gpu, params.runningMean),
    runningVar: await readTensor(gpu, params.runningVar),
    numBatchesTracked: await readU32(gpu, params.numBatchesTracked),
  };
}

/** The f32 statistics, to REDUCTION whatever the activations' type: they are f32 sums. */
function assertStatistics(
  name: string,
  actual: GpuResult,
  expected: BatchNormTrainResult,
): void {
  assertAllClose(actual.mean, expected.mean, REDUCTION, `${name}: saved mean`);
  assertAllClose(actual.invStd, expected.invstd, REDUCTION, `${name}: saved invstd`);
  assertAllClose(actual.runningMean, expected.runningMean, REDUCTION, `${name}: running_mean`);
  assertAllClose(actual.runningVar, expected.runningVar, REDUCTION, `${name}: running_var`);
  assert.equal(actual.numBatchesTracked, 8, `${name}: num_batches_tracked`);
}

// ---- Gradient checks on odd shapes ------------------------------------------------------------

// Scalar bindings (3, 5, 17 channels), vec4 bindings with 1, 2 and 3 channel vectors (serial
// lanes of 1, 2 and 1 vectors), batch 1 and 3, 1x1 to 7x7; [3, 1, 1, 17] has 3 values a channel.
const SMALL_SHAPES: Shape[] = [
  [1, 5, 5, 3],
  [3, 7, 7, 5],
  [3, 1, 1, 17],
  [1, 4, 4, 17],
  [3, 4, 4, 8],
  [1, 5, 5, 12],
];

/**
 * f16 activations on a subset: scalar bindings with batch 1 (3 channels), vec4 bindings with an
 * odd vector count and batch 1 (12 channels), and a partial row block ([3, 4, 4, 8]).
 */
const F16_SHAPES: Shape[] = [[1, 5, 5, 3], [3, 4, 4, 8], [1, 5, 5, 12]];

/** serial_texture reads a channel vector as one texel: channels in multiples of 4 only. */
function runs(variant: BatchNormVariant, shape: readonly number[]): boolean {
  return variant !== "serial_texture" || shape[shape.length - 1] % 4 === 0;
}

const GRADIENT_CHECKS = [
  ...SMALL_SHAPES.map((shape) => ({ shape, dtype: "f32" as const })),
  ...F16_SHAPES.map((shape) => ({ shape, dtype: "f16" as const })),
];

for (const variant of BATCH_NORM_VARIANTS) {
  for (const { shape, dtype } of GRADIENT_CHECKS) {
    if (!runs(variant, shape)) continue;
    for (const form of FORMS) {
      const title = `batch norm (${variant}): gradient check of ${form} on [${shape}] ${dtype}`;
      gpuTest(title, async (gpu) => {
        const name = `${form} [${shape}] ${variant} ${dtype}`;
        const random = new Random(count(shape) + FORMS.indexOf(form));
        const running = randomRunning(random, shape[3]);
        const inputs = randomInputs(random, shape, form, 0, dtype);
        let result: GpuResult | undefined;
        await gradCheck({
          name,
          inputs,
          reference: {
            forward: (inputs) => referenceForward(inputs, running, shape, form).y,
            backward: (inputs, dy) => referenceBackward(inputs, running, shape, form, dy),
          },
          // f16: y, dx and dresidual are each rounded to f16 once after f32 arithmetic on the
          // same (rounded) inputs the reference gets; dgamma and dbeta are f32 sums.
          tolerance: dtype === "f16" ? F16_STORAGE : REDUCTION,
          activations: dtype,
          async gpu(inputs, dy) {
            result = await trainStep(gpu, variant, shape, form, inputs, running, dy, dtype);
            return result;
          },
        });
        assertStatistics(name, result!, referenceForward(inputs, running, shape, form).bn);
      });
    }
  }
}

// ---- ResNet-18 shapes, against the reference only ---------------------------------------------

/**
 * The harness's checks (a) and (b) without finite differences, which would take two reference
 * forwards per element. A ReLU's mask is a discrete decision that f32 may take the other way where
 * the pre-activation is within rounding of 0, which among 10^5 elements happens; so the reference
 * backward takes the mask from the GPU's output, and the mask is checked against the reference's
 * own wherever the pre-activation is clear of 0.
 */
async function compareWithReference(
  gpu: Gpu,
  variant: BatchNormVariant,
  shape: Shape,
  form: Form,
  mean = 0,
  dtype: ActivationDType = "f32",
  dyTerms: 1 | 2 = 1,
): Promise<void> {
  const name = `${form} [${shape}] ${variant} ${dtype}${dyTerms === 2 ? ", dy in two terms" : ""}`;
  const random = new Random(count(shape));
  const running = randomRunning(random, shape[3]);
  const inputs = randomInputs(random, shape, form, mean, dtype);
  const randomGradient = () => roundTo(f32Array(count(shape), () => random.uniform(-1, 1)), dtype);
  const terms = Array.from({ length: dyTerms }, randomGradient);
  // The reference takes the exact sum of the terms; the kernels sum them in f32 (the add of the
  // variants without textures rounds the sum to the activations' type once, within F16_STORAGE).
  const dy = terms.length === 2 ? referenceAdd(terms[0], terms[1]) : terms[0];
  const expected = referenceForward(inputs, running, shape, form);
  const actual = await trainStep(
    gpu,
    variant,
    shape,
    form,
    inputs,
    running,
    terms[0],
    dtype,
    terms[1],
  );
  // f16: y and dx are rounded to f16 once; the statistics, dgamma and dbeta are f32 sums.
  const tolerance = dtype === "f16" ? F16_STORAGE : REDUCTION;
  assertAllClose(actual.y, expected.y, tolerance, `${name}: forward`);
  assertStatistics(name, actual, expected.bn);
  const mask = Array.from(actual.y, (value) => value > 0);
  expected.preActivation.forEach((value, index) => {
    if (Math.abs(value) > 1e-4 && mask[index] !== value > 0) {
      throw new Error(`${name}: ReLU mask differs at ${index} (pre-activation ${value})`);
    }
  });
  const gradients = referenceBackward(inputs, running, shape, form, dy, mask);
  for (const [input, gradient] of Object.entries(gradients)) {
    assertAllClose(actual.grads[input], gradient, tolerance, `${name}: d${input}`);
  }
}

const RESNET_CASES: [Shape, Form][] = [
  [[2, 32, 32, 64], "bn+relu"],
  [[2, 4, 4, 512], "bn+add+relu"],
  [[2, 8, 8, 256], "bn+relu"],
  // 1875 rows: the last row block of both variants is a partial one.
  [[3, 25, 25, 4], "bn"],
];

for (const variant of BATCH_NORM_VARIANTS) {
  for (const [shape, form] of RESNET_CASES) {
    gpuTest(
      `batch norm (${variant}): ${form} on [${shape}] matches the reference`,
      (gpu) => compareWithReference(gpu, variant, shape, form),
    );
  }
  for (
    const [shape, form] of [[[16, 4, 4, 32], "bn+add+relu"], [[2, 8, 8, 256], "bn+relu"]] as const
  ) {
    gpuTest(
      `batch norm (${variant}): ${form} on [${shape}] f16 matches the reference`,
      (gpu) => compareWithReference(gpu, variant, [...shape], form, 0, "f16"),
    );
  }
}

// dy as two terms (a residual block's input gradient): odd shapes (scalar bindings, batch 1, a
// partial row block), the forms the networks give two terms (the stem's bn+relu and a block's
// bn+add+relu), f32 and f16.
for (const variant of BATCH_NORM_VARIANTS) {
  for (
    const [shape, form, dtype] of [
      [[3, 7, 7, 5], "bn+relu", "f32"],
      [[1, 5, 5, 12], "bn+add+relu", "f32"],
      [[3, 4, 4, 8], "bn+relu", "f32"],
      [[2, 8, 8, 16], "bn+add+relu", "f16"],
    ] as const
  ) {
    if (!runs(variant, shape)) continue;
    gpuTest(
      `batch norm (${variant}): ${form} on [${shape}] ${dtype} with dy in two terms matches the reference`,
      (gpu) => compareWithReference(gpu, variant, [...shape], form, 0, dtype, 2),
    );
  }
}

Deno.test("batch norm: the test shapes cover every lane layout", () => {
  const plans = [...SMALL_SHAPES, ...RESNET_CASES.map(([shape]) => shape)].flatMap((shape) =>
    BATCH_NORM_VARIANTS.map((variant) => planBatchNorm(shape, variant))
  );
  const serial = plans.filter((plan) => plan.variant === "serial");
  assert.deepEqual(
    new Set(serial.map((plan) => plan.reduction.vectorsPerLane)),
    new Set([1, 2, 4, 8]),
  );
  assert.deepEqual(new Set(plans.map((plan) => plan.vectorized)), new Set([true, false]));
  for (const variant of BATCH_NORM_VARIANTS) {
    const uneven = plans.filter((plan) =>
      plan.variant === variant && plan.rows % plan.reduction.rowsPerLane !== 0
    );
    assert.ok(uneven.length > 0, `${variant}: no shape leaves a partial last row block`);
  }
});

// ---- Accuracy with a large mean ---------------------------------------------------------------

/** The textbook one-pass variance E[x²] − E[x]², every operation rounded to f32 as a GPU would. */
function naiveF32Variance(values: ArrayLike<number>): number {
  let sum = 0;
  let sumOfSquares = 0;
  for (let index = 0; index < values.length; index++) {
    sum = Math.fround(sum + values[index]);
    sumOfSquares = Math.fround(sumOfSquares + Math.fround(values[index] * values[index]));
  }
  const mean = Math.fround(sum / values.length);
  return Math.fround(Math.fround(sumOfSquares / values.length) - Math.fround(mean * mean));
}

for (const variant of BATCH_NORM_VARIANTS) {
  gpuTest(
    `batch norm (${variant}): variance of 1000 + U(-1, 1) over 128x32x32 matches f64 to 1e-4`,
    async (gpu) => {
      const shape: Shape = [128, 32, 32, 4];
      const channels = shape[3];
      const random = new Random(1000);
      const x = f32Array(count(shape), () => 1000 + random.uniform(-1, 1));
      const gamma = new Float64Array(channels).fill(1);
      const beta = new Float64Array(channels);
      // Zero running statistics, so that after one step running_var is 0.1 · the unbiased variance.
      const running = { runningMean: new Float64Array(channels), runningVar: beta };
      const expected = referenceTrainForward(x, { gamma, beta }, running, nhwcOf(shape));

      const { params, saved } = gpuParams(gpu, { gamma, beta }, running);
      const y = poisonedTensor(gpu, "y", shape);
      await submitPoisoned(
        gpu,
        batchNormTrainForward(
          { x: f32Tensor(gpu, "x", shape, x), y, params, saved },
          { activation: "none" },
          forcing(variant),
        ),
      );
      const invStd = await readTensor(gpu, saved.invStd);
      const variance = Array.from(invStd, (value) => value ** -2 - 1e-5);
      const varianceError = relativeMaxError(variance, expected.variance);
      assert.ok(varianceError < 1e-4, `variance from invstd: relative error ${varianceError}`);
      const runningVar = await readTensor(gpu, params.runningVar);
      assertAllClose(runningVar, expected.runningVar, 1e-4, "running_var");
      assertAllClose(await readTensor(gpu, saved.mean), expected.mean, 1e-6, "mean");
      assertAllClose(await readTensor(gpu, y), expected.y, 1e-3, "normalised output");

      // The one-pass formula on channel 0 comes out hundreds of times too large (857 when
      // measured), where the kernels are within a few 1e-6.
      const channel0 = x.filter((_, index) => index % channels === 0);
      const naiveError = Math.abs(naiveF32Variance(channel0) / expected.variance[0] - 1);
      assert.ok(naiveError > 1, `the naive formula's error is only ${naiveError}`);
    },
  );
}

// ---- Running statistics over two steps ----------------------------------------------------------

for (const variant of BATCH_NORM_VARIANTS) {
  gpuTest(`batch norm (${variant}): running statistics after two steps`, async (gpu) => {
    const shape: Shape = [3, 5, 5, runs(variant, [17]) ? 17 : 16];
    const random = new Random(2);
    const first = randomInputs(random, shape, "bn");
    const second = f32Array(count(shape), () => 3 + random.uniform(-1, 1));
    const running = randomRunning(random, shape[3]);
    const { params, saved } = gpuParams(gpu, first, running, 0);
    const y = poisonedTensor(gpu, "y", shape);
    const policy = forcing(variant);
    const step = (x: Float64Array) =>
      batchNormTrainForward(
        { x: f32Tensor(gpu, "x", shape, x), y, params, saved },
        { activation: "none" },
        policy,
      );
    await submitPoisoned(gpu, [...step(first.x), ...step(second)]);

    const afterFirst = referenceTrainForward(first.x, affineOf(first), running, nhwcOf(shape));
    const afterSecond = referenceTrainForward(second, affineOf(first), afterFirst, nhwcOf(shape));
    const name = `two steps ${variant}`;
    assertAllClose(await readTensor(gpu, y), afterSecond.y, REDUCTION, `${name}: y`);
    assertAllClose(
      await readTensor(gpu, params.runningMean),
      afterSecond.runningMean,
      REDUCTION,
      `${name}: running_mean`,
    );
    assertAllClose(
      await readTensor(gpu, params.runningVar),
      afterSecond.runningVar,
      REDUCTION,
      `${name}: running_var`,
    );
    assert.equal(await readU32(gpu, params.numBatchesTracked), 2);
  });
}

// ---- Eval mode ----------------------------------------------------------------------------------

for (const variant of BATCH_NORM_VARIANTS) {
  for (
    const [shape, form, dtype] of [
      [[3, 7, 7, 5], "bn+add+relu", "f32"],
      [[2, 4, 4, 64], "bn+relu", "f32"],
      [[1, 5, 5, 3], "bn", "f32"],
      [[3, 7, 7, 5], "bn+add+relu", "f16"],
      [[2, 4, 4, 12], "bn+add+relu", "f16"],
    ] as [Shape, Form, ActivationDType][]
  ) {
    if (!runs(variant, shape)) continue;
    const title =
      `batch norm (${variant}): eval ${form} on [${shape}] ${dtype} matches the reference`;
    gpuTest(title, async (gpu) => {
      const random = new Random(count(shape));
      const inputs = randomInputs(random, shape, form, 0, dtype);
      const running = randomRunning(random, shape[3]);
      let expected = referenceEvalForward(inputs.x, affineOf(inputs), running, nhwcOf(shape));
      if (hasResidual(form)) expected = referenceAdd(expected, inputs.residual);
      if (activationOf(form) === "relu") expected = referenceRelu(expected);

      const { params } = gpuParams(gpu, inputs, running);
      const y = poisonedActivation(gpu, "y", shape, dtype);
      await submitCalls(
        gpu,
        batchNormEvalForward(
          {
            x: activationTensor(gpu, "x", shape, inputs.x, dtype),
            y,
            params,
            residual: hasResidual(form)
              ? activationTensor(gpu, "residual", shape, inputs.residual, dtype)
              : undefined,
          },
          { activation: activationOf(form) },
          forcing(variant),
        ),
      );
      // f16: y is rounded to f16 once.
      const tolerance = dtype === "f16" ? F16_STORAGE : ELEMENTWISE;
      assertAllClose(await readTensor(gpu, y), expected, tolerance, `eval ${form} [${shape}]`);
      // Eval leaves the running statistics alone.
      assert.deepEqual(
        Array.from(await readTensor(gpu, params.runningVar)),
        Array.from(running.runningVar),
      );
    });
  }
}

// ---- Fused against the unfused chain ------------------------------------------------------------

for (const variant of BATCH_NORM_VARIANTS) {
  for (const shape of [[3, 7, 7, 17], [2, 8, 8, 64]] as Shape[]) {
    if (!runs(variant, shape)) continue;
    for (const form of ["bn+relu", "bn+add+relu"] as Form[]) {
      gpuTest(
        `batch norm (${variant}): fused ${form} on [${shape}] agrees with BN, add and ReLU apart`,
        async (gpu) => {
          const random = new Random(count(shape) + 1);
          const inputs = randomInputs(random, shape, form);
          const running = randomRunning(random, shape[3]);
          const x = f32Tensor(gpu, "x", shape, inputs.x);
          const dy = f32Tensor(
            gpu,
            "dy",
            shape,
            f32Array(count(shape), () => random.uniform(-1, 1)),
          );
          const residual = hasResidual(form)
            ? f32Tensor(gpu, "residual", shape, inputs.residual)
            : undefined;
          const fused = gpuParams(gpu, inputs, running);
          const apart = gpuParams(gpu, inputs, running);
          const policy = forcing(variant);
          const tensor = (label: string) => poisonedTensor(gpu, label, shape);
          const channelTensor = (label: string) => poisonedTensor(gpu, label, [shape[3]]);

          const fusedOut = {
            y: tensor("fused y"),
            dx: tensor("fused dx"),
            dgamma: channelTensor("fused dgamma"),
            dbeta: channelTensor("fused dbeta"),
            dResidual: residual ? tensor("fused dresidual") : undefined,
          };
          const fusedCalls = [
            ...batchNormTrainForward(
              { x, ...fused, y: fusedOut.y, residual },
              { activation: "relu" },
              policy,
            ),
            ...batchNormBackward(
              { x, ...fused, ...fusedOut, dy },
              { activation: "relu" },
              policy,
            ),
          ];

          // bn -> [add] -> relu, and back: relu backward, add backward (identity), bn backward.
          const bnOut = tensor("bn y");
          const sum = residual ? tensor("bn + residual") : bnOut;
          const y = tensor("relu y");
          const dSum = tensor("d(bn + residual)");
          const apartOut = {
            dx: tensor("dx"),
            dgamma: channelTensor("dgamma"),
            dbeta: channelTensor("dbeta"),
          };
          const apartCalls = [
            ...batchNormTrainForward(
              { x, ...apart, y: bnOut },
              { activation: "none" },
              policy,
            ),
            ...(residual ? addForward({ a: bnOut, b: residual, y: sum }) : []),
            ...reluForward({ x: sum, y }),
            ...reluBackward({ y, dy, dx: dSum }),
            ...batchNormBackward(
              { x, ...apart, ...apartOut, y: bnOut, dy: dSum },
              { activation: "none" },
              policy,
            ),
          ];
          await submitPoisoned(gpu, [...fusedCalls, ...apartCalls]);

          const name = `fused ${form} [${shape}] ${variant}`;
          const pairs: [string, Tensor, Tensor][] = [
            ["y", fusedOut.y, y],
            ["dx", fusedOut.dx, apartOut.dx],
            ["dgamma", fusedOut.dgamma, apartOut.dgamma],
            ["dbeta", fusedOut.dbeta, apartOut.dbeta],
            ["running_var", fused.params.runningVar, apart.params.runningVar],
          ];
          if (fusedOut.dResidual) pairs.push(["dresidual", fusedOut.dResidual, dSum]);
          for (const [what, fusedTensor, apartTensor] of pairs) {
            assertAllClose(
              await readTensor(gpu, fusedTensor),
              await readTensor(gpu, apartTensor),
              ELEMENTWISE,
              `${name}: ${what}`,
            );
          }
        },
      );
    }
  }
}

// ---- Workspaces ---------------------------------------------------------------------------------

/** Descriptions (no storage) of every tensor of a training forward and backward on `shape`. */
function describedStep(shape: Shape, withResidual: boolean) {
  const channels = shape[3];
  const activation = (label: string) => tensorDesc(label, shape);
  const perChannel = (label: string) => tensorDesc(label, [channels]);
  const params: BatchNormParams = {
    gamma: perChannel("gamma"),
    beta: perChannel("beta"),
    runningMean: perChannel("running_mean"),
    runningVar: perChannel("running_var"),
    numBatchesTracked: tensorDesc("num_batches_tracked", [1], "u32"),
  };
  const saved: BatchNormSaved = { mean: perChannel("mean"), invStd: perChannel("invstd") };
  const [x, y] = [activation("x"), activation("y")];
  return {
    forward: { x, y, params, saved, residual: withResidual ? activation("residual") : undefined },
    backward: {
      x,
      y,
      dy: activation("dy"),
      dx: activation("dx"),
      dgamma: perChannel("dgamma"),
      dbeta: perChannel("dbeta"),
      params,
      saved,
      dResidual: withResidual ? activation("dresidual") : undefined,
    },
  };
}

// Replaces the old checks of the workspace argument (batchNormWorkspaceSize, a workspace too small
// refused): the ops now name their own scratch, which must be exactly what planBatchNorm sizes.
Deno.test("batch norm: every op declares the workspace planBatchNorm sizes", () => {
  const shapes: Shape[] = [
    ...SMALL_SHAPES,
    ...RESNET_CASES.map(([shape]) => shape),
    [2, 1, 1, 4],
    [128, 32, 32, 4],
  ];
  for (const variant of BATCH_NORM_VARIANTS) {
    for (const shape of shapes) {
      if (!runs(variant, shape)) continue;
      for (const withResidual of [false, true]) {
        const name = `[${shape}] ${variant}${withResidual ? " with residual" : ""}`;
        const plan = planBatchNorm(shape, variant);
        const { forward, backward } = describedStep(shape, withResidual);
        const activation = withResidual ? "relu" : "none";
        const forwardCalls = batchNormTrainForward(forward, { activation }, forcing(variant));
        const backwardCalls = batchNormBackward(backward, { activation }, forcing(variant));
        for (
          const [pass, staged] of [["forward", forwardCalls], ["backward", backwardCalls]] as const
        ) {
          // serial_texture first copies each activation it reads into a texture, once: x (and
          // the residual) forward; x, dy (and y, with the ReLU) backward. No other variant does.
          const copies = staged.filter((call) => !isKernelCall(call)).length;
          const expectedCopies = variant !== "serial_texture"
            ? 0
            : (pass === "forward" ? 1 : 2) + Number(withResidual);
          assert.equal(copies, expectedCopies, `${name} ${pass}: staging copies`);
          const calls = staged.filter(isKernelCall);
          // The partials pass binds the workspace, and only it among the workspaces.
          const partials = calls[0].bindings.filter(({ tensor }) =>
            tensor.role === "workspace" && !tensor.texture
          );
          assert.equal(partials.length, 1, `${name} ${pass}: workspaces of the partials pass`);
          const workspace = partials[0].tensor;
          assert.equal(partials[0].access, "write", `${name} ${pass}: partials access`);
          assert.equal(
            byteSize(workspace),
            plan.workspaceBytes,
            `${name} ${pass}: workspace bytes`,
          );
          assert.equal(workspace.dtype, "f32");
          // The combine and (backward) the input gradient read the same tensor.
          for (const call of calls.slice(1)) {
            const bound = call.bindings.some(({ tensor }) => tensor === workspace);
            assert.equal(bound, !call.entryPoint.startsWith("normalize"), call.label);
          }
          // The forced variant and the vec4, scalar or texture path reach the calls.
          const combine = calls[1].entryPoint;
          assert.equal(combine.endsWith("_tree"), variant === "tree", `${name}: ${combine}`);
          const path = plan.textures ? "_texture" : plan.vectorized ? "" : "_scalar";
          for (const call of [calls[0], calls[2]].filter(Boolean)) {
            assert.equal(
              call.entryPoint.replace(
                /^(statistics_partials|normalize|gradient_partials|input_gradient)/,
                "",
              ),
              path,
              `${name}: ${call.entryPoint}`,
            );
          }
        }
        // Any other workspace (a stand-in for an absent dresidual) is not the partials'.
        assert.equal(workspacesOf(forwardCalls).length, 1, `${name}: forward workspaces`);
        assert.equal(
          workspacesOf(backwardCalls).length,
          withResidual ? 1 : 2,
          `${name}: backward workspaces`,
        );
      }
    }
  }
});

// ---- Refusals -----------------------------------------------------------------------------------

for (const variant of BATCH_NORM_VARIANTS) {
  gpuTest(`batch norm (${variant}): refuses what would fail or mislead`, async (gpu) => {
    const shape: Shape = [1, 1, 1, 4];
    const random = new Random(3);
    const inputs = randomInputs(random, shape, "bn");
    const { params, saved } = gpuParams(gpu, inputs, randomRunning(random, 4));
    const x = f32Tensor(gpu, "x", shape, inputs.x);
    const forward = (overrides: Partial<Parameters<typeof batchNormTrainForward>[0]>) =>
      batchNormTrainForward(
        { x, y: poisonedTensor(gpu, "y", shape), params, saved, ...overrides },
        { activation: "none" },
        forcing(variant),
      );
    // One value per channel: the unbiased variance is undefined, as PyTorch says too. (The op
    // throws a ShapeError now, where it rejected with a RangeError before.)
    assert.throws(() => forward({}), { name: "ShapeError", message: /at least 2/ });

    // Two rows plan and run; the op's own workspace is the size planBatchNorm gives (the old
    // refusal of a caller's workspace too small has no caller's workspace left to refuse).
    const twoRows: Shape = [2, 1, 1, 4];
    const x2 = f32Tensor(gpu, "x", twoRows, new Float32Array(8));
    const y2 = poisonedTensor(gpu, "y", twoRows);
    const calls = forward({ x: x2, y: y2 });
    const workspaces = workspacesOf(calls);
    assert.equal(workspaces.length, 1);
    assert.equal(byteSize(workspaces[0]), planBatchNorm(twoRows, variant).workspaceBytes);
    await submitPoisoned(gpu, calls);
    // x = 0: every normalised value is 0, so y is beta.
    assertAllClose(
      await readTensor(gpu, y2),
      Float64Array.from({ length: 8 }, (_, index) => inputs.beta[index % 4]),
      ELEMENTWISE,
      "two rows of zeros",
    );

    // y in x's buffer: wgpu rejects a buffer bound read-only and read_write in one dispatch. The
    // op plans it; the allocator refuses it when the calls are materialized. serial_texture's
    // passes read x's texture, copied before them, so there no call binds x and y together.
    const sharing = { ...x2, label: "y sharing x's buffer" };
    const aliased = forward({ x: x2, y: sharing });
    if (variant === "serial_texture") {
      (await materialize(gpu, aliased, { label: "in place" })).destroy();
    } else {
      await assert.rejects(submitCalls(gpu, aliased), {
        name: "PlanError",
        message: /y sharing x's buffer is written and overlaps x/,
      });
      await assert.rejects(materialize(gpu, aliased, { label: "aliased" }), { name: "PlanError" });
    }
    assert.throws(() => planBatchNorm([2, 4, 4], "serial"), /NHWC/);
  });
}
