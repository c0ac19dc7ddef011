/**
 * Bad input to the commands, run as a user runs them (`deno run` in a subprocess): each is
 * refused with one line, `error: ...`, naming the problem and the fix, exit code 1, no stack
 * trace, and nothing left behind. The checkpoints are written here without a GPU (a state dict of
 * deterministic values through the safetensors encoder); the data set is generated.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { encode } from "fast-png";
import { encodeSafetensors, type Tensor } from "../../src/io/safetensors.ts";
import { buildArchitecture } from "../../src/model/architecture.ts";
import { CHECKPOINT_FORMAT } from "../../src/model/checkpoint.ts";
import { resnetConfig } from "../../src/model/config.ts";
import { parameterSpecs, stateSpecs } from "../../src/model/parameters.ts";
import { binaryFiles, writeFiles } from "../support/data_fixtures.ts";
import {
  assertOneLineError,
  type Output,
  RECORDS_PER_FILE,
  runCommand,
  TINY_RUN,
} from "../support/cli.ts";
import { exists } from "../support/files.ts";
import { needs } from "../support/permissions.ts";

const TINY = resnetConfig("resnet18", 1 / 16);
/** The command failed with exactly one line on stderr, `error: <message>`; returns the message. */
function refusal(output: Output): string {
  return assertOneLineError(output).slice("error: ".length);
}

/** A checkpoint of TINY as `deno task train` writes one, made on the CPU: finite weights. */
function tinyCheckpoint(poison?: { name: string; value: number }): Uint8Array {
  const architecture = buildArchitecture(TINY);
  const tensors = new Map<string, Tensor>();
  for (const spec of [...parameterSpecs(architecture), ...stateSpecs(architecture)]) {
    const size = spec.torchShape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(size).map((_, i) =>
      spec.role === "running_var" || spec.role === "bn_weight" ? 1 : Math.sin(i) / 8
    );
    if (spec.name === poison?.name) {
      data[size - 1] = poison.value;
      poison = undefined;
    }
    tensors.set(spec.name, { dtype: "F32", shape: spec.torchShape, data });
  }
  if (poison) throw new Error(`the model has no tensor ${poison.name}`);
  const metadata = { format: CHECKPOINT_FORMAT, model: TINY, epoch: 1, step: 4, seed: 0 };
  return encodeSafetensors(tensors, { checkpoint: JSON.stringify(metadata) });
}

Deno.test({
  name: "bad checkpoints, data and widths are refused by the commands with one line",
  ...needs("read", "write", "run", "env"),
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "cli_errors_test_" });
    const data = join(dir, "cifar-10-batches-bin");
    await writeFiles(data, binaryFiles(RECORDS_PER_FILE));
    const checkpoint = join(dir, "tiny.safetensors");
    await Deno.writeFile(checkpoint, tinyCheckpoint());
    const png = join(dir, "cat.png");
    await Deno.writeFile(
      png,
      encode({ width: 32, height: 32, data: new Uint8Array(32 * 32 * 3), channels: 3 }),
    );
    try {
      await t.step("a folder given as --checkpoint: eval and predict", async () => {
        const runFolder = join(dir, "run");
        await Deno.mkdir(runFolder);
        await Deno.writeFile(join(runFolder, "best.safetensors"), tinyCheckpoint());
        const empty = join(dir, "empty");
        await Deno.mkdir(empty);
        const expected = `${runFolder}: is a folder, not a checkpoint file: give the file, e.g. ` +
          `--checkpoint ${join(runFolder, "best.safetensors")}`;
        assert.equal(
          refusal(await command("eval", ["--checkpoint", runFolder, "--data", data])),
          expected,
        );
        assert.equal(refusal(await command("predict", ["--checkpoint", runFolder, png])), expected);
        assert.equal(
          refusal(await command("eval", ["--checkpoint", empty, "--data", data])),
          `${empty}: is a folder, not a checkpoint file: give a .safetensors file`,
        );
      });

      await t.step("a folder given as an image to predict", async () => {
        assert.equal(
          refusal(await command("predict", ["--checkpoint", checkpoint, dir])),
          `${dir}: is a folder, not a PNG file`,
        );
      });

      await t.step("a metrics log given as a checkpoint: eval and train --resume", async () => {
        const metrics = join(dir, "metrics.jsonl");
        await Deno.writeTextFile(
          metrics,
          '{"epoch":1,"step":4,"trainLoss":2.3,"trainAccuracy":0.1,"testLoss":2.3}\n',
        );
        const expected = `${metrics}: not a checkpoint: not a safetensors file (it is JSON ` +
          "text); give a .safetensors checkpoint (a run's last.safetensors or best.safetensors, " +
          "or a PyTorch state dict saved with safetensors)";
        assert.equal(
          refusal(await command("eval", ["--checkpoint", metrics, "--data", data])),
          expected,
        );
        assert.equal(refusal(await command("train", ["--resume", metrics])), expected);
      });

      await t.step("a checkpoint with a NaN weight is refused, naming the tensor", async () => {
        const poisoned = join(dir, "nan.safetensors");
        await Deno.writeFile(
          poisoned,
          tinyCheckpoint({
            name: "conv3_x.0.residual_function.0.weight",
            value: NaN,
          }),
        );
        const message = refusal(await command("eval", ["--checkpoint", poisoned, "--data", data]));
        assert.match(
          message,
          new RegExp(
            `^${poisoned}: conv3_x\\.0\\.residual_function\\.0\\.weight holds NaN at element \\d+ \\(1 of its ` +
              "\\d+ values are NaN or infinite\\): no usable model",
          ),
        );
      });

      await t.step(
        "an evaluation batch over the binding limit names --eval-batch-size",
        async () => {
          // 10000 images of 4 channels at 32x32 in f32 are 156 MiB, over WebGPU's default 128 MiB.
          const message = refusal(
            await command("eval", [
              "--checkpoint",
              checkpoint,
              "--data",
              data,
              "--eval-batch-size",
              "10000",
            ]),
          );
          assert.match(
            message,
            /^eval .* needs [\d.]+ MiB, over this device's limit of 128\.0 MiB per buffer: use a smaller evaluation batch size \(--eval-batch-size\)$/,
          );
        },
      );

      await t.step("a width that leaves stages of fewer than 4 channels", async () => {
        const runDir = join(dir, "narrow-run");
        const args = [...TINY_RUN, "--width", "1e-9", "--data", data, "--run-dir", runDir];
        assert.equal(
          refusal(await command("train", args)),
          "--width must be a number from 0.0546875 to 16 (a smaller width leaves the narrowest " +
            'stage fewer than 4 channels), got "1e-9"',
        );
        assert.ok(!await exists(runDir));
      });

      await t.step("a PNG given as --data is named as one", async () => {
        const runDir = join(dir, "png-run");
        assert.equal(
          refusal(await command("train", [...TINY_RUN, "--data", png, "--run-dir", runDir])),
          `${png}: is a PNG image, not CIFAR-10 data; expected a folder holding ` +
            "cifar-10-batches-bin/ or cifar-10-batches-py/, or their archive " +
            "cifar-10-binary.tar.gz or cifar-10-python.tar.gz",
        );
      });

      await t.step("a mistyped --data is not created or downloaded into", async () => {
        const typo = join(dir, "cifar-10-batches-bni");
        const runDir = join(dir, "typo-run");
        assert.equal(
          refusal(await command("train", [...TINY_RUN, "--data", typo, "--run-dir", runDir])),
          `${typo}: no such file or folder; check the path; to download CIFAR-10 there, create ` +
            `the folder first (mkdir -p ${typo})`,
        );
        assert.ok(!await exists(typo), "no folder made at the mistyped path");
        assert.ok(!await exists(runDir), "no run folder either");
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }

    function command(name: string, args: string[]): Promise<Output> {
      return runCommand(name, args, dir);
    }
  },
});
