/**
 * The first minute of a run, on a terminal: the plans' compile time is said while it is the wait,
 * the training bar is drawn from the first submitted step (before any readback: a step takes
 * seconds with a large model on a CPU adapter), and the evaluation bar counts images per second.
 * The terminal is a fake that records what is drawn; the model is a tiny ResNet.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runEval } from "../../src/cli/eval.ts";
import { encodeCheckpoint } from "../../src/model/checkpoint.ts";
import { resnetConfig } from "../../src/model/config.ts";
import { ModelWeights } from "../../src/model/weights.ts";
import { KernelPolicy } from "../../src/ops/policy.ts";
import { type EvaluationProgress, Evaluator } from "../../src/train/evaluator.ts";
import { terminalEvents } from "../../src/cli/terminal.ts";
import { runTraining } from "../../src/train/loop.ts";
import type { ProgressOutput } from "../../src/train/progress.ts";
import { MemoryRunStore } from "../../src/train/run_store.ts";
import { createSchedule } from "../../src/train/schedule.ts";
import { type EpochProgress, Trainer, type TrainerOptions } from "../../src/train/trainer.ts";
import { binaryFiles, makeSplit, writeFiles } from "../support/data_fixtures.ts";
import { gpuTest, testGpu } from "../support/gpu.ts";
import { needs } from "../support/permissions.ts";

const TINY = resnetConfig("resnet18", 0.0625);

function trainerOptions(policy: KernelPolicy): TrainerOptions {
  return {
    batchSize: 16,
    augment: false,
    optimizer: { kind: "sgd", lr: 0.01, weightDecay: 0, momentum: 0.9, nesterov: false },
    schedule: createSchedule({ kind: "constant", lr: 0.01 }),
    seed: 0,
    policy,
  };
}

/** A terminal that records what is drawn on it, in one list with the lines logged. */
function fakeTerminal() {
  const events: string[] = [];
  const output: ProgressOutput = {
    isTerminal: () => true,
    writeSync: (bytes) => {
      events.push(new TextDecoder().decode(bytes));
      return bytes.length;
    },
    columns: () => 200,
  };
  const log = (line: string) => events.push(`log: ${line}`);
  return { events, output, log };
}

/** Where the test's draws of `label`'s bar are, and their text (without line control). */
function bars(events: string[], label: string): { at: number; text: string }[] {
  return events.flatMap((event, at) =>
    event.startsWith(`\r${label} [`) ? [{ at, text: event.slice(1).replace("\x1b[K", "") }] : []
  );
}

gpuTest(
  "an epoch reports every step as it is submitted, and the readbacks as they come",
  async (gpu) => {
    const weights = new ModelWeights(gpu, TINY);
    weights.initialize(0);
    const trainer = await Trainer.create(
      gpu,
      weights,
      makeSplit(12 * 16, 1),
      trainerOptions(KernelPolicy.forAdapter(gpu)),
    );
    try {
      for (const epoch of [0, 1]) {
        const reports: EpochProgress[] = [];
        const metrics = await trainer.trainEpoch(epoch, (progress) => reports.push(progress));
        // Step 1 is reported before anything is read back; the readbacks of steps 1, 2 and 4 (then
        // every 8) arrive a readback later, as the next one is made; the last report is the epoch's.
        assert.deepEqual(reports.map(({ submitted, done }) => [submitted, done]), [
          [1, 0],
          [2, 0],
          [2, 1],
          [3, 1],
          [4, 1],
          [4, 2],
          [5, 2],
          [6, 2],
          [7, 2],
          [8, 2],
          [8, 4],
          [9, 4],
          [10, 4],
          [11, 4],
          [12, 4],
          [12, 12],
        ], `epoch ${epoch + 1}`);
        assert.ok(reports.every((report) => report.steps === 12));
        assert.equal(reports[0].metrics, undefined);
        for (const { done, metrics } of reports.filter((report) => report.done > 0)) {
          assert.equal(metrics?.samples, done * 16);
          assert.ok(Number.isFinite(metrics.lossSum) && metrics.lossSum > 0);
        }
        assert.deepEqual(reports.at(-1)?.metrics, metrics);
      }
    } finally {
      trainer.destroy();
      weights.destroy();
    }
  },
);

gpuTest("an evaluation reports every batch as it is submitted, with its images", async (gpu) => {
  const weights = new ModelWeights(gpu, TINY);
  weights.initialize(0);
  // 100 images in batches of 32: three full batches, then one of 4. With 4 batches the GPU is
  // waited for after each (about every tenth of the batches, at least one).
  const evaluator = await Evaluator.create(
    gpu,
    weights,
    makeSplit(100, 6),
    32,
    KernelPolicy.forAdapter(gpu),
  );
  try {
    const reports: EvaluationProgress[] = [];
    const result = await evaluator.evaluate((progress) => reports.push(progress));
    assert.deepEqual(reports.map(({ submitted, done, images }) => [submitted, done, images]), [
      [1, 0, 32],
      [1, 1, 32],
      [2, 1, 64],
      [2, 2, 64],
      [3, 2, 96],
      [3, 3, 96],
      [4, 3, 100],
      [4, 4, 100],
    ]);
    assert.equal(result.count, 100);
  } finally {
    evaluator.destroy();
    weights.destroy();
  }
});

gpuTest(
  "a training run on a terminal: the compile wait, the bar from step 1, images/s",
  async (gpu) => {
    const { events, output, log } = fakeTerminal();
    const store = new MemoryRunStore("/nowhere/run");
    const policy = KernelPolicy.forAdapter(gpu);
    await runTraining({
      gpu,
      model: TINY,
      modelName: "resnet18 width 0.0625",
      trainSet: makeSplit(64, 1),
      testSet: makeSplit(64, 6),
      dataLocation: "generated",
      epochs: 1,
      trainer: trainerOptions(policy),
      evalBatchSize: 32,
      store,
      settings: {},
      events: terminalEvents(log, { epochs: 1, output }),
    });
    assert.deepEqual(store.history.map((record) => record.epoch), [1]);

    // While the plans build, the terminal says so; then the header gives the time it took.
    assert.deepEqual(events.slice(0, 2), [
      "\rcompiling kernels for the training and evaluation plans…\x1b[K",
      "\r\x1b[K",
    ]);
    const compiled = events.findIndex((event) =>
      /^log: kernels compiled in \d+\.\d s \(training and evaluation plans\)$/.test(event)
    );
    assert.ok(compiled > events.indexOf(`log: kernels: ${policy.describe()}`), events.join("\n"));

    // 4 steps: the bar is drawn as soon as step 1 is submitted, before anything is read back.
    const train = bars(events, "epoch 1/1");
    assert.ok(train.length > 0 && train[0].at > compiled, events.join("\n"));
    assert.equal(
      train[0].text,
      "epoch 1/1 [=====---------------] 1/4 25% (0 done) -- img/s ETA --:--",
    );
    assert.match(
      train.at(-1)!.text,
      /^epoch 1\/1 \[#{20}\] 4\/4 100% loss \d\.\d{4} [\d.]+ img\/s ETA 0:00$/,
    );

    // The evaluation's bar counts images, not batches.
    const test = bars(events, "epoch 1/1 test");
    assert.ok(test.length > 0 && test[0].at > train.at(-1)!.at, events.join("\n"));
    assert.match(
      test[0].text,
      /^epoch 1\/1 test \[=+-+\] 1\/2 50% \(0 done\) -- img\/s ETA --:--$/,
    );
    assert.match(test.at(-1)!.text, /^epoch 1\/1 test \[#{20}\] 2\/2 100% [\d.]+ img\/s ETA 0:00$/);
    assert.ok(!events.some((event) => event.includes("batch/s")), events.join("\n"));
    // Each bar is erased before the next line.
    const epochLine = events.findIndex((event) => event.startsWith("log: epoch 1/1  train loss"));
    assert.equal(events[epochLine - 1], "\r\x1b[K");
  },
);

Deno.test({
  name: "deno task eval on a terminal: the compile wait, then a bar in images/s",
  ...needs("read", "write"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "first_steps_test_" });
    try {
      const data = join(dir, "cifar-10-batches-bin");
      await writeFiles(data, binaryFiles(10000));
      const gpu = await testGpu();
      const weights = new ModelWeights(gpu, TINY);
      weights.initialize(0);
      const checkpoint = join(dir, "model.safetensors");
      await Deno.writeFile(checkpoint, await encodeCheckpoint(weights));
      weights.destroy();

      const { events, output, log } = fakeTerminal();
      await runEval(
        [
          "--checkpoint",
          checkpoint,
          "--width",
          "0.0625",
          "--data",
          data,
          "--eval-batch-size",
          "32",
          "--test-limit",
          "96",
        ],
        log,
        output,
      );
      const compiling = events.indexOf("\rcompiling kernels for the evaluation plan…\x1b[K");
      assert.ok(
        compiling > events.indexOf(`log: data: ${data} (96 test images)`),
        events.join("\n"),
      );
      assert.equal(events[compiling + 1], "\r\x1b[K");
      const compiled = events.findIndex((event) =>
        /^log: kernels compiled in \d+\.\d s \(evaluation plan\)$/.test(event)
      );
      assert.ok(compiled > compiling, events.join("\n"));
      const test = bars(events, "test");
      assert.ok(test.length > 0 && test[0].at > compiled, events.join("\n"));
      assert.match(test[0].text, /^test \[=+-+\] 1\/3 33% \(0 done\) -- img\/s ETA --:--$/);
      assert.match(test.at(-1)!.text, /^test \[#{20}\] 3\/3 100% [\d.]+ img\/s ETA 0:00$/);
      assert.ok(!events.some((event) => event.includes("batch/s")), events.join("\n"));
      assert.ok(events.some((event) => /^log: test loss \d+\.\d{4}, accuracy /.test(event)));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
