import assert from "node:assert/strict";
import { type DType, tensorDesc } from "../../src/gpu/tensor.ts";
import { ShapeError } from "../../src/ops/shape.ts";
import {
  createMetrics,
  crossEntropyEvaluate,
  crossEntropyTrain,
  LOSS_SCALE_SHAPE,
  METRICS_SHAPE,
  readMetrics,
  resetMetrics,
} from "../../src/ops/softmax_cross_entropy.ts";
import { submitCalls } from "../../src/plan/materialize.ts";
import { f32Tensor, gpuTest, poisonedTensor, readTensor, u32Tensor } from "../support/gpu.ts";
import { REDUCTION } from "../support/tolerances.ts";
import { assertAllClose } from "../support/reference/compare.ts";
import { centralDifferenceGradient } from "../support/reference/finite_difference.ts";
import { FINITE_DIFFERENCE } from "../support/tolerances.ts";
import { f32Array, Random } from "../support/reference/random.ts";
import { softmaxCrossEntropy } from "../support/reference/softmax_cross_entropy.ts";

// The loss is a scalar, so the harness's projection is not needed: the reference dlogits is
// checked directly against finite differences of the reference loss.
for (const [n, classes] of [[1, 10], [3, 10], [130, 7], [257, 3]]) {
  gpuTest(
    `softmax cross-entropy: loss, dlogits and correct count, batch ${n}, ${classes} classes`,
    async (gpu) => {
      const random = new Random(n * classes);
      const logits = f32Array(n * classes, () => random.uniform(-4, 4));
      const labels = Array.from({ length: n }, () => random.integer(classes));
      const shape = { n, classes };
      const expected = softmaxCrossEntropy(logits, labels, shape);
      const numeric = centralDifferenceGradient(
        () => softmaxCrossEntropy(logits, labels, shape).loss,
        logits,
      );
      assertAllClose(
        expected.dlogits,
        numeric,
        FINITE_DIFFERENCE,
        "reference dlogits vs finite differences",
      );

      const logitsTensor = f32Tensor(gpu, "logits", [n, classes], logits);
      const labelsTensor = u32Tensor(gpu, "labels", [n], labels);
      const metrics = createMetrics(gpu);
      const dlogits = poisonedTensor(gpu, "dlogits", [n, classes]);
      const step = crossEntropyTrain({
        logits: logitsTensor,
        labels: labelsTensor,
        metrics,
        dlogits,
      });
      // Two steps accumulate: the metrics are sums until reset.
      await submitCalls(gpu, [...step, ...step]);
      const twice = await readMetrics(gpu, metrics);
      assertAllClose(
        [twice.lossSum],
        [2 * expected.loss * n],
        REDUCTION,
        "loss sum over two steps",
      );
      assert.equal(twice.correct, 2 * expected.correct);
      assert.equal(twice.samples, 2 * n);
      assertAllClose(await readTensor(gpu, dlogits), expected.dlogits, REDUCTION, "GPU dlogits");

      resetMetrics(gpu, metrics);
      const confusion = u32Tensor(
        gpu,
        "confusion",
        [classes, classes],
        new Uint32Array(classes ** 2),
      );
      await submitCalls(
        gpu,
        crossEntropyEvaluate({
          logits: logitsTensor,
          labels: labelsTensor,
          metrics,
          confusion,
        }),
      );
      const evaluated = await readMetrics(gpu, metrics);
      // Row = true class, column = predicted class (argmax, ties to the lowest index).
      const expectedConfusion = new Uint32Array(classes * classes);
      for (let row = 0; row < n; row++) {
        const scores = Array.from(logits.subarray(row * classes, (row + 1) * classes));
        expectedConfusion[labels[row] * classes + scores.indexOf(Math.max(...scores))]++;
      }
      const gpuConfusion = new Uint32Array((await readTensor(gpu, confusion)).buffer);
      assert.deepEqual(Array.from(gpuConfusion), Array.from(expectedConfusion));
      assertAllClose(
        [evaluated.lossSum / evaluated.samples],
        [expected.loss],
        REDUCTION,
        "evaluate loss",
      );
      assert.equal(evaluated.correct, expected.correct);
    },
  );
}

gpuTest(
  "softmax cross-entropy: with a loss scale, dlogits is the unscaled gradient times the scale, exactly",
  async (gpu) => {
    const [n, classes] = [5, 10];
    const random = new Random(99);
    const logits = f32Array(n * classes, () => random.uniform(-4, 4));
    const labels = Array.from({ length: n }, () => random.integer(classes));
    const logitsTensor = f32Tensor(gpu, "logits", [n, classes], logits);
    const labelsTensor = u32Tensor(gpu, "labels", [n], labels);
    const scale = 2 ** 16;
    const state = new Uint32Array(LOSS_SCALE_SHAPE[0]);
    new Float32Array(state.buffer, 0, 1)[0] = scale;
    const lossScale = u32Tensor(gpu, "loss scale", LOSS_SCALE_SHAPE, state);
    const plain = poisonedTensor(gpu, "dlogits", [n, classes]);
    const scaled = poisonedTensor(gpu, "scaled dlogits", [n, classes]);
    const metrics = createMetrics(gpu);
    const tensors = { logits: logitsTensor, labels: labelsTensor, metrics };
    await submitCalls(gpu, [
      ...crossEntropyTrain({ ...tensors, dlogits: plain }),
      ...crossEntropyTrain({ ...tensors, dlogits: scaled, lossScale }),
    ]);
    const unscaled = await readTensor(gpu, plain);
    const expected = softmaxCrossEntropy(logits, labels, { n, classes });
    assertAllClose(unscaled, expected.dlogits, REDUCTION, "unscaled dlogits");
    assert.deepEqual(
      Array.from(await readTensor(gpu, scaled)),
      Array.from(unscaled, (value) => value * scale),
    );
    // The loss itself is not scaled.
    assertAllClose(
      [(await readMetrics(gpu, metrics)).lossSum],
      [2 * expected.loss * n],
      REDUCTION,
      "loss sum",
    );
  },
);

gpuTest(
  "softmax cross-entropy: ties go to the lowest class index, as the reference",
  async (gpu) => {
    const logits = [1, 3, 3, 0, /* row 2 */ 2, 2, 2, 2];
    const labels = [2, 0];
    const metrics = createMetrics(gpu);
    await submitCalls(
      gpu,
      crossEntropyEvaluate({
        logits: f32Tensor(gpu, "logits", [2, 4], logits),
        labels: u32Tensor(gpu, "labels", [2], labels),
        metrics,
        confusion: u32Tensor(gpu, "confusion", [4, 4], new Uint32Array(16)),
      }),
    );
    const expected = softmaxCrossEntropy(Float64Array.from(logits), labels, { n: 2, classes: 4 });
    assert.equal(expected.correct, 1);
    assert.equal((await readMetrics(gpu, metrics)).correct, expected.correct);
  },
);

gpuTest("softmax cross-entropy: createMetrics makes a u32 [3] tensor", async (gpu) => {
  const metrics = createMetrics(gpu);
  assert.equal(metrics.dtype, "u32");
  assert.deepEqual(metrics.shape, [...METRICS_SHAPE]);
  assert.deepEqual(await readMetrics(gpu, metrics), { lossSum: 0, correct: 0, samples: 0 });
  metrics.buffer.destroy();
});

Deno.test("softmax cross-entropy: a tensor of the wrong element type is refused, naming it", () => {
  const [n, classes] = [4, 10];
  const shapes = {
    logits: { shape: [n, classes], dtype: "f32" },
    labels: { shape: [n], dtype: "u32" },
    metrics: { shape: [...METRICS_SHAPE], dtype: "u32" },
    dlogits: { shape: [n, classes], dtype: "f32" },
    confusion: { shape: [classes, classes], dtype: "u32" },
  } as const;
  type Name = keyof typeof shapes;
  /** Every tensor of the element type the op expects but `wrong`, which holds `dtype`. */
  const tensors = (wrong?: Name, dtype?: DType) => {
    const make = (name: Name) =>
      tensorDesc(name, shapes[name].shape, name === wrong ? dtype : shapes[name].dtype);
    return {
      logits: make("logits"),
      labels: make("labels"),
      metrics: make("metrics"),
      dlogits: make("dlogits"),
      confusion: make("confusion"),
    };
  };
  const refused = (name: Name, dtype: DType) => (error: unknown) =>
    error instanceof ShapeError &&
    error.message ===
      `cross entropy: ${name} holds ${dtype} elements, expected ${shapes[name].dtype}`;
  const train = (t: ReturnType<typeof tensors>) =>
    crossEntropyTrain({
      logits: t.logits,
      labels: t.labels,
      metrics: t.metrics,
      dlogits: t.dlogits,
    });
  const evaluate = (t: ReturnType<typeof tensors>) =>
    crossEntropyEvaluate({
      logits: t.logits,
      labels: t.labels,
      metrics: t.metrics,
      confusion: t.confusion,
    });
  // Labels as f32 (or i32), as float class scores would be, are refused by both entry points.
  for (const dtype of ["f32", "i32"] as const) {
    assert.throws(() => train(tensors("labels", dtype)), refused("labels", dtype));
    assert.throws(() => evaluate(tensors("labels", dtype)), refused("labels", dtype));
  }
  assert.throws(() => train(tensors("metrics", "f32")), refused("metrics", "f32"));
  assert.throws(() => evaluate(tensors("metrics", "f32")), refused("metrics", "f32"));
  assert.throws(() => train(tensors("logits", "u32")), refused("logits", "u32"));
  assert.throws(() => evaluate(tensors("logits", "u32")), refused("logits", "u32"));
  assert.throws(() => train(tensors("dlogits", "u32")), refused("dlogits", "u32"));
  // The head runs in f32 whatever the activations' type: f16 logits are refused.
  assert.throws(() => train(tensors("logits", "f16")), refused("logits", "f16"));
  assert.throws(() => evaluate(tensors("logits", "f16")), refused("logits", "f16"));
  assert.throws(() => evaluate(tensors("confusion", "f32")), refused("confusion", "f32"));
  assert.equal(train(tensors()).length, 1);
  assert.equal(evaluate(tensors()).length, 1);
});
