import assert from "node:assert/strict";
import type { Gpu } from "../../src/gpu/device.ts";
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
import {
  confusionMatrix,
  softmaxCrossEntropy,
  softmaxCrossEntropyViews,
} from "../support/reference/softmax_cross_entropy.ts";

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

for (const labelSmoothing of [0, 0.2]) {
  gpuTest(
    "softmax cross-entropy: with a loss scale, dlogits is the unscaled gradient times the scale, " +
      `exactly, label smoothing ${labelSmoothing}`,
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
        ...crossEntropyTrain({ ...tensors, dlogits: plain }, { labelSmoothing }),
        ...crossEntropyTrain({ ...tensors, dlogits: scaled, lossScale }, { labelSmoothing }),
      ]);
      const unscaled = await readTensor(gpu, plain);
      const expected = softmaxCrossEntropy(logits, labels, { n, classes }, labelSmoothing);
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
}

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

// Label smoothing (PyTorch's CrossEntropyLoss(label_smoothing)): odd class counts, batch 1, and
// batches that are no multiple of the workgroup (64).
for (const labelSmoothing of [0.1, 0.2]) {
  for (const [n, classes] of [[1, 10], [1, 7], [3, 7], [130, 7], [65, 10]]) {
    gpuTest(
      `softmax cross-entropy: label smoothing ${labelSmoothing}, batch ${n}, ${classes} classes`,
      async (gpu) => {
        const random = new Random(1000 * labelSmoothing + n * classes);
        const logits = f32Array(n * classes, () => random.uniform(-4, 4));
        const labels = Array.from({ length: n }, () => random.integer(classes));
        const shape = { n, classes };
        const expected = softmaxCrossEntropy(logits, labels, shape, labelSmoothing);
        assertAllClose(
          expected.dlogits,
          centralDifferenceGradient(
            () => softmaxCrossEntropy(logits, labels, shape, labelSmoothing).loss,
            logits,
          ),
          FINITE_DIFFERENCE,
          "reference smoothed dlogits vs finite differences",
        );

        const logitsTensor = f32Tensor(gpu, "logits", [n, classes], logits);
        const labelsTensor = u32Tensor(gpu, "labels", [n], labels);
        const metrics = createMetrics(gpu);
        const dlogits = poisonedTensor(gpu, "dlogits", [n, classes]);
        await submitCalls(
          gpu,
          crossEntropyTrain(
            { logits: logitsTensor, labels: labelsTensor, metrics, dlogits },
            { labelSmoothing },
          ),
        );
        const trained = await readMetrics(gpu, metrics);
        // Training reports the smoothed loss, what it optimises; accuracy is unchanged by it.
        assertAllClose([trained.lossSum], [expected.loss * n], REDUCTION, "smoothed loss sum");
        assert.equal(trained.correct, expected.correct);
        assert.equal(trained.samples, n);
        assertAllClose(await readTensor(gpu, dlogits), expected.dlogits, REDUCTION, "dlogits");

        // Evaluation reports the plain cross-entropy of the same logits.
        resetMetrics(gpu, metrics);
        await submitCalls(
          gpu,
          crossEntropyEvaluate({
            logits: logitsTensor,
            labels: labelsTensor,
            metrics,
            confusion: u32Tensor(
              gpu,
              "confusion",
              [classes, classes],
              new Uint32Array(classes ** 2),
            ),
          }),
        );
        const plain = softmaxCrossEntropy(logits, labels, shape);
        assertAllClose(
          [(await readMetrics(gpu, metrics)).lossSum],
          [plain.loss * n],
          REDUCTION,
          "evaluate's plain loss",
        );
      },
    );
  }
}

gpuTest(
  "softmax cross-entropy: smoothed loss and dlogits of uniform logits, derived by hand",
  async (gpu) => {
    // Uniform logits give p = 1/K for every class, so -log p[k] = log K for every k and the
    // smoothed loss is (1 - eps) log K + eps/K * K log K = log K whatever eps; the gradient is
    // (1/K - (1 - eps)[k == label] - eps/K) / n = (1 - eps)(1/K - [k == label]) / n.
    const [n, classes, eps] = [3, 7, 0.2];
    const logits = Array.from(
      { length: n * classes },
      (_, i) => [-2.5, 0, 3.25][Math.floor(i / 7)],
    );
    const labels = [0, 6, 3];
    const metrics = createMetrics(gpu);
    const dlogits = poisonedTensor(gpu, "dlogits", [n, classes]);
    await submitCalls(
      gpu,
      crossEntropyTrain({
        logits: f32Tensor(gpu, "logits", [n, classes], logits),
        labels: u32Tensor(gpu, "labels", [n], labels),
        metrics,
        dlogits,
      }, { labelSmoothing: eps }),
    );
    assertAllClose(
      [(await readMetrics(gpu, metrics)).lossSum],
      [n * Math.log(classes)],
      REDUCTION,
      "loss sum = n log K",
    );
    const expected = Array.from(
      { length: n * classes },
      (_, i) =>
        (1 - eps) * (1 / classes - (i % classes === labels[Math.floor(i / classes)] ? 1 : 0)) / n,
    );
    assertAllClose(await readTensor(gpu, dlogits), expected, REDUCTION, "dlogits");
  },
);

gpuTest(
  "softmax cross-entropy: one confident logit, training's smoothed loss and evaluate's plain one",
  async (gpu) => {
    // Logits [a, 0, ..., 0] with label 0: log-sum-exp is L = log(e^a + K - 1), the plain loss is
    // L - a, and the smoothed one L - (1 - eps) a - eps/K * a (sum_k -log p[k] = K L - a).
    const [classes, a, eps] = [10, 8, 0.2];
    const logits = Array.from({ length: classes }, (_, k) => k === 0 ? a : 0);
    const tensors = {
      logits: f32Tensor(gpu, "logits", [1, classes], logits),
      labels: u32Tensor(gpu, "labels", [1], [0]),
    };
    const trainMetrics = createMetrics(gpu);
    const evalMetrics = createMetrics(gpu);
    await submitCalls(gpu, [
      ...crossEntropyTrain({
        ...tensors,
        metrics: trainMetrics,
        dlogits: poisonedTensor(gpu, "dlogits", [1, classes]),
      }, { labelSmoothing: eps }),
      ...crossEntropyEvaluate({
        ...tensors,
        metrics: evalMetrics,
        confusion: u32Tensor(gpu, "confusion", [classes, classes], new Uint32Array(classes ** 2)),
      }),
    ]);
    const logSumExp = Math.log(Math.exp(a) + classes - 1);
    const smoothed = logSumExp - (1 - eps) * a - eps / classes * a;
    assertAllClose(
      [(await readMetrics(gpu, trainMetrics)).lossSum],
      [smoothed],
      REDUCTION,
      "smoothed loss",
    );
    // 1.4 against 0.003: evaluate does not smooth.
    assertAllClose(
      [(await readMetrics(gpu, evalMetrics)).lossSum],
      [logSumExp - a],
      REDUCTION,
      "plain loss",
    );
  },
);

/**
 * Evaluates [views * n, classes] logits with `views` views on the GPU and checks the metrics and
 * the confusion matrix against the reference's mean over views.
 */
async function checkViews(
  gpu: Gpu,
  logits: Float64Array,
  labels: number[],
  { n, classes, views }: { n: number; classes: number; views: number },
) {
  const expected = softmaxCrossEntropyViews(logits, labels, { n, classes, views });
  const metrics = createMetrics(gpu);
  const confusion = u32Tensor(gpu, "confusion", [classes, classes], new Uint32Array(classes ** 2));
  await submitCalls(
    gpu,
    crossEntropyEvaluate({
      logits: f32Tensor(gpu, "logits", [views * n, classes], logits),
      labels: u32Tensor(gpu, "labels", [n], labels),
      metrics,
      confusion,
    }, { views }),
  );
  const evaluated = await readMetrics(gpu, metrics);
  assertAllClose([evaluated.lossSum], [expected.loss * n], REDUCTION, "loss sum of the mean");
  assert.equal(evaluated.correct, expected.correct);
  assert.equal(evaluated.samples, n);
  assert.deepEqual(
    Array.from(new Uint32Array((await readTensor(gpu, confusion)).buffer)),
    Array.from(confusionMatrix(labels, expected.predictions, classes)),
  );
  return expected;
}

for (const [n, classes, views] of [[1, 10, 2], [5, 7, 2], [130, 10, 2], [4, 5, 3]]) {
  gpuTest(
    `softmax cross-entropy: evaluate averages ${views} views, batch ${n}, ${classes} classes`,
    async (gpu) => {
      const random = new Random(n * classes * views);
      const logits = f32Array(views * n * classes, () => random.uniform(-4, 4));
      const labels = Array.from({ length: n }, () => random.integer(classes));
      const expected = await checkViews(gpu, logits, labels, { n, classes, views });
      // The mean is not any one view: view 0 alone would score differently.
      const first = softmaxCrossEntropy(logits.subarray(0, n * classes), labels, { n, classes });
      assert.ok(Math.abs(first.loss - expected.loss) > 1e-3, "the views are averaged");
    },
  );
}

gpuTest(
  "softmax cross-entropy: evaluate's mean over 2 views breaks ties to the lowest class",
  async (gpu) => {
    // Integer logits: each mean is exact in f32, and each view alone has a single maximum.
    const view0 = [
      [1, 3, 2, 0], // mean [2, 2, 2, 0]: a three-way tie, class 0 predicted
      [0, 4, 1, 1], // mean [0, 2, 2, 1]: classes 1 and 2 tie, 1 predicted
      [0, 1, 5, 3], // mean [1, 1, 3, 3]: classes 2 and 3 tie, 2 predicted (label 3: wrong)
      [2, 0, 1, -1], // mean [1, 1, 1, 1]: all tie, class 0 predicted
    ];
    const view1 = [[3, 1, 2, 0], [0, 0, 3, 1], [2, 1, 1, 3], [0, 2, 1, 3]];
    const labels = [0, 2, 3, 0];
    const logits = Float64Array.from([...view0.flat(), ...view1.flat()]);
    const expected = await checkViews(gpu, logits, labels, { n: 4, classes: 4, views: 2 });
    assert.deepEqual(Array.from(expected.predictions), [0, 1, 2, 0]);
    assert.equal(expected.correct, 2);
  },
);

Deno.test("softmax cross-entropy: bad label smoothing, views or view counts are refused", () => {
  const [n, classes] = [3, 10];
  const f32 = (label: string, shape: number[]) => tensorDesc(label, shape, "f32");
  const u32 = (label: string, shape: readonly number[]) => tensorDesc(label, shape, "u32");
  const tensors = {
    logits: f32("logits", [n, classes]),
    labels: u32("labels", [n]),
    metrics: u32("metrics", METRICS_SHAPE),
  };
  const train = { ...tensors, dlogits: f32("dlogits", [n, classes]) };
  const confusion = u32("confusion", [classes, classes]);
  for (const labelSmoothing of [-0.1, 1, 1.5, NaN, Infinity]) {
    assert.throws(() => crossEntropyTrain(train, { labelSmoothing }), {
      name: "RangeError",
      message: `cross entropy: label smoothing must be in [0, 1), got ${labelSmoothing}`,
    });
  }
  for (const labelSmoothing of [0, 0.2, 0.999]) {
    const [call] = crossEntropyTrain(train, { labelSmoothing });
    assert.equal(call.constants.LABEL_SMOOTHING, labelSmoothing);
  }
  for (const views of [0, -1, 1.5, NaN]) {
    assert.throws(() => crossEntropyEvaluate({ ...tensors, confusion }, { views }), {
      name: "RangeError",
      message: `cross entropy: views must be a whole number >= 1, got ${views}`,
    });
  }
  // Logits that are not views x labels rows: 3 rows for 2 views of 3 labels, 7 for 2 of 3.
  for (const rows of [3, 7]) {
    const logits = f32("logits", [rows, classes]);
    assert.throws(() => crossEntropyEvaluate({ ...tensors, logits, confusion }, { views: 2 }), {
      name: "ShapeError",
      message: `cross entropy: logits have ${rows} rows, expected 2 views x 3 labels = 6`,
    });
  }
  const logits = f32("logits", [2 * n, classes]);
  const [call] = crossEntropyEvaluate({ ...tensors, logits, confusion }, { views: 2 });
  assert.equal(call.constants.VIEWS, 2);
  assert.equal(call.constants.BATCH, n);
  // One view by default: the logits are the labels' rows.
  assert.equal(crossEntropyEvaluate({ ...tensors, confusion })[0].constants.VIEWS, 1);
  assert.throws(() => crossEntropyEvaluate({ ...tensors, logits, confusion }), ShapeError);
});
