/**
 * ResNet-9 and the fast94 recipe's training settings as commands, run as a user runs them (`deno
 * run` in a subprocess) on a generated CIFAR-10: a tiny ResNet-9 (width 1/16) trained with label
 * smoothing, test-time flips, a moving average of the weights, Cutout, reflect padding, a
 * piecewise schedule and decoupled weight decay, uninterrupted and stopped and resumed, then
 * evaluated. On a CPU adapter the first command compiles the kernels (tens of seconds; Mesa
 * caches them on disk) and the others take seconds each. The epoch line's parts that a tiny run
 * cannot reach (the accuracy thresholds) are checked in process.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { epochLine } from "../../src/train/loop.ts";
import { type EpochRecord, timeToAccuracy } from "../../src/train/history.ts";
import {
  assertSucceeded,
  readCheckpoint,
  readMetrics,
  RECORDS_PER_FILE,
  runCommand,
  runTinyEval,
  TINY_RUN,
} from "../support/cli.ts";
import { binaryFiles, writeFiles } from "../support/data_fixtures.ts";
import { needs } from "../support/permissions.ts";

const WIDTH = 0.0625;

/**
 * ResNet-9's state dict as PyTorch's module tree names it (prep, layer1, res1, layer2, layer3,
 * res3: Conv2d 3x3 without bias, then BatchNorm2d; fc = Linear with bias), name -> torch shape,
 * in state_dict order (per module its parameters, then its buffers). Built from the module tree,
 * not from src/, so that the model and its parameter count are checked independently.
 */
function resnet9StateDict(width: number, classes = 10): [string, number[]][] {
  // round-half-up(base * width), at least 1
  const channels = (base: number) => Math.max(1, Math.floor(base * width + 0.5));
  const entries: [string, number[]][] = [];
  const convBn = (sequential: string, index: number, cin: number, cout: number) => {
    entries.push([`${sequential}.${index}.weight`, [cout, cin, 3, 3]]);
    const bn = `${sequential}.${index + 1}`;
    for (const name of ["weight", "bias", "running_mean", "running_var"]) {
      entries.push([`${bn}.${name}`, [cout]]);
    }
    entries.push([`${bn}.num_batches_tracked`, []]);
  };
  const [c64, c128, c256, c512] = [64, 128, 256, 512].map(channels);
  convBn("prep", 0, 3, c64);
  convBn("layer1", 0, c64, c128);
  convBn("res1", 0, c128, c128);
  convBn("res1", 3, c128, c128);
  convBn("layer2", 0, c128, c256);
  convBn("layer3", 0, c256, c512);
  convBn("res3", 0, c512, c512);
  convBn("res3", 3, c512, c512);
  entries.push(["fc.weight", [classes, c512]], ["fc.bias", [classes]]);
  return entries;
}

/** Trainable parameters: everything but the batch-norm buffers. */
function parameterCount(stateDict: [string, number[]][]): number {
  return stateDict
    .filter(([name]) => !/\.(running_mean|running_var|num_batches_tracked)$/.test(name))
    .reduce((sum, [, shape]) => sum + shape.reduce((a, b) => a * b, 1), 0);
}

/** The numbers an epoch computes, without its timings (the thresholds' names stay). */
function computed(
  { imagesPerSecond: _, elapsedSeconds: __, trainSeconds: ___, timeToAccuracy, ...numbers }:
    EpochRecord,
) {
  return { ...numbers, thresholds: Object.keys(timeToAccuracy ?? {}) };
}

const percent = (fraction: number) => `${(fraction * 100).toFixed(2)}%`;

/** The piecewise schedule 0:0, 0.3:1, 1:0 at x = step / totalSteps, times --lr 0.1. */
function expectedRate(step: number, totalSteps: number): number {
  const x = step / totalSteps;
  return 0.1 * (x <= 0.3 ? x / 0.3 : (1 - x) / 0.7);
}

Deno.test("the epoch line: the moving average's test numbers, and each threshold once, when reached", () => {
  const record = (
    epoch: number,
    testAccuracy: number,
    trainSeconds: number,
    earlier?: EpochRecord,
  ): EpochRecord => ({
    epoch,
    step: epoch * 97,
    lr: 0.4,
    trainLoss: 1.25,
    trainAccuracy: 0.5,
    testLoss: 0.5,
    testAccuracy,
    emaTestLoss: 0.4567,
    emaTestAccuracy: 0.9512,
    imagesPerSecond: 1000,
    trainSeconds,
    timeToAccuracy: timeToAccuracy(earlier?.timeToAccuracy, testAccuracy, trainSeconds),
    elapsedSeconds: trainSeconds + 10,
  });
  const first = record(1, 0.8999, 20.04);
  const second = record(2, 0.9312, 41.23, first);
  const third = record(3, 0.94, 61.96, second);
  const fourth = record(4, 0.9399, 80, third);
  // 0.94 over 10000 images is 9400 correct: 94% reached, though 0.94 * 100 < 94 in floats.
  assert.deepEqual(
    [first, second, third, fourth].map((r) => r.timeToAccuracy),
    [{}, { 90: 41.23, 93: 41.23 }, { 90: 41.23, 93: 41.23, 94: 61.96 }, {
      90: 41.23,
      93: 41.23,
      94: 61.96,
    }],
  );
  const common = "train loss 1.2500 acc 50.00%  test loss 0.5000 acc";
  const average = "ema loss 0.4567 acc 95.12%  1000 img/s";
  assert.equal(
    epochLine("epoch 1/18", first),
    `epoch 1/18  ${common} 89.99%  ${average}  elapsed 0:30`,
  );
  assert.equal(
    epochLine("epoch 2/18", second, first),
    `epoch 2/18  ${common} 93.12%  ${average}  elapsed 0:51  ` +
      "reached 90% in 41.2 s of training  reached 93% in 41.2 s of training",
  );
  assert.equal(
    epochLine("epoch 3/18", third, second),
    `epoch 3/18  ${common} 94.00%  ${average}  elapsed 1:12  reached 94% in 62.0 s of training`,
  );
  assert.equal(
    epochLine("epoch 4/18", fourth, third),
    `epoch 4/18  ${common} 93.99%  ${average}  elapsed 1:30`,
  );
  // Without --ema there is no average's part.
  const { emaTestLoss: _, emaTestAccuracy: __, ...plain } = first;
  assert.equal(
    epochLine("epoch 1/18", plain),
    `epoch 1/18  ${common} 89.99%  1000 img/s  elapsed 0:30`,
  );
});

Deno.test({
  name: "a tiny ResNet-9 with the fast94 recipe's settings: train, resume exactly, eval",
  ...needs("read", "write", "run", "env"),
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "resnet9_train_test_" });
    const data = join(dir, "cifar-10-batches-bin");
    await writeFiles(data, binaryFiles(RECORDS_PER_FILE));
    const tiny = [
      ...TINY_RUN,
      "--data",
      data,
      "--model",
      "resnet9",
      "--width",
      String(WIDTH),
      "--label-smoothing",
      "0.2",
      "--tta",
      "flip",
      "--ema",
      "0.9",
      "--cutout",
      "8",
      "--crop-padding",
      "reflect",
      "--schedule",
      "piecewise",
      "--lr-points",
      "0:0,0.3:1,1:0",
      "--weight-decay-mode",
      "decoupled",
      "--epochs",
      "2",
    ];
    const full = join(dir, "full");
    const stateDict = resnet9StateDict(WIDTH);
    try {
      await t.step("two epochs: the header, epoch lines, metrics and checkpoint", async () => {
        const output = await runCommand("train", [...tiny, "--run-dir", full], dir);
        assertSucceeded(output);
        const stdout = output.stdout.join("\n");
        const settings = output.stdout.find((line) => line.startsWith("settings: "));
        assert.ok(settings, stdout);
        for (
          const flag of [
            "--model resnet9",
            "--width 0.0625",
            "--weight-decay-mode decoupled",
            "--schedule piecewise",
            "--lr-points 0:0,0.3:1,1:0",
            "--crop-padding reflect",
            "--cutout 8",
            "--label-smoothing 0.2",
            "--tta flip",
            "--ema 0.9",
          ]
        ) {
          assert.ok(settings.includes(` ${flag} `) || settings.endsWith(` ${flag}`), settings);
        }
        assert.ok(!settings.includes("--warmup"), "piecewise has no warm-up to list");
        // 4x3x3x3 + 2x4 (prep), 8x4x9 + 2x8 (layer1), 2 x (8x8x9 + 2x8) (res1),
        // 16x8x9 + 2x16 (layer2), 32x16x9 + 2x32 (layer3), 2 x (32x32x9 + 2x32) (res3), 32x10 + 10.
        assert.equal(parameterCount(stateDict), 26350);
        assert.match(stdout, /^model: resnet9 width 0\.0625, 26,350 parameters$/m);
        assert.match(stdout, /^data: .* \(64 training images, 256 test images\)$/m);

        const metrics = await readMetrics(full);
        assert.deepEqual(metrics.map((record) => record.step), [4, 8]);
        for (const [i, record] of metrics.entries()) {
          const line = output.stdout.find((line) => line.startsWith(`epoch ${i + 1}/2  `));
          assert.ok(line, stdout);
          assert.match(
            line,
            new RegExp(
              "^epoch \\d/2 {2}train loss \\d+\\.\\d{4} acc [\\d.]+% {2}test loss \\d+\\.\\d{4} " +
                "acc [\\d.]+% {2}ema loss \\d+\\.\\d{4} acc [\\d.]+% {2}[\\d.]+ img/s {2}" +
                "elapsed \\d+:\\d\\d$",
            ),
          );
          assert.ok(
            line.includes(
              `  test loss ${record.testLoss.toFixed(4)} acc ${percent(record.testAccuracy)}  ` +
                `ema loss ${record.emaTestLoss!.toFixed(4)} ` +
                `acc ${percent(record.emaTestAccuracy!)}  `,
            ),
            `${line}\n${JSON.stringify(record)}`,
          );
          for (const key of ["trainLoss", "testLoss", "emaTestLoss", "emaTestAccuracy"] as const) {
            assert.ok(Number.isFinite(record[key]), `${key} is finite: ${record[key]}`);
          }
          // The last step of each epoch (3, then 7, of 8) on the piecewise schedule.
          const rate = expectedRate(record.step - 1, 8);
          assert.ok(Math.abs(record.lr - rate) <= 1e-15, `lr ${record.lr}, expected ${rate}`);
          assert.ok(record.trainSeconds! > 0 && record.trainSeconds! <= record.elapsedSeconds);
          const reached = record.timeToAccuracy!;
          assert.ok(typeof reached === "object" && !Array.isArray(reached), `${reached}`);
          for (const [threshold, seconds] of Object.entries(reached)) {
            assert.ok(["90", "93", "94"].includes(threshold), threshold);
            assert.ok(seconds <= record.trainSeconds!, `${threshold}: ${seconds}`);
          }
        }
        assert.ok(metrics[1].trainSeconds! > metrics[0].trainSeconds!, "training time adds up");
        // The average evaluated is not the model: after 8 steps at decay 0.9 they differ.
        assert.ok(metrics.some((record) => record.emaTestLoss !== record.testLoss));

        const last = await readCheckpoint(join(full, "last.safetensors"));
        assert.deepEqual(last.metadata?.model, {
          kind: "resnet9",
          widthMultiplier: WIDTH,
          classes: 10,
        });
        assert.deepEqual(last.metadata?.training?.history, metrics);
        const recipe = last.metadata?.training?.recipe as Record<string, unknown>;
        assert.deepEqual(
          {
            model: recipe.model,
            labelSmoothing: recipe.labelSmoothing,
            tta: recipe.tta,
            ema: recipe.ema,
            cutout: recipe.cutout,
            cropPadding: recipe.cropPadding,
            schedule: recipe.schedule,
            lrPoints: recipe.lrPoints,
            weightDecayMode: recipe.weightDecayMode,
          },
          {
            model: "resnet9",
            labelSmoothing: 0.2,
            tta: "flip",
            ema: 0.9,
            cutout: 8,
            cropPadding: "reflect",
            schedule: "piecewise",
            lrPoints: "0:0,0.3:1,1:0",
            weightDecayMode: "decoupled",
          },
        );
        // The model's state dict, named and shaped as PyTorch's ResNet-9, in its order.
        const model = [...last.tensors]
          .filter(([name]) => !name.startsWith("optimizer."))
          .map(([name, tensor]) => [name, tensor.shape]);
        assert.deepEqual(model, stateDict);
        // The average's two arenas travel with the optimizer's state: the parameters' arena has
        // the momentum buffer's layout, the statistics' arena holds every BN's mean and variance.
        const buffers = last.optimizer?.buffers ?? {};
        assert.deepEqual(
          Object.keys(buffers).sort(),
          ["ema.params", "ema.state", "momentum_buffer"],
        );
        assert.equal(buffers["ema.params"].length, buffers["momentum_buffer"].length);
        assert.ok(buffers["ema.params"].length >= 26350);
        const statistics = stateDict.filter(([name]) => /running_(mean|var)$/.test(name))
          .reduce((sum, [, [channels]]) => sum + channels, 0);
        assert.ok(buffers["ema.state"].length >= statistics, `${buffers["ema.state"].length}`);
        // With --tta flip the evaluation plan runs 2 x 32 images a batch: its kernels are stored.
        const shapes = Object.keys(last.metadata?.kernels?.choices ?? {});
        assert.ok(shapes.some((shape) => shape.startsWith("conv2d [64,32,32,3]")), `${shapes}`);
        assert.match(
          await Deno.readTextFile(join(full, "chart.svg")),
          /resnet9 width 0\.0625 on CIFAR-10/,
        );
      });

      await t.step(
        "--stop-after 1, then --resume: epoch 2 as in the uninterrupted run, bit for bit",
        async () => {
          const resumed = join(dir, "resumed");
          const stopped = await runCommand(
            "train",
            [...tiny, "--stop-after", "1", "--run-dir", resumed],
            dir,
          );
          assertSucceeded(stopped);
          assert.ok(
            stopped.stdout.includes(
              `stopped after epoch 1 of 2: continue with deno task train --resume ${resumed}`,
            ),
            stopped.stdout.join("\n"),
          );
          const output = await runCommand("train", ["--resume", resumed], dir);
          assertSucceeded(output);
          const stdout = output.stdout.join("\n");
          assert.match(stdout, /resuming after epoch 1 from .*last\.safetensors/);
          assert.match(stdout, /^model: resnet9 width 0\.0625, 26,350 parameters$/m);
          assert.match(stdout, /^epoch 2\/2 {2}.* {2}ema loss \d+\.\d{4} acc [\d.]+% {2}/m);
          // The crop, flip and Cutout draws are functions of (seed, epoch), the schedule of the
          // step; weights, statistics, momentum and the moving average come back bit for bit.
          const [expected, actual] = [await readMetrics(full), await readMetrics(resumed)];
          assert.deepEqual(actual.map(computed), expected.map(computed));
          assert.ok(
            actual[1].trainSeconds! > actual[0].trainSeconds!,
            "training time goes on from the first part's",
          );
          const [a, b] = [
            await readCheckpoint(join(full, "last.safetensors")),
            await readCheckpoint(join(resumed, "last.safetensors")),
          ];
          assert.ok(b.tensors.has("optimizer.ema.params") && b.tensors.has("optimizer.ema.state"));
          assert.deepEqual(b.tensors, a.tensors, "weights, statistics, optimizer state, average");
          assert.deepEqual(b.metadata?.model, a.metadata?.model);
          assert.deepEqual(b.metadata?.kernels, a.metadata?.kernels);
        },
      );

      await t.step(
        "eval loads the ResNet-9 checkpoint from its metadata, with and without TTA",
        async () => {
          const checkpoint = join(full, "last.safetensors");
          const evaluate = async (extra: string[]) => {
            const output = await runTinyEval(checkpoint, data, dir, extra);
            assertSucceeded(output);
            const stdout = output.stdout.join("\n");
            const average = extra.includes("--ema") ? ", its weights' moving average" : "";
            assert.ok(
              output.stdout.includes(
                `checkpoint: ${checkpoint} (resnet9 width 0.0625, after epoch 2${average})`,
              ),
              stdout,
            );
            const summary = output.stdout.find((line) => line.startsWith("test loss "));
            const match = summary?.match(
              /^test loss (\d+\.\d{4}), accuracy ([\d.]+)% \((\d+) of 256\)$/,
            );
            assert.ok(match, stdout);
            return { stdout, summary: match[0] };
          };
          // With --tta flip: the same weights, images, batches and views as the epoch's
          // evaluation, so the epoch record's numbers.
          const record = (await readMetrics(full))[1];
          const flipped = await evaluate(["--tta", "flip"]);
          assert.match(flipped.stdout, /^kernels: .*, activations f32, flip TTA$/m);
          assert.equal(
            flipped.summary,
            `test loss ${record.testLoss.toFixed(4)}, accuracy ${percent(record.testAccuracy)} ` +
              `(${Math.round(record.testAccuracy * 256)} of 256)`,
          );
          // Without it, the images alone: a loss and an accuracy of its own.
          const plain = await evaluate([]);
          assert.match(plain.stdout, /^kernels: .*, activations f32$/m);
          // --ema evaluates the saved average: the epoch record's ema numbers.
          const average = await evaluate(["--tta", "flip", "--ema"]);
          assert.equal(
            average.summary,
            `test loss ${record.emaTestLoss!.toFixed(4)}, accuracy ` +
              `${percent(record.emaTestAccuracy!)} ` +
              `(${Math.round(record.emaTestAccuracy! * 256)} of 256)`,
          );
        },
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
