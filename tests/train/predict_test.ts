/**
 * Prediction: the CPU softmax and ranking, and the Predictor's logits, checked against the
 * Evaluator (the same network on the same images must give the same loss and accuracy) and
 * against themselves under another batching.
 */
import assert from "node:assert/strict";
import { IMAGE_BYTES } from "../../src/data/cifar.ts";
import { resnetConfig } from "../../src/model/config.ts";
import { ModelWeights } from "../../src/model/weights.ts";
import { Evaluator } from "../../src/train/evaluator.ts";
import { Predictor, softmax, topClasses } from "../../src/train/predict.ts";
import { makeSplit } from "../support/data_fixtures.ts";
import { gpuTest } from "../support/gpu.ts";
import { REDUCTION } from "../support/tolerances.ts";
import { assertAllClose } from "../support/reference/compare.ts";
import { KernelPolicy } from "../../src/ops/policy.ts";

Deno.test("softmax: probabilities that sum to 1, and no overflow for large logits", () => {
  const probabilities = softmax([1, 2, 3]);
  const expected = [1, 2, 3].map((x) => Math.exp(x) / (Math.E + Math.E ** 2 + Math.E ** 3));
  probabilities.forEach((p, i) => assert.ok(Math.abs(p - expected[i]) < 1e-15));
  assert.deepEqual(softmax([1000, 1000]), [0.5, 0.5]);
  assert.deepEqual(softmax([-1000, 0]), [0, 1]);
});

Deno.test("topClasses: the k likeliest, likeliest first, ties in class order", () => {
  const top = topClasses(Float32Array.of(0, 3, 1, 3, -2), 3);
  assert.deepEqual(top.map(({ classIndex }) => classIndex), [1, 3, 2]);
  assert.equal(top[0].probability, top[1].probability);
  assert.ok(top[1].probability > top[2].probability);
  assert.equal(topClasses([1, 2], 3).length, 2);
});

gpuTest(
  "Predictor: each image's logits, in order, whatever the batching, as the Evaluator sees them",
  async (gpu) => {
    const weights = new ModelWeights(gpu, resnetConfig("resnet18", 1 / 16));
    weights.initialize(3);
    const split = makeSplit(7, 11);
    const images = Array.from(
      { length: split.count },
      (_, i) => split.images.subarray(i * IMAGE_BYTES, (i + 1) * IMAGE_BYTES),
    );

    // Batches of 3: the third is padded with copies of the last image.
    const batched = await Predictor.create(gpu, weights, images, KernelPolicy.forAdapter(gpu), {
      maxBatch: 3,
    });
    const logits = await batched.logits();
    batched.destroy();
    assert.equal(logits.length, 7);
    assert.ok(logits.every((row) => row.length === 10 && row.every(Number.isFinite)));

    // Evaluation-mode batch norm makes each image's logits independent of its batch; the same
    // kernels at another batch size may still sum in another order, hence a tolerance.
    for (const index of [0, 6]) {
      const alone = await Predictor.create(
        gpu,
        weights,
        [images[index]],
        KernelPolicy.forAdapter(gpu),
      );
      const [single] = await alone.logits();
      alone.destroy();
      assertAllClose(logits[index], single, REDUCTION, `image ${index} alone`);
    }

    const evaluator = await Evaluator.create(gpu, weights, split, 32, KernelPolicy.forAdapter(gpu));
    const evaluation = await evaluator.evaluate();
    evaluator.destroy();
    const losses = logits.map((row, i) => -Math.log(softmax(row)[split.labels[i]]));
    assertAllClose(
      [losses.reduce((a, b) => a + b) / losses.length],
      [evaluation.loss],
      REDUCTION,
      "mean cross-entropy of the predicted logits",
    );
    const correct = logits.filter((row, i) => topClasses(row, 1)[0].classIndex === split.labels[i]);
    assert.equal(correct.length, Math.round(evaluation.accuracy * split.count));
    weights.destroy();
  },
);
