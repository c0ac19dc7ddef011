/**
 * --precision and --resume: a resumed run keeps the precision its checkpoint's recipe stores, and
 * a --precision that contradicts it is refused in one line before any data or GPU work. The
 * checkpoint is made on the CPU (weights of deterministic values, a one-epoch history).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runTrain } from "../../src/cli/train.ts";
import { newRunSettings } from "../../src/cli/train.ts";
import { parseCommandLine, trainCommand } from "../../src/cli/flags.ts";
import { UsageError } from "../../src/errors.ts";
import { encodeSafetensors, type Tensor } from "../../src/io/safetensors.ts";
import { buildArchitecture } from "../../src/model/architecture.ts";
import { CHECKPOINT_FORMAT } from "../../src/model/checkpoint.ts";
import { modelConfig } from "../../src/model/config.ts";
import { parameterSpecs, stateSpecs } from "../../src/model/parameters.ts";
import type { EpochRecord } from "../../src/train/history.ts";
import { needs } from "../support/permissions.ts";

/** A training checkpoint of a one-epoch f16 run, as `deno task train --precision f16` saves one. */
function f16RunCheckpoint(): Uint8Array {
  const line = parseCommandLine(trainCommand, ["--width", "0.0625", "--precision", "f16"]);
  if (line.help) throw new Error("unreachable");
  const { recipe } = newRunSettings(line);
  const model = modelConfig(recipe.model, recipe.width);
  const tensors = new Map<string, Tensor>();
  for (
    const spec of [
      ...parameterSpecs(buildArchitecture(model)),
      ...stateSpecs(buildArchitecture(model)),
    ]
  ) {
    const size = spec.torchShape.reduce((a, b) => a * b, 1);
    tensors.set(spec.name, {
      dtype: "F32",
      shape: spec.torchShape,
      data: new Float32Array(size).fill(0.5),
    });
  }
  tensors.set("optimizer.step", { dtype: "I64", shape: [], data: BigInt64Array.of(4n) });
  const history: EpochRecord[] = [{
    epoch: 1,
    step: 4,
    lr: 0.1,
    trainLoss: 2,
    trainAccuracy: 0.2,
    testLoss: 2,
    testAccuracy: 0.2,
    lossScale: 65536,
    skippedSteps: 0,
    imagesPerSecond: 10,
    elapsedSeconds: 10,
  }];
  const metadata = {
    format: CHECKPOINT_FORMAT,
    model,
    epoch: 1,
    step: 4,
    seed: 0,
    training: { recipe, data: "./no-data-here", evalBatchSize: 250, history },
  };
  return encodeSafetensors(tensors, { checkpoint: JSON.stringify(metadata) });
}

Deno.test({
  name: "--resume refuses a --precision that contradicts the run's, in one line",
  ...needs("read", "write"),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "precision_test_" });
    const checkpoint = join(dir, "last.safetensors");
    await Deno.writeFile(checkpoint, f16RunCheckpoint());
    await assert.rejects(
      runTrain(["--resume", checkpoint, "--precision", "f32"], () => {}),
      (error) =>
        error instanceof UsageError &&
        error.message ===
          "--precision f32 conflicts with the run's f16: a resumed run keeps its precision " +
            "(leave out --precision, or start a new run)",
    );
    await Deno.remove(dir, { recursive: true });
  },
});
