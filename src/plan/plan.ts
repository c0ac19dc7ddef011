/**
 * A static plan for one training or evaluation step of a model: built once, with every buffer
 * allocated (dead activations' buffers reused), every pipeline and bind group created, and the
 * GPU memory it takes known up front. Running a step is encoding its dispatches.
 */
import type { Gpu } from "../gpu/device.ts";
import type { Command } from "../gpu/dispatch.ts";
import type { KernelPolicy } from "../ops/policy.ts";
import type { WeightTensors } from "../model/weights.ts";
import { materialize, type Materialized } from "./materialize.ts";
import {
  buildNetworkProgram,
  FORWARD_END,
  type LossOptions,
  type Mode,
  type NetworkIo,
} from "./network.ts";

export interface PlanMemory {
  /** Bytes of the activation and gradient buffers, after reuse. */
  activations: number;
  /** What they would take with one buffer per tensor. */
  activationsWithoutReuse: number;
  /** The kernels' scratch (the split reductions' partial sums), after reuse. */
  workspaces: number;
}

export class StepPlan {
  readonly mode: Mode;
  /** The whole step: forward, loss and (training) backward. */
  readonly commands: readonly Command[];
  /** How many of `commands` are the forward pass and loss (for timing them apart). */
  readonly forwardDispatches: number;
  readonly memory: PlanMemory;
  readonly #materialized: Materialized;

  private constructor(mode: Mode, materialized: Materialized, forwardDispatches: number) {
    const { bytes, bytesWithoutReuse } = materialized.allocation;
    this.mode = mode;
    this.commands = materialized.commands;
    this.forwardDispatches = forwardDispatches;
    this.memory = {
      activations: bytes.activation,
      activationsWithoutReuse: bytesWithoutReuse.activation,
      workspaces: bytes.workspace,
    };
    this.#materialized = materialized;
  }

  static async build(
    gpu: Gpu,
    weights: WeightTensors,
    mode: Mode,
    io: NetworkIo,
    policy: KernelPolicy,
    loss: LossOptions = {},
  ): Promise<StepPlan> {
    const program = buildNetworkProgram(weights, mode, io, policy, loss);
    const materialized = await materialize(gpu, program.calls, {
      label: mode,
      limitHint: mode === "train"
        ? "use a smaller batch size"
        : "use a smaller evaluation batch size (--eval-batch-size)",
    });
    return new StepPlan(mode, materialized, program.markAt(FORWARD_END));
  }

  destroy(): void {
    this.#materialized.destroy();
  }
}
