/**
 * A whole ResNet on the GPU against the f64 CPU reference of the same network
 * (tests/support/reference/resnet.ts, itself held to PyTorch by reference_pytorch_test.ts): loss,
 * logits, every parameter gradient and the updated running statistics of one training step;
 * the evaluation plan's logits with running statistics.
 */
import assert from "node:assert/strict";
import { readBuffer } from "../../src/gpu/buffer.ts";
import { submitDispatches } from "../../src/gpu/dispatch.ts";
import type { Gpu } from "../../src/gpu/device.ts";
import { createTensor } from "../../src/gpu/tensor.ts";
import type { ResNetConfig } from "../../src/model/config.ts";
import { ModelWeights } from "../../src/model/weights.ts";
import { createMetrics, readMetrics } from "../../src/ops/softmax_cross_entropy.ts";
import { StepPlan } from "../../src/plan/plan.ts";
import {
  activationTensor,
  f32Tensor,
  gpuTest,
  readTensor,
  roundTo,
  u32Tensor,
} from "../support/gpu.ts";
import { F16_NETWORK, NETWORK } from "../support/tolerances.ts";
import { assertAllClose } from "../support/reference/compare.ts";
import { f32Array, Random } from "../support/reference/random.ts";
import {
  randomResnetWeights,
  resnetForward,
  resnetTrainStep,
} from "../support/reference/resnet.ts";
import { KernelPolicy } from "../../src/ops/policy.ts";

const BATCH = 3;
const inputShape = { n: BATCH, h: 32, w: 32, c: 3 };

const architectures: Record<string, ResNetConfig> = {
  "basic blocks, one per stage, width 1/16": {
    block: "basic",
    blocksPerStage: [1, 1, 1, 1],
    widthMultiplier: 1 / 16,
    classes: 10,
  },
  "bottleneck blocks [2,1,1,1], width 1/32": {
    block: "bottleneck",
    blocksPerStage: [2, 1, 1, 1],
    widthMultiplier: 1 / 32,
    classes: 10,
  },
};

/** Uploads a reference state dict (project layout, f32-representable) into a ModelWeights. */
function uploadReferenceWeights(
  gpu: Gpu,
  config: ResNetConfig,
  reference: Map<string, Float64Array>,
) {
  const weights = new ModelWeights(gpu, config);
  const pick = (names: string[]) =>
    new Map(names.map((name) => [name, Float32Array.from(reference.get(name)!)]));
  weights.uploadParameters(pick(weights.parameterLayout.entries.map(({ spec }) => spec.name)));
  weights.uploadState(
    pick(weights.stateLayout.entries.map(({ spec }) => spec.name)),
    Uint32Array.from(
      weights.batchNormNames,
      (bn) => reference.get(`${bn}.num_batches_tracked`)?.[0] ?? 0,
    ),
  );
  return weights;
}

for (const [name, config] of Object.entries(architectures)) {
  gpuTest(
    `whole network, ${name}, batch ${BATCH}: one training step matches the f64 reference`,
    async (gpu) => {
      const random = new Random(2024);
      const reference = randomResnetWeights(config, random);
      const input = f32Array(BATCH * 32 * 32 * 3, () => random.normal());
      const labels = Array.from({ length: BATCH }, () => random.integer(10));
      const expected = resnetTrainStep(config, reference, input, inputShape, labels);

      const weights = uploadReferenceWeights(gpu, config, reference);
      const metrics = createMetrics(gpu);
      const logits = createTensor(gpu, "logits", [BATCH, 10]);
      const plan = await StepPlan.build(gpu, weights, "train", {
        input: f32Tensor(gpu, "input", [BATCH, 32, 32, 3], input),
        labels: u32Tensor(gpu, "labels", [BATCH], labels),
        metrics,
        logits,
      }, KernelPolicy.forAdapter(gpu));
      assert.ok(
        plan.memory.activations < plan.memory.activationsWithoutReuse,
        "buffers are reused",
      );
      submitDispatches(gpu, plan.dispatches);

      assertAllClose(await readTensor(gpu, logits), expected.logits, NETWORK, "logits");
      const { lossSum, correct, samples } = await readMetrics(gpu, metrics);
      assertAllClose([lossSum / samples], [expected.loss], NETWORK, "loss");
      assert.equal(correct, expected.correct);
      const gradients = await weights.downloadGradients();
      assert.equal(gradients.size, expected.gradients.size);
      for (const [parameter, gradient] of expected.gradients) {
        assertAllClose(gradients.get(parameter)!, gradient, NETWORK, `gradient of ${parameter}`);
      }
      const state = await weights.downloadState();
      for (const [stat, values] of expected.runningStats) {
        if (stat.endsWith("num_batches_tracked")) {
          assert.equal(
            state
              .numBatchesTracked[
                weights.batchNormNames.indexOf(stat.replace(/\.num_batches_tracked$/, ""))
              ],
            values[0],
          );
        } else {
          assertAllClose(state.values.get(stat)!, values, NETWORK, stat);
        }
      }
      plan.destroy();
      weights.destroy();
    },
  );

  gpuTest(
    `whole network, ${name}: the evaluation plan uses the running statistics`,
    async (gpu) => {
      const random = new Random(77);
      const reference = randomResnetWeights(config, random);
      const input = f32Array(BATCH * 32 * 32 * 3, () => random.normal());
      const labels = Array.from({ length: BATCH }, () => random.integer(10));
      const expected = resnetForward(config, reference, input, inputShape, "eval");
      const trainMode = resnetForward(config, reference, input, inputShape, "train");
      // The reference's random running statistics make the two modes differ clearly.
      assert.ok(
        Math.max(...expected.logits.map((v, i) => Math.abs(v - trainMode.logits[i]))) > 1e-2,
      );

      const weights = uploadReferenceWeights(gpu, config, reference);
      const logits = createTensor(gpu, "logits", [BATCH, 10]);
      const before = await readBuffer(gpu, weights.state);
      const plan = await StepPlan.build(gpu, weights, "eval", {
        input: f32Tensor(gpu, "input", [BATCH, 32, 32, 3], input),
        labels: u32Tensor(gpu, "labels", [BATCH], labels),
        metrics: createMetrics(gpu),
        confusion: createTensor(gpu, "confusion", [10, 10], "u32"),
        logits,
      }, KernelPolicy.forAdapter(gpu));
      submitDispatches(gpu, plan.dispatches);
      assertAllClose(await readTensor(gpu, logits), expected.logits, NETWORK, "eval logits");
      assert.deepEqual(
        new Uint8Array(await readBuffer(gpu, weights.state)),
        new Uint8Array(before),
        "eval leaves running statistics alone",
      );
      plan.destroy();
      weights.destroy();
    },
  );
}

/**
 * f16 activations: the forward (logits, loss) and the classifier's gradients against the f64
 * reference on the same (f16-rounded) input. The other gradients are not compared: this network's
 * are ill-conditioned at batch 3 (the f64 reference itself moves 10-19% in the lower layers' batch-norm
 * gradients when only its input is rounded to f16, from ReLU masks flipping and batch statistics
 * over 12 values), so each op's f16 gradients are checked on their own in tests/ops/, and training
 * in f16 against f32 in tests/train/f16_training_test.ts.
 */
gpuTest(
  "whole network in f16: the forward and the classifier's gradients match the f64 reference",
  async (gpu) => {
    const config = architectures["basic blocks, one per stage, width 1/16"];
    const random = new Random(2024);
    const reference = randomResnetWeights(config, random);
    const input = roundTo(f32Array(BATCH * 32 * 32 * 3, () => random.normal()), "f16");
    const labels = Array.from({ length: BATCH }, () => random.integer(10));
    const expected = resnetTrainStep(config, reference, input, inputShape, labels);
    const weights = uploadReferenceWeights(gpu, config, reference);
    const metrics = createMetrics(gpu);
    const logits = createTensor(gpu, "logits", [BATCH, 10]);
    const plan = await StepPlan.build(gpu, weights, "train", {
      input: activationTensor(gpu, "input", [BATCH, 32, 32, 3], input, "f16"),
      labels: u32Tensor(gpu, "labels", [BATCH], labels),
      metrics,
      logits,
    }, KernelPolicy.forAdapter(gpu));
    submitDispatches(gpu, plan.dispatches);
    assertAllClose(await readTensor(gpu, logits), expected.logits, F16_NETWORK, "f16 logits");
    const { lossSum, samples } = await readMetrics(gpu, metrics);
    assertAllClose([lossSum / samples], [expected.loss], F16_NETWORK, "f16 loss");
    const gradients = await weights.downloadGradients();
    for (const parameter of ["fc.weight", "fc.bias"]) {
      const expectedGradient = expected.gradients.get(parameter)!;
      assertAllClose(gradients.get(parameter)!, expectedGradient, F16_NETWORK, `f16 d${parameter}`);
    }
    // Every gradient is finite: nothing overflowed f16 or became NaN in the backward.
    for (const [parameter, gradient] of gradients) {
      assert.ok(gradient.every(Number.isFinite), `f16 d${parameter} is finite`);
    }
    plan.destroy();
    weights.destroy();
  },
);
