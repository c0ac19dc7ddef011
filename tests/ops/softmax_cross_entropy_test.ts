import assert from "node:assert/strict";
import { submitDispatches } from "../../src/gpu/dispatch.ts";
import {
  createMetrics,
  crossEntropyEvaluate,
  crossEntropyTrain,
  readMetrics,
  resetMetrics,
} from "../../src/ops/softmax_cross_entropy.ts";
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
      const step = await crossEntropyTrain(gpu, {
        logits: logitsTensor,
        labels: labelsTensor,
        metrics,
        dlogits,
      });
      // Two steps accumulate: the metrics are sums until reset.
      submitDispatches(gpu, [step, step]);
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
      submitDispatches(gpu, [
        await crossEntropyEvaluate(gpu, {
          logits: logitsTensor,
          labels: labelsTensor,
          metrics,
          confusion,
        }),
      ]);
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
  "softmax cross-entropy: ties go to the lowest class index, as the reference",
  async (gpu) => {
    const logits = [1, 3, 3, 0, /* row 2 */ 2, 2, 2, 2];
    const labels = [2, 0];
    const metrics = createMetrics(gpu);
    submitDispatches(gpu, [
      await crossEntropyEvaluate(gpu, {
        logits: f32Tensor(gpu, "logits", [2, 4], logits),
        labels: u32Tensor(gpu, "labels", [2], labels),
        metrics,
        confusion: u32Tensor(gpu, "confusion", [4, 4], new Uint32Array(16)),
      }),
    ]);
    const expected = softmaxCrossEntropy(Float64Array.from(logits), labels, { n: 2, classes: 4 });
    assert.equal(expected.correct, 1);
    assert.equal((await readMetrics(gpu, metrics)).correct, expected.correct);
  },
);
