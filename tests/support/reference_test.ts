/**
 * Checks the f64 CPU references that the GPU kernels are tested against: each forward against
 * hand-computed values or an independent formulation, and each backward against central finite
 * differences of its own forward. Needs no permissions.
 */
import assert from "node:assert/strict";
import { addBackward, addForward } from "./reference/add.ts";
import {
  BATCH_NORM_EPS,
  batchNormEvalBackward,
  batchNormEvalForward,
  type BatchNormParameters,
  type BatchNormRunningStats,
  batchNormTrainBackward,
  batchNormTrainForward,
} from "./reference/batchnorm.ts";
import { assertAllClose } from "./reference/compare.ts";
import {
  conv2dBackward,
  conv2dForward,
  conv2dOutputSize,
  type Conv2dShape,
} from "./reference/conv2d.ts";
import {
  centralDifferenceAt,
  centralDifferenceGradient,
  projectedGradient,
} from "./reference/finite_difference.ts";
import { nchwToNhwc, nhwcToNchw, ohwiToOihw, oihwToOhwi } from "./reference/layout.ts";
import { linearBackward, linearForward, type LinearShape } from "./reference/linear.ts";
import { globalAvgPoolBackward, globalAvgPoolForward } from "./reference/pool.ts";
import { f32Array, Random } from "./reference/random.ts";
import { reluBackward, reluForward } from "./reference/relu.ts";
import {
  randomResnetWeights,
  type ResNetArchitecture,
  resnetForward,
  resnetStateDictShapes,
  resnetTrainStep,
} from "./reference/resnet.ts";
import { nhwcLength, type NhwcShape } from "./reference/shape.ts";
import { softmaxCrossEntropy } from "./reference/softmax_cross_entropy.ts";

/**
 * Finite differences in f64 with step 1e-6 agree with exact gradients to about 1e-9 relative
 * here (truncation ~h², rounding ~1e-16/h); 1e-6 leaves margin while still catching any real
 * mistake, which shows up as an O(1) relative error.
 */
const GRADIENT_TOLERANCE = 1e-6;
/** Forwards compared with a differently ordered f64 computation differ only by rounding. */
const FORWARD_TOLERANCE = 1e-12;

function normalArray(random: Random, length: number, std = 1): Float64Array {
  return f32Array(length, () => random.normal(0, std));
}

/** Asserts that `analytic` is the gradient of sum(forward() · projection) w.r.t. `input`. */
function assertGradient(
  analytic: Float64Array,
  forward: () => Float64Array,
  projection: Float64Array,
  input: Float64Array,
  what: string,
): void {
  const numeric = projectedGradient(forward, projection, input);
  assertAllClose(analytic, numeric, GRADIENT_TOLERANCE, what);
}

Deno.test("random: seeded, reproducible, f32-representable", () => {
  const first = normalArray(new Random(42), 1000);
  const second = normalArray(new Random(42), 1000);
  assert.deepEqual(first, second);
  assert.notDeepEqual(first, normalArray(new Random(43), 1000));
  assert.ok(first.every((value) => Math.fround(value) === value));
  const mean = first.reduce((sum, value) => sum + value, 0) / first.length;
  const variance = first.reduce((sum, value) => sum + (value - mean) ** 2, 0) / first.length;
  assert.ok(Math.abs(mean) < 0.1 && Math.abs(variance - 1) < 0.15, `${mean}, ${variance}`);
  const random = new Random(7);
  for (let draw = 0; draw < 1000; draw++) {
    const value = random.uniform(-2, 3);
    assert.ok(value >= -2 && value < 3);
    assert.ok(random.integer(10) < 10);
  }
});

Deno.test("finite differences: gradient of a known function", () => {
  // L = Σ x³ · p has gradient 3x² · p; also checks the input is restored after perturbing it.
  const x = Float64Array.of(0.5, -1.25, 2);
  const projection = Float64Array.of(1, -2, 0.5);
  const original = x.slice();
  const numeric = projectedGradient(() => x.map((value) => value ** 3), projection, x);
  assertAllClose(numeric, x.map((value, i) => 3 * value ** 2 * projection[i]), 1e-9, "cubic");
  assert.deepEqual(x, original);
  const subset = centralDifferenceAt(() => x[1] * x[2], x, [2, 0]);
  assertAllClose(subset, Float64Array.of(x[1], 0), 1e-9, "subset");
});

const CONV_SHAPES: Conv2dShape[] = [
  { n: 1, h: 5, w: 5, cin: 3, cout: 5, k: 3, stride: 1, pad: 1 },
  { n: 3, h: 7, w: 7, cin: 5, cout: 3, k: 3, stride: 2, pad: 1 },
  { n: 3, h: 7, w: 7, cin: 3, cout: 17, k: 1, stride: 2, pad: 0 },
  { n: 1, h: 5, w: 5, cin: 17, cout: 5, k: 3, stride: 2, pad: 0 },
  { n: 3, h: 5, w: 7, cin: 3, cout: 5, k: 3, stride: 2, pad: 1 },
  { n: 1, h: 7, w: 5, cin: 5, cout: 3, k: 1, stride: 1, pad: 1 },
];

Deno.test("conv2d: output size", () => {
  const size = (h: number, w: number, k: number, stride: number, pad: number) =>
    conv2dOutputSize({ n: 1, h, w, cin: 1, cout: 1, k, stride, pad });
  assert.deepEqual(size(5, 5, 3, 1, 1), { oh: 5, ow: 5 });
  assert.deepEqual(size(7, 7, 3, 2, 1), { oh: 4, ow: 4 });
  assert.deepEqual(size(7, 5, 3, 2, 0), { oh: 3, ow: 2 });
  assert.deepEqual(size(8, 8, 1, 2, 0), { oh: 4, ow: 4 });
  assert.deepEqual(size(32, 32, 3, 2, 1), { oh: 16, ow: 16 });
  assert.throws(() => size(2, 2, 3, 1, 0), RangeError);
});

Deno.test("conv2d: hand-computed 3x3 box filter with padding", () => {
  const shape = { n: 1, h: 3, w: 3, cin: 1, cout: 1, k: 3, stride: 1, pad: 1 };
  const x = Float64Array.from({ length: 9 }, (_, i) => i + 1);
  const y = conv2dForward(x, new Float64Array(9).fill(1), shape);
  // Each output is the sum of the in-bounds 3x3 neighbourhood of 1..9.
  assert.deepEqual(Array.from(y), [12, 21, 16, 27, 45, 33, 24, 39, 28]);
});

Deno.test("conv2d: NHWC input and OHWI weight indexing", () => {
  // One non-zero input element times one non-zero weight element must land at the output
  // position the layout conventions predict, and nowhere else.
  const shape: Conv2dShape = { n: 2, h: 5, w: 6, cin: 3, cout: 4, k: 3, stride: 2, pad: 1 };
  const { oh, ow } = conv2dOutputSize(shape);
  const [batch, outY, outX, o, kh, kw, i] = [1, 2, 1, 3, 0, 2, 1];
  const inY = outY * shape.stride - shape.pad + kh;
  const inX = outX * shape.stride - shape.pad + kw;
  const x = new Float64Array(shape.n * shape.h * shape.w * shape.cin);
  x[((batch * shape.h + inY) * shape.w + inX) * shape.cin + i] = 2;
  const weight = new Float64Array(shape.cout * shape.k * shape.k * shape.cin);
  weight[((o * shape.k + kh) * shape.k + kw) * shape.cin + i] = 3;
  const expected = new Float64Array(shape.n * oh * ow * shape.cout);
  expected[((batch * oh + outY) * ow + outX) * shape.cout + o] = 6;
  assert.deepEqual(conv2dForward(x, weight, shape), expected);
});

Deno.test("conv2d: 1x1 stride-1 convolution equals a linear layer per pixel", () => {
  const random = new Random(1);
  const shape: Conv2dShape = { n: 3, h: 5, w: 7, cin: 17, cout: 5, k: 1, stride: 1, pad: 0 };
  const x = normalArray(random, shape.n * shape.h * shape.w * shape.cin);
  const weight = normalArray(random, shape.cout * shape.cin);
  const pixels: LinearShape = {
    n: shape.n * shape.h * shape.w,
    inFeatures: shape.cin,
    outFeatures: shape.cout,
  };
  const expected = linearForward(x, weight, new Float64Array(shape.cout), pixels);
  assertAllClose(conv2dForward(x, weight, shape), expected, FORWARD_TOLERANCE, "1x1 conv");
});

for (const shape of CONV_SHAPES) {
  Deno.test(`conv2d: backward matches finite differences for ${JSON.stringify(shape)}`, () => {
    const random = new Random(shape.n * 100 + shape.cin * 10 + shape.k);
    const x = normalArray(random, shape.n * shape.h * shape.w * shape.cin);
    const weight = normalArray(random, shape.cout * shape.k * shape.k * shape.cin, 0.3);
    const { oh, ow } = conv2dOutputSize(shape);
    const dy = normalArray(random, shape.n * oh * ow * shape.cout);
    const { dx, dweight } = conv2dBackward(x, weight, dy, shape);
    const forward = () => conv2dForward(x, weight, shape);
    assertGradient(dx, forward, dy, x, "conv2d dx");
    assertGradient(dweight, forward, dy, weight, "conv2d dweight");
  });
}

const LINEAR_SHAPES: LinearShape[] = [
  { n: 1, inFeatures: 17, outFeatures: 5 },
  { n: 3, inFeatures: 5, outFeatures: 10 },
];

Deno.test("linear: hand-computed y = x·Wᵀ + b", () => {
  const x = Float64Array.of(1, 2, 3, -1, 0, 1); // [2, 3]
  const weight = Float64Array.of(1, 0, -1, 2, 1, 0); // [2, 3]: rows (1, 0, −1) and (2, 1, 0)
  const y = linearForward(x, weight, Float64Array.of(10, 20), {
    n: 2,
    inFeatures: 3,
    outFeatures: 2,
  });
  assert.deepEqual(Array.from(y), [1 - 3 + 10, 2 + 2 + 20, -1 - 1 + 10, -2 + 20]);
});

for (const shape of LINEAR_SHAPES) {
  Deno.test(`linear: backward matches finite differences for ${JSON.stringify(shape)}`, () => {
    const random = new Random(shape.n + shape.inFeatures);
    const x = normalArray(random, shape.n * shape.inFeatures);
    const weight = normalArray(random, shape.outFeatures * shape.inFeatures);
    const bias = normalArray(random, shape.outFeatures);
    const dy = normalArray(random, shape.n * shape.outFeatures);
    const { dx, dweight, dbias } = linearBackward(x, weight, dy, shape);
    const forward = () => linearForward(x, weight, bias, shape);
    assertGradient(dx, forward, dy, x, "linear dx");
    assertGradient(dweight, forward, dy, weight, "linear dweight");
    assertGradient(dbias, forward, dy, bias, "linear dbias");
  });
}

Deno.test("relu: forward and backward", () => {
  const x = Float64Array.of(-2, -0.5, 0, 0.5, 3);
  assert.deepEqual(Array.from(reluForward(x)), [0, 0, 0, 0.5, 3]);
  // At exactly 0 the gradient is 0, as in PyTorch.
  assert.deepEqual(Array.from(reluBackward(x, new Float64Array(5).fill(7))), [0, 0, 0, 7, 7]);
  const random = new Random(3);
  const input = normalArray(random, 3 * 5 * 5 * 17);
  const dy = normalArray(random, input.length);
  assertGradient(reluBackward(input, dy), () => reluForward(input), dy, input, "relu dx");
});

Deno.test("add: forward and backward", () => {
  const random = new Random(4);
  const a = normalArray(random, 3 * 5);
  const b = normalArray(random, 3 * 5);
  assert.deepEqual(addForward(a, b), a.map((value, i) => value + b[i]));
  const dy = normalArray(random, a.length);
  const { da, db } = addBackward(dy);
  const forward = () => addForward(a, b);
  assertGradient(da, forward, dy, a, "add da");
  assertGradient(db, forward, dy, b, "add db");
  da[0] += 1; // the two gradients are independent copies
  assert.equal(db[0], dy[0]);
});

Deno.test("global average pool: hand-computed forward", () => {
  // [1, 2, 2, 2]: channel 0 holds 1..4, channel 1 holds 10, 20, 30, 40.
  const x = Float64Array.of(1, 10, 2, 20, 3, 30, 4, 40);
  assert.deepEqual(Array.from(globalAvgPoolForward(x, { n: 1, h: 2, w: 2, c: 2 })), [2.5, 25]);
});

for (const shape of [{ n: 1, h: 5, w: 5, c: 3 }, { n: 3, h: 7, w: 5, c: 17 }]) {
  Deno.test(
    `global average pool: backward matches finite differences for ${JSON.stringify(shape)}`,
    () => {
      const random = new Random(shape.c);
      const x = normalArray(random, nhwcLength(shape));
      const dy = normalArray(random, shape.n * shape.c);
      const dx = globalAvgPoolBackward(dy, shape);
      assertGradient(dx, () => globalAvgPoolForward(x, shape), dy, x, "pool dx");
    },
  );
}

Deno.test("softmax cross-entropy: hand-computed values", () => {
  const classes = 4;
  // Equal logits: loss log(classes), and the tie resolves to class 0.
  const uniform = softmaxCrossEntropy(new Float64Array(classes).fill(0.3), [0], {
    n: 1,
    classes,
  });
  assert.ok(Math.abs(uniform.loss - Math.log(classes)) < 1e-15);
  assert.equal(uniform.correct, 1);
  assertAllClose(uniform.dlogits, Float64Array.of(-0.75, 0.25, 0.25, 0.25), 1e-15, "dlogits");
  // Two rows; row 0 ties classes 1 and 3 (argmax 1 = label), row 1 predicts 2 for label 0.
  const logits = Float64Array.of(0, 2, 1, 2, 1, 0, 3, -1);
  const result = softmaxCrossEntropy(logits, [1, 0], { n: 2, classes });
  const logSumExp = (row: number[]) => Math.log(row.reduce((sum, v) => sum + Math.exp(v), 0));
  const expected = (logSumExp([0, 2, 1, 2]) - 2 + logSumExp([1, 0, 3, -1]) - 1) / 2;
  assert.ok(Math.abs(result.loss - expected) < 1e-15);
  assert.equal(result.correct, 1);
  // Shifting every logit of a row changes nothing, even by an amount that would overflow exp().
  const shifted = softmaxCrossEntropy(logits.map((v) => v + 1000), [1, 0], { n: 2, classes });
  assert.ok(Math.abs(shifted.loss - result.loss) < 1e-12);
  assertAllClose(shifted.dlogits, result.dlogits, 1e-12, "shifted dlogits");
  assert.throws(() => softmaxCrossEntropy(logits, [1, 4], { n: 2, classes }), RangeError);
});

for (const shape of [{ n: 1, classes: 10 }, { n: 3, classes: 10 }, { n: 3, classes: 5 }]) {
  Deno.test(
    `softmax cross-entropy: dlogits match finite differences for ${JSON.stringify(shape)}`,
    () => {
      const random = new Random(shape.n * shape.classes);
      const logits = normalArray(random, shape.n * shape.classes, 2);
      const labels = Array.from({ length: shape.n }, () => random.integer(shape.classes));
      const { dlogits } = softmaxCrossEntropy(logits, labels, shape);
      const numeric = centralDifferenceGradient(
        () => softmaxCrossEntropy(logits, labels, shape).loss,
        logits,
      );
      assertAllClose(dlogits, numeric, GRADIENT_TOLERANCE, "dlogits");
    },
  );
}

const BATCH_NORM_SHAPES: NhwcShape[] = [
  { n: 1, h: 5, w: 5, c: 3 },
  { n: 3, h: 7, w: 7, c: 5 },
  { n: 3, h: 1, w: 1, c: 17 },
];

function randomBatchNorm(random: Random, shape: NhwcShape) {
  const parameters: BatchNormParameters = {
    gamma: f32Array(shape.c, () => random.uniform(0.5, 1.5)),
    beta: normalArray(random, shape.c, 0.5),
  };
  const running: BatchNormRunningStats = {
    runningMean: normalArray(random, shape.c, 0.5),
    runningVar: f32Array(shape.c, () => random.uniform(0.5, 1.5)),
  };
  // A per-channel offset and scale, so the statistics differ between channels.
  const x = Float64Array.from(
    { length: nhwcLength(shape) },
    (_, i) => Math.fround(random.normal() * (1 + (i % shape.c)) + (i % shape.c)),
  );
  return { parameters, running, x, dy: normalArray(random, x.length) };
}

Deno.test("batch norm: hand-computed train forward and running statistics", () => {
  // One channel holding 1, 2, 3, 6: mean 3, biased variance 3.5, unbiased 14/3.
  const shape = { n: 2, h: 1, w: 2, c: 1 };
  const x = Float64Array.of(1, 2, 3, 6);
  const result = batchNormTrainForward(
    x,
    { gamma: Float64Array.of(2), beta: Float64Array.of(0.5) },
    { runningMean: Float64Array.of(1), runningVar: Float64Array.of(2) },
    shape,
  );
  assert.deepEqual(Array.from(result.mean), [3]);
  assert.deepEqual(Array.from(result.variance), [3.5]);
  const invstd = 1 / Math.sqrt(3.5 + BATCH_NORM_EPS);
  assert.ok(Math.abs(result.invstd[0] - invstd) < 1e-15);
  assertAllClose(result.y, x.map((v) => 2 * (v - 3) * invstd + 0.5), FORWARD_TOLERANCE, "y");
  assertAllClose(result.runningMean, Float64Array.of(0.9 * 1 + 0.1 * 3), 1e-15, "running mean");
  assertAllClose(result.runningVar, Float64Array.of(0.9 * 2 + 0.1 * 14 / 3), 1e-15, "running var");
  assert.throws(() =>
    batchNormTrainForward(
      Float64Array.of(1),
      { gamma: Float64Array.of(1), beta: Float64Array.of(0) },
      { runningMean: Float64Array.of(0), runningVar: Float64Array.of(1) },
      { n: 1, h: 1, w: 1, c: 1 },
    ), RangeError);
});

Deno.test("batch norm: train output has per-channel mean beta and variance gamma²·var/(var+eps)", () => {
  const shape = { n: 3, h: 7, w: 7, c: 5 };
  const { parameters, running, x } = randomBatchNorm(new Random(5), shape);
  const { y, variance } = batchNormTrainForward(x, parameters, running, shape);
  const count = shape.n * shape.h * shape.w;
  for (let channel = 0; channel < shape.c; channel++) {
    const values = y.filter((_, i) => i % shape.c === channel);
    const mean = values.reduce((sum, v) => sum + v, 0) / count;
    const outputVariance = values.reduce((sum, v) => sum + (v - mean) ** 2, 0) / count;
    const expected = parameters.gamma[channel] ** 2 * variance[channel] /
      (variance[channel] + BATCH_NORM_EPS);
    assert.ok(Math.abs(mean - parameters.beta[channel]) < 1e-12);
    assert.ok(Math.abs(outputVariance - expected) < 1e-12);
  }
});

Deno.test("batch norm: hand-computed eval forward", () => {
  const shape = { n: 1, h: 1, w: 2, c: 2 };
  const y = batchNormEvalForward(
    Float64Array.of(1, 2, 3, 4),
    { gamma: Float64Array.of(2, 3), beta: Float64Array.of(0.5, -1) },
    { runningMean: Float64Array.of(1, 0), runningVar: Float64Array.of(4, 1) },
    shape,
  );
  const [invstd0, invstd1] = [1 / Math.sqrt(4 + BATCH_NORM_EPS), 1 / Math.sqrt(1 + BATCH_NORM_EPS)];
  const expected = [0.5, 3 * 2 * invstd1 - 1, 2 * 2 * invstd0 + 0.5, 3 * 4 * invstd1 - 1];
  assertAllClose(y, expected, FORWARD_TOLERANCE, "eval y");
});

for (const shape of BATCH_NORM_SHAPES) {
  Deno.test(
    `batch norm: train backward matches finite differences for ${JSON.stringify(shape)}`,
    () => {
      const { parameters, running, x, dy } = randomBatchNorm(new Random(shape.c + shape.h), shape);
      const saved = batchNormTrainForward(x, parameters, running, shape);
      const { dx, dgamma, dbeta } = batchNormTrainBackward(x, dy, parameters, saved, shape);
      // Every finite-difference evaluation recomputes the batch statistics from the perturbed x.
      const forward = () => batchNormTrainForward(x, parameters, running, shape).y;
      assertGradient(dx, forward, dy, x, "train dx");
      assertGradient(dgamma, forward, dy, parameters.gamma, "train dgamma");
      assertGradient(dbeta, forward, dy, parameters.beta, "train dbeta");
    },
  );

  Deno.test(
    `batch norm: eval backward matches finite differences for ${JSON.stringify(shape)}`,
    () => {
      const { parameters, running, x, dy } = randomBatchNorm(new Random(shape.c * shape.w), shape);
      const { dx, dgamma, dbeta } = batchNormEvalBackward(x, dy, parameters, running, shape);
      const forward = () => batchNormEvalForward(x, parameters, running, shape);
      assertGradient(dx, forward, dy, x, "eval dx");
      assertGradient(dgamma, forward, dy, parameters.gamma, "eval dgamma");
      assertGradient(dbeta, forward, dy, parameters.beta, "eval dbeta");
    },
  );
}

Deno.test("layout: OIHW <-> OHWI and NCHW <-> NHWC", () => {
  const extent = { cout: 5, cin: 3, k: 3 };
  const oihw = Float64Array.from({ length: 5 * 3 * 3 * 3 }, (_, i) => i);
  const ohwi = oihwToOhwi(oihw, extent);
  const [o, i, kh, kw] = [4, 1, 2, 0];
  assert.equal(ohwi[((o * 3 + kh) * 3 + kw) * 3 + i], oihw[((o * 3 + i) * 3 + kh) * 3 + kw]);
  assert.deepEqual(ohwiToOihw(ohwi, extent), oihw);
  const shape = { n: 3, h: 5, w: 7, c: 2 };
  const nchw = Float64Array.from({ length: nhwcLength(shape) }, (_, i) => i);
  const nhwc = nchwToNhwc(nchw, shape);
  const [n, c, h, w] = [2, 1, 4, 6];
  assert.equal(nhwc[((n * 5 + h) * 7 + w) * 2 + c], nchw[((n * 2 + c) * 5 + h) * 7 + w]);
  assert.deepEqual(nhwcToNchw(nhwc, shape), nchw);
});

const TINY_BASIC: ResNetArchitecture = {
  block: "basic",
  blocksPerStage: [1, 1, 1, 1],
  widthMultiplier: 1 / 16,
  classes: 10,
};
const TINY_BOTTLENECK: ResNetArchitecture = {
  block: "bottleneck",
  blocksPerStage: [2, 1, 1, 1],
  widthMultiplier: 1 / 32,
  classes: 10,
};

Deno.test("resnet: state dict names and shapes follow the PyTorch model", () => {
  const basic = resnetStateDictShapes(TINY_BASIC);
  const trainable = [...basic].filter(([, entry]) => entry.trainable).map(([name]) => name);
  assert.deepEqual(trainable.slice(0, 9), [
    "conv.0.weight",
    "conv.1.weight",
    "conv.1.bias",
    "conv2_x.0.residual_function.0.weight",
    "conv2_x.0.residual_function.1.weight",
    "conv2_x.0.residual_function.1.bias",
    "conv2_x.0.residual_function.3.weight",
    "conv2_x.0.residual_function.4.weight",
    "conv2_x.0.residual_function.4.bias",
  ]);
  assert.deepEqual(basic.get("conv.1.num_batches_tracked"), { shape: [], trainable: false });
  // Stage 2 keeps 4 channels at stride 1, so its shortcut is the identity.
  assert.ok(!basic.has("conv2_x.0.shortcut.0.weight"));
  assert.deepEqual(basic.get("conv3_x.0.residual_function.0.weight")?.shape, [8, 3, 3, 4]);
  assert.deepEqual(basic.get("conv3_x.0.shortcut.0.weight")?.shape, [8, 1, 1, 4]);
  assert.deepEqual(basic.get("fc.weight")?.shape, [10, 32]);
  assert.equal(trainable.length, 3 + 4 * 6 + 3 * 3 + 2);

  const bottleneck = resnetStateDictShapes(TINY_BOTTLENECK);
  // Widths 2, 4, 8, 16 expand to 8, 16, 32, 64; the stride sits in the 3x3 conv.
  assert.deepEqual(bottleneck.get("conv2_x.0.residual_function.0.weight")?.shape, [2, 1, 1, 2]);
  assert.deepEqual(bottleneck.get("conv2_x.0.residual_function.6.weight")?.shape, [8, 1, 1, 2]);
  assert.deepEqual(bottleneck.get("conv2_x.0.shortcut.0.weight")?.shape, [8, 1, 1, 2]);
  assert.ok(!bottleneck.has("conv2_x.1.shortcut.0.weight"));
  assert.deepEqual(bottleneck.get("conv3_x.0.residual_function.0.weight")?.shape, [4, 1, 1, 8]);
  assert.deepEqual(bottleneck.get("conv3_x.0.residual_function.3.weight")?.shape, [4, 3, 3, 4]);
  assert.deepEqual(bottleneck.get("fc.weight")?.shape, [10, 64]);
});

for (const architecture of [TINY_BASIC, TINY_BOTTLENECK]) {
  Deno.test(`resnet: ${architecture.block} gradients match finite differences`, () => {
    const random = new Random(architecture.block === "basic" ? 11 : 12);
    const weights = randomResnetWeights(architecture, random);
    const shape = { n: 3, h: 8, w: 8, c: 3 };
    const input = normalArray(random, nhwcLength(shape));
    const labels = [3, 7, 1];
    const step = resnetTrainStep(architecture, weights, input, shape, labels);
    const loss = () => resnetTrainStep(architecture, weights, input, shape, labels).loss;

    const stateDict = resnetStateDictShapes(architecture);
    const trainable = [...stateDict].filter(([, entry]) => entry.trainable).map(([name]) => name);
    assert.deepEqual([...step.gradients.keys()].sort(), trainable.sort());
    // The full network is too slow to difference element by element, so a few random elements
    // of every parameter (and of the input) are checked; any wiring error shows up in all.
    const checks: [string, Float64Array, Float64Array][] = [
      ...trainable.map((name): [string, Float64Array, Float64Array] => [
        name,
        weights.get(name)!,
        step.gradients.get(name)!,
      ]),
      ["input", input, step.dinput],
    ];
    for (const [name, tensor, gradient] of checks) {
      const indices = Array.from({ length: 4 }, () => random.integer(tensor.length));
      const numeric = centralDifferenceAt(loss, tensor, indices);
      const analytic = Float64Array.from(indices, (index) => gradient[index]);
      // Relative to the whole gradient's scale: a sampled element may be tiny.
      const scale = Math.max(...gradient.map(Math.abs));
      const error = Math.max(...numeric.map((value, i) => Math.abs(value - analytic[i]))) / scale;
      assert.ok(error <= GRADIENT_TOLERANCE, `${name}: relative error ${error}`);
    }
  });
}

Deno.test("resnet: train step updates running statistics; eval mode uses them", () => {
  const random = new Random(13);
  const weights = randomResnetWeights(TINY_BASIC, random);
  const shape = { n: 3, h: 8, w: 8, c: 3 };
  const input = normalArray(random, nhwcLength(shape));
  const step = resnetTrainStep(TINY_BASIC, weights, input, shape, [0, 1, 2]);
  const train = resnetForward(TINY_BASIC, weights, input, shape, "train");
  assert.deepEqual(train.logits, step.logits);
  assert.deepEqual(train.runningStats, step.runningStats);
  assert.deepEqual(Array.from(step.runningStats.get("conv.1.num_batches_tracked")!), [1]);
  const buffers = [...resnetStateDictShapes(TINY_BASIC)].filter(([, entry]) => !entry.trainable);
  assert.deepEqual([...step.runningStats.keys()], buffers.map(([name]) => name));
  assert.ok(step.correct >= 0 && step.correct <= 3);

  const evalResult = resnetForward(TINY_BASIC, weights, input, shape, "eval");
  assert.equal(evalResult.runningStats.size, 0);
  // Eval mode normalises with running statistics, so one image's logits do not depend on the
  // rest of the batch, unlike in train mode.
  const first = input.subarray(0, nhwcLength(shape) / 3);
  const alone = resnetForward(TINY_BASIC, weights, first, { ...shape, n: 1 }, "eval");
  assertAllClose(alone.logits, evalResult.logits.subarray(0, 10), FORWARD_TOLERANCE, "eval");
  assert.ok(evalResult.logits.some((value, i) => value !== train.logits[i]));
});
