/**
 * An exponential moving average of a model's weights (--ema): a second ModelWeights whose
 * parameters and batch-norm running statistics follow the trained model's, average = decay ·
 * average + (1 − decay) · value after every optimizer step (src/ops/ema.ts), evaluated beside
 * the model. Its num_batches_tracked counters are left at 0: nothing reads them (evaluation uses
 * the running statistics alone, and checkpoints save the average's two arenas only).
 *
 * Its two arenas travel in training checkpoints among the optimizer's state buffers, under
 * AVERAGE_STATE_NAMES, so that a resumed run continues the same average.
 */
import { bufferChunks, largestChunk, readFloat32, writeBuffer } from "../gpu/buffer.ts";
import type { Gpu } from "../gpu/device.ts";
import type { Command } from "../gpu/dispatch.ts";
import { f32View } from "../gpu/tensor.ts";
import { CheckpointError } from "../io/safetensors.ts";
import { ModelWeights } from "../model/weights.ts";
import { emaUpdate } from "../ops/ema.ts";
import { materialize, type Materialized } from "../plan/materialize.ts";

/** The checkpoint names of the average's parameter and running-statistics arenas. */
export const AVERAGE_STATE_NAMES = { params: "ema.params", state: "ema.state" } as const;

export class WeightAverage {
  readonly average: ModelWeights;
  readonly decay: number;
  /** The update of both arenas; encode after the optimizer's. */
  readonly commands: readonly Command[];
  readonly #gpu: Gpu;
  readonly #model: ModelWeights;
  readonly #materialized: Materialized;

  private constructor(
    gpu: Gpu,
    model: ModelWeights,
    average: ModelWeights,
    decay: number,
    materialized: Materialized,
  ) {
    this.#gpu = gpu;
    this.#model = model;
    this.average = average;
    this.decay = decay;
    this.#materialized = materialized;
    this.commands = materialized.commands;
  }

  static async create(gpu: Gpu, model: ModelWeights, decay: number): Promise<WeightAverage> {
    const average = new ModelWeights(gpu, model.architecture.config);
    try {
      // One binding holds at most the device's limit: the arenas are averaged in chunks.
      const chunk = largestChunk(gpu);
      const calls = (["params", "state"] as const).flatMap((arena) =>
        bufferChunks(average[arena].size, chunk).flatMap(({ offset, bytes, label }) =>
          emaUpdate({
            average: f32View(`average ${arena} ${label}`, average[arena], offset, bytes),
            value: f32View(`model ${arena} ${label}`, model[arena], offset, bytes),
          }, { decay })
        )
      );
      const materialized = await materialize(gpu, calls, { label: "weight average" });
      return new WeightAverage(gpu, model, average, decay, materialized);
    } catch (error) {
      average.destroy();
      throw error;
    }
  }

  /** Starts the average at the model's weights (a new run). */
  restart(): void {
    const encoder = this.#gpu.device.createCommandEncoder();
    for (const arena of ["params", "state"] as const) {
      encoder.copyBufferToBuffer(
        this.#model[arena],
        0,
        this.average[arena],
        0,
        this.average[arena].size,
      );
    }
    this.#gpu.device.queue.submit([encoder.finish()]);
  }

  /** The arenas, for a checkpoint's optimizer state. */
  async exportState(): Promise<Record<string, Float32Array>> {
    return {
      [AVERAGE_STATE_NAMES.params]: await readFloat32(this.#gpu, this.average.params),
      [AVERAGE_STATE_NAMES.state]: await readFloat32(this.#gpu, this.average.state),
    };
  }

  /** Restores the arenas from a checkpoint's optimizer state. */
  importState(buffers: Readonly<Record<string, Float32Array>>, source: string): void {
    loadWeightAverage(this.#gpu, this.average, buffers, source);
  }

  destroy(): void {
    this.#materialized.destroy();
    this.average.destroy();
  }
}

/**
 * Writes the weight average saved among a checkpoint's optimizer buffers over `weights`' parameters
 * and running statistics (their counters are left as they are); `source` names the checkpoint.
 */
export function loadWeightAverage(
  gpu: Gpu,
  weights: ModelWeights,
  buffers: Readonly<Record<string, Float32Array>>,
  source: string,
): void {
  for (const arena of ["params", "state"] as const) {
    const name = AVERAGE_STATE_NAMES[arena];
    const values = buffers[name];
    if (values === undefined) {
      throw new CheckpointError(
        source,
        "holds no moving average of the weights: its run was trained without --ema",
      );
    }
    if (values.length !== weights[arena].size / 4) {
      throw new CheckpointError(
        source,
        `its optimizer.${name} has ${values.length} values where this model has ` +
          `${weights[arena].size / 4}: the file is damaged`,
      );
    }
    writeBuffer(gpu, weights[arena], values);
  }
}
