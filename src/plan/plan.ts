/**
 * A static plan for one training or evaluation step of a ResNet: built once, with every buffer
 * allocated (dead activations' buffers reused), every pipeline and bind group created, and the
 * GPU memory it takes known up front. Running a step is encoding its dispatches.
 */
import { createBuffer } from "../gpu/buffer.ts";
import type { Gpu } from "../gpu/device.ts";
import type { Dispatch } from "../gpu/dispatch.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { ModelWeights } from "../model/weights.ts";
import { allocate } from "./allocator.ts";
import { type Mode, type NetworkIo, NetworkProgram } from "./network.ts";

export interface PlanMemory {
  /** Bytes of the activation and gradient buffers, after reuse. */
  activations: number;
  /** What they would take with one buffer per tensor. */
  activationsWithoutReuse: number;
  /** The shared scratch of the split reductions. */
  workspaces: number;
}

export class StepPlan {
  readonly mode: Mode;
  /** The whole step: forward, loss and (training) backward. */
  readonly dispatches: readonly Dispatch[];
  /** How many of `dispatches` are the forward pass and loss (for timing them apart). */
  readonly forwardDispatches: number;
  readonly memory: PlanMemory;
  readonly #buffers: GPUBuffer[];

  private constructor(
    mode: Mode,
    dispatches: Dispatch[],
    forwardDispatches: number,
    memory: PlanMemory,
    buffers: GPUBuffer[],
  ) {
    this.mode = mode;
    this.dispatches = dispatches;
    this.forwardDispatches = forwardDispatches;
    this.memory = memory;
    this.#buffers = buffers;
  }

  static async build(
    gpu: Gpu,
    weights: ModelWeights,
    mode: Mode,
    io: NetworkIo,
  ): Promise<StepPlan> {
    const network = new NetworkProgram(gpu, weights, mode);
    network.build(io);
    const allocation = allocate(gpu, network.program, mode);
    const workspaceBuffers: GPUBuffer[] = [];
    const workspaces = network.createWorkspaces((label, bytes): Tensor => {
      const buffer = createBuffer(gpu, { label, size: bytes });
      workspaceBuffers.push(buffer);
      return { label, buffer, offset: 0, shape: [buffer.size / 4] };
    });
    const dispatches: Dispatch[] = [];
    let forwardDispatches = 0;
    for (const [index, step] of network.program.steps.entries()) {
      dispatches.push(...await step.build(allocation.resolve));
      if (index + 1 === network.forwardSteps) forwardDispatches = dispatches.length;
    }
    return new StepPlan(
      mode,
      dispatches,
      forwardDispatches,
      {
        activations: allocation.bytes,
        activationsWithoutReuse: allocation.bytesWithoutReuse,
        workspaces: workspaces.conv.buffer.size + workspaces.bn.buffer.size,
      },
      [...allocation.buffers, ...workspaceBuffers],
    );
  }

  destroy(): void {
    for (const buffer of this.#buffers) buffer.destroy();
  }
}
