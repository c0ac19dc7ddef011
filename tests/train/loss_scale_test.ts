/**
 * Dynamic loss scaling in the optimizer (src/train/loss_scale.ts, shaders/optimizer.wgsl): the
 * update from gradients scaled by S is the reference's update from the unscaled ones; a step whose
 * gradients hold an Inf or NaN changes no parameter and no state bit, halves the scale and does not
 * advance Adam's step count; the scale grows after the interval of good steps, and never to Inf.
 */
import assert from "node:assert/strict";
import { readFloat32, uploadBuffer, writeBuffer } from "../../src/gpu/buffer.ts";
import type { Gpu } from "../../src/gpu/device.ts";
import { submitCommands } from "../../src/gpu/dispatch.ts";
import {
  LOSS_SCALE_DEFAULTS,
  type LossScaleConfig,
  LossScaleConfigError,
  resolveLossScaleConfig,
} from "../../src/train/loss_scale.ts";
import { Optimizer, type OptimizerConfig } from "../../src/train/optimizer.ts";
import { decodeCheckpoint, encodeCheckpoint } from "../../src/model/checkpoint.ts";
import { ModelWeights } from "../../src/model/weights.ts";
import { resnetConfig } from "../../src/model/config.ts";
import { gpuTest } from "../support/gpu.ts";
import { assertAllClose } from "../support/reference/compare.ts";
import { referenceOptimizer } from "../support/reference/optimizer.ts";
import { f32Array, Random } from "../support/reference/random.ts";
import { OPTIMIZER_STEPS } from "../support/tolerances.ts";

/** Elements of the test arena: a multiple of 64 floats (256 bytes), as the arena's layout. */
const LENGTH = 320;
const STEPS = 4;

interface Run {
  gpu: Gpu;
  optimizer: Optimizer;
  params: GPUBuffer;
  grads: GPUBuffer;
}

async function scaledOptimizer(
  gpu: Gpu,
  config: OptimizerConfig,
  params: Float64Array,
  lossScaling: LossScaleConfig,
): Promise<Run> {
  const paramBuffer = uploadBuffer(gpu, "params", Float32Array.from(params));
  const gradBuffer = uploadBuffer(gpu, "grads", new Float32Array(LENGTH));
  const optimizer = await Optimizer.create(
    gpu,
    { params: paramBuffer, grads: gradBuffer, size: LENGTH * 4 },
    config,
    { lossScaling },
  );
  return { gpu, optimizer, params: paramBuffer, grads: gradBuffer };
}

/** One step over `grads` as they arrive (already scaled) at rate `lr`. */
function step(run: Run, grads: Float32Array, lr: number): void {
  writeBuffer(run.gpu, run.grads, grads);
  run.optimizer.prepareStep(lr);
  submitCommands(run.gpu, run.optimizer.commands);
}

function destroy(run: Run): void {
  run.optimizer.destroy();
  run.params.destroy();
  run.grads.destroy();
}

/** Gradients of an overflowed step: mostly finite, one Inf, one NaN. */
function overflowed(random: Random): Float32Array<ArrayBuffer> {
  const grads = Float32Array.from(f32Array(LENGTH, () => random.uniform(-1, 1)));
  grads[5] = Infinity;
  grads[LENGTH - 1] = NaN;
  return grads;
}

for (
  const config of [
    { kind: "adam", lr: 0.05, weightDecay: 0.01 },
    { kind: "adamw", lr: 0.05 },
    { kind: "sgd", lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 5e-4 },
    { kind: "sgd", lr: 0.1 },
  ] satisfies OptimizerConfig[]
) {
  const name = `${config.kind}${"momentum" in config ? " with momentum" : ""}`;
  gpuTest(
    `loss scaling (${name}): scaled gradients give the reference's update; an overflow changes nothing`,
    async (gpu) => {
      const random = new Random(17);
      const initial = f32Array(LENGTH, () => random.uniform(-1, 1));
      const grads = Array.from(
        { length: STEPS },
        () => f32Array(LENGTH, () => random.uniform(-1, 1)),
      );
      const lrs = grads.map((_, i) => config.lr * (1 - i / STEPS));
      const reference = referenceOptimizer(config, LENGTH);
      const expected = initial.slice();
      grads.forEach((grad, i) => reference.step(expected, grad, lrs[i]));

      let scale = 2 ** 12;
      const run = await scaledOptimizer(gpu, config, initial, {
        initScale: scale,
        growthInterval: 1000,
      });
      for (let i = 0; i < STEPS; i++) {
        step(run, Float32Array.from(grads[i], (g) => g * scale), lrs[i]);
        if (i !== 1) continue;
        // An overflow after the second step: parameters and state stay bit for bit.
        const before = await readFloat32(gpu, run.params);
        const stateBefore = await run.optimizer.exportState();
        step(run, overflowed(random), config.lr);
        const stateAfter = await run.optimizer.exportState();
        assert.deepEqual(await readFloat32(gpu, run.params), before, "parameters after overflow");
        assert.deepEqual(stateAfter.buffers, stateBefore.buffers, "state after overflow");
        assert.deepEqual(stateAfter.lossScale, {
          scale: scale / 2,
          growthTracker: 0,
          skippedSteps: 1,
          appliedSteps: 2,
        });
        scale /= 2;
      }
      assertAllClose(
        Float64Array.from(await readFloat32(gpu, run.params), (p, i) => p - initial[i]),
        expected.map((p, i) => p - initial[i]),
        OPTIMIZER_STEPS,
        `${name}: displacement after ${STEPS} applied steps and one skipped`,
      );
      const state = await run.optimizer.exportState();
      for (const [key, values] of Object.entries(reference.state)) {
        assertAllClose(state.buffers[key], values, OPTIMIZER_STEPS, `${name}: ${key}`);
      }
      // The schedule counts every step prepared; Adam's bias corrections only the applied ones.
      assert.equal(state.step, STEPS + 1);
      assert.deepEqual(state.lossScale, {
        scale,
        growthTracker: STEPS - 2,
        skippedSteps: 1,
        appliedSteps: STEPS,
      });
      destroy(run);
    },
  );
}

gpuTest(
  "loss scaling: the scale grows after each interval of good steps, never to Inf",
  async (gpu) => {
    const random = new Random(3);
    const grads = () => Float32Array.from(f32Array(LENGTH, () => random.uniform(-1, 1)));
    const run = await scaledOptimizer(gpu, { kind: "sgd", lr: 0.01 }, new Float64Array(LENGTH), {
      initScale: 256,
      growthInterval: 3,
    });
    const scales = [];
    for (let i = 0; i < 7; i++) {
      step(run, grads(), 0.01);
      const { scale, growthTracker } = (await run.optimizer.readLossScale())!;
      scales.push([scale, growthTracker]);
    }
    assert.deepEqual(scales, [[256, 1], [256, 2], [512, 0], [512, 1], [512, 2], [1024, 0], [
      1024,
      1,
    ]]);
    // An overflow resets the count of good steps and halves the scale.
    step(run, overflowed(random), 0.01);
    assert.deepEqual(await run.optimizer.readLossScale(), {
      scale: 512,
      growthTracker: 0,
      skippedSteps: 1,
      appliedSteps: 7,
    });
    destroy(run);

    // At the top of f32's range the grown scale would be Inf: it stays, as GradScaler's does.
    const top = await scaledOptimizer(gpu, { kind: "sgd", lr: 0.01 }, new Float64Array(LENGTH), {
      initScale: 2 ** 127,
      growthInterval: 1,
    });
    step(top, new Float32Array(LENGTH), 0.01);
    assert.deepEqual(await top.optimizer.readLossScale(), {
      scale: 2 ** 127,
      growthTracker: 0,
      skippedSteps: 0,
      appliedSteps: 1,
    });
    destroy(top);
  },
);

gpuTest("loss scaling: the state survives a checkpoint and continues bit for bit", async (gpu) => {
  const random = new Random(8);
  const initial = f32Array(LENGTH, () => random.uniform(-1, 1));
  const grads = Array.from(
    { length: 5 },
    () => Float32Array.from(f32Array(LENGTH, () => random.uniform(-1e3, 1e3))),
  );
  grads[1] = overflowed(random);
  const config = { kind: "adam", lr: 0.01 } as const;
  const lossScaling = { initScale: 2 ** 20, growthInterval: 2 };
  const uninterrupted = await scaledOptimizer(gpu, config, initial, lossScaling);
  for (const grad of grads) step(uninterrupted, grad, 0.01);

  const first = await scaledOptimizer(gpu, config, initial, lossScaling);
  for (const grad of grads.slice(0, 3)) step(first, grad, 0.01);
  // Through the checkpoint's bytes, as --resume reads them.
  const weights = new ModelWeights(gpu, resnetConfig("resnet18", 0.0625));
  const saved = decodeCheckpoint(
    await encodeCheckpoint(weights, undefined, await first.optimizer.exportState()),
    "test checkpoint",
  ).optimizer!;
  weights.destroy();
  const resumed = await scaledOptimizer(
    gpu,
    config,
    Float64Array.from(await readFloat32(gpu, first.params)),
    lossScaling,
  );
  resumed.optimizer.importState(saved);
  for (const grad of grads.slice(3)) step(resumed, grad, 0.01);
  assert.deepEqual(
    await readFloat32(gpu, resumed.params),
    await readFloat32(gpu, uninterrupted.params),
  );
  assert.deepEqual(
    await resumed.optimizer.exportState(),
    await uninterrupted.optimizer.exportState(),
  );
  for (const run of [uninterrupted, first, resumed]) destroy(run);
});

Deno.test("loss scaling: GradScaler's defaults, and settings it would refuse are refused", () => {
  assert.deepEqual(LOSS_SCALE_DEFAULTS, {
    initScale: 65536,
    growthFactor: 2,
    backoffFactor: 0.5,
    growthInterval: 2000,
  });
  assert.deepEqual(resolveLossScaleConfig({ growthInterval: 5 }), {
    ...LOSS_SCALE_DEFAULTS,
    growthInterval: 5,
  });
  for (
    const [config, message] of [
      [{ initScale: 0 }, /^loss scaling: initScale must be in \(0, 2\^127\], got 0$/],
      [{ initScale: 2 ** 130 }, /initScale/],
      [{ growthFactor: 1 }, /^loss scaling: growthFactor must be above 1, got 1$/],
      [{ backoffFactor: 1 }, /^loss scaling: backoffFactor must be in \(0, 1\), got 1$/],
      [{ growthInterval: 0.5 }, /^loss scaling: growthInterval must be a positive integer/],
    ] as const
  ) {
    assert.throws(
      () => resolveLossScaleConfig(config),
      (error) => error instanceof LossScaleConfigError && message.test(error.message),
    );
  }
});
