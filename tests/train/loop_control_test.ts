/**
 * The training run driven from outside, as the page drives it: stopped between two steps it keeps
 * the finished epochs and destroys what it built; paused, it takes no step until resumed, and the
 * pause counts neither in its rate nor in its elapsed time; the end of each epoch is awaited, with
 * the epoch's weights alive. A tiny ResNet on generated images.
 */
import assert from "node:assert/strict";
import type { Gpu } from "../../src/gpu/device.ts";
import { decodeCheckpoint, modelStateDict } from "../../src/model/checkpoint.ts";
import { resnetConfig } from "../../src/model/config.ts";
import { KernelPolicy } from "../../src/ops/policy.ts";
import { runTraining, type TrainingEvents } from "../../src/train/loop.ts";
import { MemoryRunStore } from "../../src/train/run_store.ts";
import { createSchedule } from "../../src/train/schedule.ts";
import { makeSplit } from "../support/data_fixtures.ts";
import { gpuTest } from "../support/gpu.ts";

const TINY = resnetConfig("resnet18", 0.0625);
const BATCH = 16;
/** 4 steps an epoch. */
const TRAIN_IMAGES = 4 * BATCH;

function runOptions(gpu: Gpu, store: MemoryRunStore, events: TrainingEvents, epochs: number) {
  return {
    gpu,
    model: TINY,
    modelName: "resnet18 width 0.0625",
    trainSet: makeSplit(TRAIN_IMAGES, 1),
    testSet: makeSplit(32, 6),
    dataLocation: "generated",
    epochs,
    trainer: {
      batchSize: BATCH,
      augment: false,
      optimizer: { kind: "sgd" as const, lr: 0.01, weightDecay: 0, momentum: 0.9, nesterov: false },
      schedule: createSchedule({ kind: "constant", lr: 0.01 }),
      seed: 0,
      policy: KernelPolicy.forAdapter(gpu),
    },
    evalBatchSize: 32,
    store,
    settings: {},
    events,
  };
}

/**
 * `gpu` with its device's buffers and textures counted: `live` holds those made through it and
 * not destroyed yet.
 */
function countingGpu(gpu: Gpu): { gpu: Gpu; live: Set<GPUBuffer | GPUTexture> } {
  const live = new Set<GPUBuffer | GPUTexture>();
  const track = <T extends GPUBuffer | GPUTexture>(made: T): T => {
    live.add(made);
    const destroy = made.destroy.bind(made);
    made.destroy = () => {
      live.delete(made);
      destroy();
    };
    return made;
  };
  const device = new Proxy(gpu.device, {
    get(target, key) {
      if (key === "createBuffer") {
        return (descriptor: GPUBufferDescriptor) => track(target.createBuffer(descriptor));
      }
      if (key === "createTexture") {
        return (descriptor: GPUTextureDescriptor) => track(target.createTexture(descriptor));
      }
      const value = Reflect.get(target, key, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { gpu: { ...gpu, device }, live };
}

gpuTest(
  "a run stopped between two steps keeps its finished epochs and destroys what it built",
  async (realGpu) => {
    const { gpu, live } = countingGpu(realGpu);
    const store = new MemoryRunStore("this test");
    const controller = new AbortController();
    const submitted: number[][] = [[], [], []];
    const events: TrainingEvents = {
      log: () => {},
      step(epoch, progress) {
        submitted[epoch].push(progress.submitted);
        if (epoch === 1 && progress.submitted === 2) controller.abort();
      },
    };
    const history = await runTraining({
      ...runOptions(gpu, store, events, 3),
      control: { signal: controller.signal },
    });

    assert.deepEqual(history.map((record) => record.epoch), [1]);
    assert.deepEqual(store.history, history);
    // The stop comes before the step after the one that asked for it.
    assert.equal(Math.max(...submitted[1]), 2);
    assert.deepEqual(submitted[2], []);
    const saved = decodeCheckpoint(store.last!, store.path);
    assert.equal(saved.metadata?.epoch, 1);
    assert.equal(saved.optimizer?.step, 4);
    assert.deepEqual([...live].map((made) => made.label), []);
    assert.equal(realGpu.takeUncapturedError(), undefined);
  },
);

gpuTest(
  "a run stopped before its first step saves nothing and destroys what it built",
  async (realGpu) => {
    const { gpu, live } = countingGpu(realGpu);
    const store = new MemoryRunStore();
    const controller = new AbortController();
    const steps: number[] = [];
    const history = await runTraining({
      ...runOptions(gpu, store, {
        log: () => {},
        compiling: () => controller.abort(),
        step: (_epoch, progress) => steps.push(progress.submitted),
      }, 2),
      control: { signal: controller.signal },
    });
    assert.deepEqual(history, []);
    assert.deepEqual(steps, []);
    assert.equal(store.last, undefined);
    assert.deepEqual([...live].map((made) => made.label), []);
  },
);

gpuTest("a paused run takes no step until resumed, and its pause is not timed", async (gpu) => {
  const PAUSE_SECONDS = 2;
  const seconds = () => performance.now() / 1000;
  let resume: (() => void) | undefined;
  let paused: Promise<void> | undefined;
  let reachedPause: () => void;
  const pauseReached = new Promise<void>((resolve) => reachedPause = resolve);
  const steps: { epoch: number; submitted: number; at: number }[] = [];
  let evaluationStart: number | undefined;
  const events: TrainingEvents = {
    log: () => {},
    step(epoch, { submitted }) {
      steps.push({ epoch, submitted, at: seconds() });
      // Pause after step 2 of 4, once.
      if (epoch === 0 && submitted === 2 && !resume) {
        paused = new Promise<void>((resolve) => resume = resolve);
      }
    },
    evaluating(epoch) {
      if (epoch === 0) evaluationStart ??= seconds();
    },
  };
  const store = new MemoryRunStore();
  const run = runTraining({
    ...runOptions(gpu, store, events, 1),
    control: {
      whenRunning: () => {
        if (!paused) return Promise.resolve();
        reachedPause();
        return paused;
      },
    },
  });

  await pauseReached;
  const stepsWhenPaused = steps.length;
  const submittedWhenPaused = Math.max(...steps.map((step) => step.submitted));
  await new Promise((resolve) => setTimeout(resolve, PAUSE_SECONDS * 1000));
  assert.equal(steps.length, stepsWhenPaused, "steps were reported while paused");
  assert.equal(submittedWhenPaused, 2);
  paused = undefined;
  resume!();
  const [record] = await run;

  assert.equal(record.step, 4);
  assert.equal(Math.max(...steps.map((step) => step.submitted)), 4);
  // The pause lies inside both windows; neither the training time behind the rate nor the
  // elapsed time may hold it.
  const trainWindow = evaluationStart! - steps[0].at;
  const trainSeconds = TRAIN_IMAGES / record.imagesPerSecond;
  assert.ok(trainWindow > PAUSE_SECONDS, `${trainWindow}`);
  assert.ok(trainSeconds < trainWindow - 0.75 * PAUSE_SECONDS, `${trainSeconds} of ${trainWindow}`);
  const runWindow = seconds() - steps[0].at;
  assert.ok(
    record.elapsedSeconds < runWindow - 0.75 * PAUSE_SECONDS,
    `${record.elapsedSeconds} of ${runWindow}`,
  );
});

/** Whether two typed arrays hold the same bytes. */
function sameBytes(a: ArrayBufferView, b: ArrayBufferView): boolean {
  const [x, y] = [a, b].map((view) =>
    new Uint8Array(view.buffer, view.byteOffset, view.byteLength)
  );
  return x.length === y.length && x.every((byte, i) => byte === y[i]);
}

gpuTest("the end of each epoch is awaited, with the epoch's weights alive", async (gpu) => {
  const store = new MemoryRunStore();
  const order: string[] = [];
  const events: TrainingEvents = {
    log: () => {},
    step(epoch, { submitted }) {
      if (submitted === 1) order.push(`epoch ${epoch + 1} step 1`);
    },
    async epochEnd(record, test, weights) {
      order.push(`epoch ${record.epoch} ends`);
      assert.equal(test.accuracy, record.testAccuracy);
      assert.equal(test.count, 32);
      // Something slow, as a page's predictions over a few images are.
      await new Promise((resolve) => setTimeout(resolve, 200));
      const saved = decodeCheckpoint(store.last!, store.path);
      assert.equal(saved.metadata?.epoch, record.epoch);
      const live = await modelStateDict(weights);
      for (const [name, tensor] of live) {
        const stored = saved.tensors.get(name);
        assert.ok(stored, `${name} is missing from the checkpoint`);
        assert.deepEqual([tensor.dtype, tensor.shape], [stored.dtype, stored.shape], name);
        assert.ok(sameBytes(tensor.data, stored.data), `${name} differs from the checkpoint's`);
      }
      order.push(`epoch ${record.epoch} ended`);
    },
  };
  await runTraining(runOptions(gpu, store, events, 2));
  assert.deepEqual(order, [
    "epoch 1 step 1",
    "epoch 1 ends",
    "epoch 1 ended",
    "epoch 2 step 1",
    "epoch 2 ends",
    "epoch 2 ended",
  ]);
});
