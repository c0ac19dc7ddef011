/**
 * The train, eval and predict commands end to end, run as a user runs them (`deno run` in a
 * subprocess), on a generated CIFAR-10 in the official binary layout: a tiny model (ResNet-18 at
 * width 1/16), 64 training images in batches of 16, and the first 256 test images. On a CPU
 * adapter the first command compiles the kernels (tens of seconds; Mesa caches them on disk) and
 * the others take seconds each.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { encode } from "fast-png";
import type { EpochRecord } from "../../src/train/history.ts";
import {
  assertOneLineError,
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

/** The numbers an epoch computes, without its timings (the thresholds' names stay). */
function computed(
  { imagesPerSecond: _, elapsedSeconds: __, trainSeconds: ___, timeToAccuracy, ...numbers }:
    EpochRecord,
) {
  return { ...numbers, thresholds: Object.keys(timeToAccuracy ?? {}) };
}

Deno.test({
  name: "train, resume, diverge, eval and predict as commands on a tiny generated data set",
  ...needs("read", "write", "run", "env"),
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "train_e2e_test_" });
    const data = join(dir, "cifar-10-batches-bin");
    await writeFiles(data, binaryFiles(RECORDS_PER_FILE));
    const tiny = [...TINY_RUN, "--data", data];
    const full = join(dir, "full");
    try {
      await t.step("two epochs: epoch lines, metrics, checkpoints and the chart", async () => {
        const output = await runCommand(
          "train",
          [...tiny, "--epochs", "2", "--run-dir", full],
          dir,
        );
        assertSucceeded(output);
        const stdout = output.stdout.join("\n");
        assert.match(stdout, /^adapter: .+$/m);
        assert.match(stdout, /^model: resnet18 width 0\.0625, [\d,]+ parameters$/m);
        // e.g. "conv2d blocked_texture", or "conv2d tiled" on a GPU.
        const kernels = stdout.match(
          /^kernels: (cpu|gpu) family \(the adapter's\): conv2d ([a-z_\d /x]+), batchnorm ([a-z_\d /x]+)$/m,
        );
        assert.ok(kernels, stdout);
        const variantsOf = (line: string) =>
          line.split(" / ").map((part) => part.replace(/ x\d+$/, ""));
        assert.match(stdout, /^GPU memory: [\d.]+ \wiB planned \(parameters /m);
        assert.match(stdout, /^data: .* \(64 training images, 256 test images\)$/m);
        for (const epoch of [1, 2]) {
          assert.match(
            stdout,
            new RegExp(
              `^epoch ${epoch}/2  train loss \\d+\\.\\d{4} acc [\\d.]+%  ` +
                `test loss \\d+\\.\\d{4} acc [\\d.]+%  [\\d.]+ img/s  elapsed \\d+:\\d\\d$`,
              "m",
            ),
          );
        }

        const metrics = await readMetrics(full);
        assert.deepEqual(metrics.map((record) => record.epoch), [1, 2]);
        assert.deepEqual(metrics.map((record) => record.step), [4, 8]);
        for (const { timeToAccuracy, ...numbers } of metrics) {
          for (const [key, value] of Object.entries(numbers)) {
            assert.ok(Number.isFinite(value), `${key} is finite: ${value}`);
          }
          assert.ok(Object.values(timeToAccuracy ?? {}).every(Number.isFinite));
        }

        const last = await readCheckpoint(join(full, "last.safetensors"));
        assert.equal(last.metadata?.epoch, 2);
        assert.equal(last.metadata?.step, 8);
        assert.equal(last.optimizer?.step, 8);
        assert.deepEqual(last.metadata?.training?.history, metrics);
        // The kernels it computed with, for --resume: every layer's, of the family it printed.
        const stored = last.metadata?.kernels;
        assert.equal(stored?.family, kernels[1]);
        const variants = new Set(Object.values(stored?.choices ?? {}));
        assert.deepEqual(
          [...variants].sort(),
          [...variantsOf(kernels[2]), ...variantsOf(kernels[3])].sort(),
        );
        const best = await readCheckpoint(join(full, "best.safetensors"));
        const bestEpoch = metrics.reduce((a, b) => b.testAccuracy > a.testAccuracy ? b : a);
        assert.equal(best.metadata?.epoch, bestEpoch.epoch);
        assert.match(await Deno.readTextFile(join(full, "chart.svg")), /^<svg /);
      });

      await t.step(
        "--stop-after 1, then --resume: epoch 2 as in the uninterrupted run",
        async () => {
          const resumed = join(dir, "resumed");
          assertSucceeded(
            await runCommand("train", [
              ...tiny,
              "--epochs",
              "2",
              "--stop-after",
              "1",
              "--run-dir",
              resumed,
            ], dir),
          );
          assert.equal((await readMetrics(resumed)).length, 1);
          const output = await runCommand("train", ["--resume", resumed], dir);
          assertSucceeded(output);
          assert.match(output.stdout.join("\n"), /resuming after epoch 1 from .*last\.safetensors/);
          assert.match(
            output.stdout.join("\n"),
            /^kernels: \w+ family \(as the checkpoint stored them\)/m,
          );
          // Equal, not just close: the data order and augmentation are functions of (seed, epoch),
          // the schedule of the step, the weights, BN statistics and optimizer state come back bit
          // for bit, and the kernels are deterministic (variants picked by adapter and shape, not
          // by timing; every float sum in a fixed order, atomics only on u32 counts).
          const [expected, actual] = [await readMetrics(full), await readMetrics(resumed)];
          assert.deepEqual(actual.map(computed), expected.map(computed));
          const [a, b] = [
            await readCheckpoint(join(full, "last.safetensors")),
            await readCheckpoint(join(resumed, "last.safetensors")),
          ];
          assert.deepEqual(b.tensors, a.tensors, "weights, statistics and optimizer state");
          assert.deepEqual(
            b.metadata?.kernels,
            a.metadata?.kernels,
            "the kernels it computed with",
          );
        },
      );

      await t.step(
        "--kernels forces the other family: the same epoch to float rounding",
        async () => {
          const first = await readCheckpoint(join(full, "last.safetensors"));
          const other = first.metadata?.kernels?.family === "cpu" ? "gpu" : "cpu";
          const forced = join(dir, "forced");
          const output = await runCommand("train", [
            ...tiny,
            "--epochs",
            "2",
            "--stop-after",
            "1",
            "--kernels",
            other,
            "--run-dir",
            forced,
          ], dir);
          assertSucceeded(output);
          const variants = other === "cpu"
            ? "conv2d blocked_texture, batchnorm serial_texture"
            : "conv2d tiled, batchnorm tree";
          assert.ok(
            output.stdout.includes(`kernels: ${other} family (forced by --kernels): ${variants}`),
            output.stdout.join("\n"),
          );
          // Other summation orders, the same arithmetic: after the first epoch's 4 steps the losses
          // agree to float rounding, and differ (the other kernels did run). Later epochs drift
          // further apart, as rounding differences grow through SGD at learning rate 0.1.
          const [expected] = await readMetrics(full);
          const [actual] = await readMetrics(forced);
          for (const key of ["trainLoss", "testLoss"] as const) {
            assert.ok(
              Math.abs(actual[key] - expected[key]) <= 1e-3 * Math.abs(expected[key]),
              `${key}: ${actual[key]} against ${expected[key]}`,
            );
          }
          assert.notDeepEqual(
            [actual.trainLoss, actual.testLoss],
            [expected.trainLoss, expected.testLoss],
          );
        },
      );

      await t.step("a run folder that holds a run is not overwritten", async () => {
        const output = await runCommand("train", [...tiny, "--run-dir", full], dir);
        assert.equal(output.code, 1);
        assert.deepEqual(output.stderr, [
          `error: ${full} already holds a run (${join(full, "last.safetensors")}): continue ` +
          `it with --resume ${full}, or choose another --run-dir`,
        ]);
      });

      await t.step("a bad flag: one line on stderr, exit code 1", async () => {
        const output = await runCommand("train", ["--epochs", "x"], dir);
        assert.equal(output.code, 1);
        assert.deepEqual(output.stdout, []);
        assert.deepEqual(output.stderr, ['error: --epochs must be a positive integer, got "x"']);
      });

      await t.step("divergence stops the run and keeps the last good checkpoint", async () => {
        // One step per epoch. One-cycle's first step has learning rate 0, so epoch 1 ends well;
        // epoch 2's step at 1e38 sends Adam's weights to about 1e38, and the logits overflow.
        const diverged = join(dir, "diverged");
        const output = await runCommand("train", [
          ...tiny,
          "--limit",
          "16",
          "--epochs",
          "3",
          "--optimizer",
          "adam",
          "--lr",
          "1e38",
          "--warmup",
          "0.34",
          "--run-dir",
          diverged,
        ], dir);
        assert.equal(output.code, 1);
        assert.equal(output.stderr.length, 1, output.stderr.join("\n"));
        assert.match(
          output.stderr[0],
          new RegExp(
            "^error: the (training|test) loss became (NaN|-?Infinity) .* lower the learning " +
              `rate \\(--lr\\).*; the last good checkpoint is ${diverged}/last\\.safetensors ` +
              "\\(epoch 1\\), left as it was$",
          ),
        );
        const last = await readCheckpoint(join(diverged, "last.safetensors"));
        assert.equal(last.metadata?.epoch, 1);
        assert.equal((await readMetrics(diverged)).length, 1);
      });

      await t.step("eval: the best checkpoint's accuracy, per class and as a matrix", async () => {
        const checkpoint = join(full, "best.safetensors");
        const output = await runTinyEval(checkpoint, data, dir);
        assertSucceeded(output);
        const best = (await readCheckpoint(checkpoint)).metadata!;
        const record = (await readMetrics(full))[best.epoch - 1];
        const accuracy = `${(record.testAccuracy * 100).toFixed(2)}%`;
        // The same weights on the same images in the same batches: the training run's numbers.
        assert.ok(
          output.stdout.includes(
            `test loss ${record.testLoss.toFixed(4)}, accuracy ${accuracy} ` +
              `(${Math.round(record.testAccuracy * 256)} of 256)`,
          ),
          output.stdout.join("\n"),
        );
        const rows = output.stdout.filter((line) => /^[a-z]+ +(\d+ +){10}\d+\.\d\d%$/.test(line));
        assert.deepEqual(rows.map((row) => row.split(" ")[0]), [
          "airplane",
          "automobile",
          "bird",
          "cat",
          "deer",
          "dog",
          "frog",
          "horse",
          "ship",
          "truck",
        ]);
        const counted = rows.flatMap((row) => row.split(/ +/).slice(1, 11).map(Number));
        assert.equal(counted.reduce((a, b) => a + b, 0), 256);
        // This run kept no weight average: --ema has none to evaluate.
        const noAverage = await runCommand(
          "eval",
          ["--checkpoint", checkpoint, "--data", data, "--ema"],
          dir,
        );
        assert.equal(
          assertOneLineError(noAverage),
          `error: ${checkpoint}: holds no moving average of the weights: its run was trained ` +
            "without --ema",
        );
      });

      await t.step("predict: the three likeliest classes of PNGs of any size", async () => {
        const pictures = [
          { name: "rgb.png", width: 32, height: 32, channels: 3 },
          { name: "large-rgba.png", width: 50, height: 40, channels: 4 },
          { name: "small-gray.png", width: 7, height: 9, channels: 1 },
        ];
        const paths: string[] = [];
        for (const { name, width, height, channels } of pictures) {
          const pixels = Uint8Array.from({ length: width * height * channels }, (_, i) => i * 37);
          const path = join(dir, name);
          await Deno.writeFile(path, encode({ width, height, channels, depth: 8, data: pixels }));
          paths.push(path);
        }
        const output = await runCommand(
          "predict",
          ["--checkpoint", join(full, "best.safetensors"), ...paths],
          dir,
        );
        assertSucceeded(output);
        assert.equal(output.stdout.length, paths.length, output.stdout.join("\n"));
        output.stdout.forEach((line, i) => {
          const match = line.match(
            /^(.+): ([a-z]+) ([\d.]+)%, ([a-z]+) ([\d.]+)%, ([a-z]+) ([\d.]+)%$/,
          );
          assert.ok(match, line);
          assert.equal(match[1], paths[i]);
          const percents = [match[3], match[5], match[7]].map(Number);
          assert.deepEqual(percents, percents.toSorted((a, b) => b - a), "likeliest first");
          assert.ok(percents.reduce((a, b) => a + b) <= 100.1);
          assert.equal(new Set([match[2], match[4], match[6]]).size, 3);
        });
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
