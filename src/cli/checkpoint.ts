/**
 * A checkpoint file read into a model on the GPU, for the eval and predict commands. The model's
 * config comes from the checkpoint's metadata; a bare PyTorch state dict has none, and then
 * --model and --width say what it is.
 */
import type { Gpu } from "../gpu/device.ts";
import { CheckpointError } from "../io/safetensors.ts";
import {
  type CheckpointMetadata,
  decodeCheckpoint,
  loadModelStateDict,
} from "../model/checkpoint.ts";
import { type PresetName, type ResNetConfig, resnetConfig } from "../model/config.ts";
import { ModelWeights } from "../model/weights.ts";
import { describeModel } from "./describe.ts";
import { UsageError } from "../errors.ts";

export interface ModelFlags {
  model: PresetName;
  width: number;
}

export interface LoadedModel {
  weights: ModelWeights;
  config: ResNetConfig;
  metadata?: CheckpointMetadata;
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
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw new CheckpointError(path, "no such file");
    throw error;
  }
  const { tensors, metadata } = decodeCheckpoint(bytes, path);
  const fromFlags = resnetConfig(flags.model, flags.width);
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
  return { weights, config, metadata };
}
