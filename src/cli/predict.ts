/**
 * `deno task predict --checkpoint FILE image.png...`: the three likeliest classes of each image,
 * with their probabilities.
 */
import { requestGpu } from "../gpu/deno_device.ts";
import { STDERR } from "./terminal.ts";
import { kernelPolicyFor } from "../plan/autotune.ts";
import { DEFAULT_CLASS_NAMES } from "../data/cifar.ts";
import { decodePngToCifar, ImageError } from "../data/image.ts";
import { Predictor, topClasses } from "../train/predict.ts";
import { checkPrecision } from "../train/precision.ts";
import { loadCheckpointModel } from "./checkpoint.ts";
import { helpText, parseCommandLine, predictCommand } from "./flags.ts";
import { UsageError } from "../errors.ts";
import { runCli } from "./run.ts";

const TOP = 3;

export async function runPredict(args: string[], log = console.log): Promise<void> {
  const line = parseCommandLine(predictCommand, args);
  if (line.help) return log(helpText(predictCommand));
  const { values, given, positionals: paths } = line;
  if (values.checkpoint === undefined) {
    throw new UsageError(
      "predict needs --checkpoint FILE: the model to classify with (see --help)",
    );
  }
  if (paths.length === 0) throw new UsageError("predict needs one or more PNG files (see --help)");
  // Every image is read before the GPU work starts, so that a bad file fails fast.
  const images = await Promise.all(paths.map(readImage));
  const gpu = await requestGpu({ largestBuffers: true });
  checkPrecision(gpu, values.precision);
  const { weights } = await loadCheckpointModel(gpu, values.checkpoint, values, given);
  const policy = await kernelPolicyFor(
    gpu,
    values.kernels,
    {
      model: weights.architecture.config,
      // The Predictor's batch: its DEFAULT_MAX_BATCH (64), not exported by src/train/predict.ts.
      passes: [{
        mode: "eval",
        batchSize: Math.min(images.length, 64),
        precision: values.precision,
      }],
    },
    log,
    STDERR,
  );
  const predictor = await Predictor.create(gpu, weights, images, policy, {
    precision: values.precision,
  });
  const logits = await predictor.logits();
  predictor.destroy();
  weights.destroy();
  paths.forEach((path, i) => {
    const top = topClasses(logits[i], TOP).map(({ classIndex, probability }) =>
      `${DEFAULT_CLASS_NAMES[classIndex]} ${(probability * 100).toFixed(1)}%`
    );
    log(`${path}: ${top.join(", ")}`);
  });
}

async function readImage(path: string): Promise<Uint8Array> {
  try {
    return decodePngToCifar(await Deno.readFile(path), path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw new UsageError(`${path}: no such file`);
    if (error instanceof Deno.errors.IsADirectory) {
      throw new UsageError(`${path}: is a folder, not a PNG file`);
    }
    if (error instanceof ImageError) throw new UsageError(error.message);
    throw error;
  }
}

if (import.meta.main) await runCli(() => runPredict(Deno.args));
