/**
 * End to end, the pieces learn: a small ResNet trained with Adam on one fixed batch of 32
 * random images with random labels (pure memorisation) drives the training loss below 0.05
 * within a bounded number of steps, one submit per step as in training.
 */
import assert from "node:assert/strict";
import { submitCommands } from "../../src/gpu/dispatch.ts";
import { ModelWeights } from "../../src/model/weights.ts";
import { Optimizer } from "../../src/train/optimizer.ts";
import { createMetrics, readMetrics, resetMetrics } from "../../src/ops/softmax_cross_entropy.ts";
import { StepPlan } from "../../src/plan/plan.ts";
import { f32Tensor, gpuTest, u32Tensor } from "../support/gpu.ts";
import { f32Array, Random } from "../support/reference/random.ts";
import { KernelPolicy } from "../../src/ops/policy.ts";

const BATCH = 32;
const MAX_STEPS = 150;

gpuTest(
  `a small ResNet memorises one batch of ${BATCH}: loss below 0.05 within ${MAX_STEPS} steps`,
  async (gpu) => {
    const random = new Random(5);
    const weights = new ModelWeights(gpu, {
      block: "basic",
      blocksPerStage: [1, 1, 1, 1],
      widthMultiplier: 1 / 8,
      classes: 10,
    });
    weights.initialize(5);
    const metrics = createMetrics(gpu);
    const plan = await StepPlan.build(gpu, weights, "train", {
      input: f32Tensor(
        gpu,
        "input",
        [BATCH, 32, 32, 3],
        f32Array(BATCH * 32 * 32 * 3, () => random.normal()),
      ),
      labels: u32Tensor(
        gpu,
        "labels",
        [BATCH],
        Array.from({ length: BATCH }, () => random.integer(10)),
      ),
      metrics,
    }, KernelPolicy.forAdapter(gpu));
    const optimizer = await Optimizer.create(
      gpu,
      { params: weights.params, grads: weights.grads, size: weights.parameterLayout.size },
      { kind: "adam", lr: 3e-3 },
    );
    const losses: number[] = [];
    for (let step = 0; step < MAX_STEPS; step++) {
      resetMetrics(gpu, metrics);
      optimizer.prepareStep(3e-3);
      submitCommands(gpu, [...plan.commands, ...optimizer.commands]);
      if (step % 10 === 0 || step === MAX_STEPS - 1) {
        const { lossSum, samples } = await readMetrics(gpu, metrics);
        losses.push(lossSum / samples);
        if (losses.at(-1)! < 0.05) break;
      }
    }
    assert.ok(
      losses.at(-1)! < 0.05,
      `loss every 10 steps: ${losses.map((l) => l.toFixed(3)).join(" ")}`,
    );
    assert.ok(losses[0] > 1.5, `the first step's loss ${losses[0]} should be near ln 10`);
    plan.destroy();
    optimizer.destroy();
    weights.destroy();
  },
);
