/**
 * A checkpoint file read into a model on the GPU, for the eval and predict commands. The model's
 * config comes from the checkpoint's metadata; a bare PyTorch state dict has none, and then
 * --model and --width say what it is.
 */
import { join } from "node:path";
import type { Gpu } from "../gpu/device.ts";
import { CheckpointError } from "../io/safetensors.ts";
import {
  type CheckpointMetadata,
  decodeCheckpoint,
  loadModelStateDict,
  type OptimizerState,
} from "../model/checkpoint.ts";
import { type ModelConfig, modelConfig, type ModelName } from "../model/config.ts";
import { ModelWeights } from "../model/weights.ts";
import { describeModel } from "./describe.ts";
import { UsageError } from "../errors.ts";

export interface ModelFlags {
  model: ModelName;
  width: number;
}

export interface LoadedModel {
  weights: ModelWeights;
  config: ModelConfig;
  metadata?: CheckpointMetadata;
  /** A training checkpoint's optimizer state (with --ema, the weight average among it). */
  optimizer?: OptimizerState;
}

/**
 * Reads `path` into a new ModelWeights. `flags` describe a checkpoint without metadata; `given`
 * (the flags on the command line) tells whether they were chosen or left at their defaults.
 */
export async function loadCheckpointModel(
  gpu: Gpu,
  path: string,
  flags: ModelFlags,
  given: ReadonlySet<string>,
): Promise<LoadedModel> {
  const { tensors, metadata, optimizer } = decodeCheckpoint(await readCheckpointFile(path), path);
  const fromFlags = modelConfig(flags.model, flags.width);
  const chosen = given.has("model") || given.has("width");
  if (metadata && chosen && describeModel(metadata.model) !== describeModel(fromFlags)) {
    throw new UsageError(
      `${path} holds a ${describeModel(metadata.model)} (its metadata says so), not a ` +
        `${describeModel(fromFlags)}: leave out --model and --width`,
    );
  }
  const config = metadata?.model ?? fromFlags;
  const weights = new ModelWeights(gpu, config);
  try {
    loadModelStateDict(weights, tensors, path);
  } catch (error) {
    weights.destroy();
    throw error;
  }
  return { weights, config, metadata, optimizer };
}

/** The checkpoints a run folder holds, best first: what to give instead of the folder. */
const RUN_CHECKPOINTS = ["best.safetensors", "last.safetensors"];

/** A checkpoint file's bytes; a folder, a missing or an unreadable file is one line. */
async function readCheckpointFile(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw new CheckpointError(path, "no such file");
    if (error instanceof Deno.errors.IsADirectory) {
      const inside = await firstExisting(RUN_CHECKPOINTS.map((name) => join(path, name)));
      throw new CheckpointError(
        path,
        "is a folder, not a checkpoint file: " +
          (inside ? `give the file, e.g. --checkpoint ${inside}` : "give a .safetensors file"),
      );
    }
    if (error instanceof Deno.errors.PermissionDenied) {
      throw new CheckpointError(path, "cannot be read (permission denied): check its permissions");
    }
    throw error;
  }
}

async function firstExisting(paths: string[]): Promise<string | undefined> {
  for (const path of paths) {
    try {
      if ((await Deno.stat(path)).isFile) return path;
    } catch {
      // absent or unreadable: not one to suggest
    }
  }
  return undefined;
}
