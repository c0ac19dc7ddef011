/**
 * A program is the static list of steps one training (or evaluation) step runs, over virtual
 * tensors. Building it first, and only then allocating buffers and creating bind groups, lets
 * the allocator see every tensor's lifetime and reuse dead activations' buffers.
 */
import type { Dispatch } from "../gpu/dispatch.ts";
import type { Tensor } from "../gpu/tensor.ts";

/** A tensor the program names before any buffer exists; `fixed` ones already have storage. */
export interface VirtualTensor {
  readonly id: number;
  readonly label: string;
  readonly shape: readonly number[];
  /** Storage owned elsewhere (parameters, gradients, inputs): never reused by the allocator. */
  readonly fixed?: Tensor;
}

export type Resolve = (tensor: VirtualTensor) => Tensor;

export interface ProgramStep {
  readonly label: string;
  readonly reads: readonly VirtualTensor[];
  readonly writes: readonly VirtualTensor[];
  /** Creates the step's dispatches once the tensors have storage. */
  build(resolve: Resolve): Promise<Dispatch[]>;
}

export class Program {
  readonly steps: ProgramStep[] = [];
  #nextId = 0;

  /** A transient tensor: the allocator gives it a buffer for its lifetime only. */
  tensor(label: string, shape: readonly number[]): VirtualTensor {
    return { id: this.#nextId++, label, shape };
  }

  /** A tensor with storage of its own that outlives the step (parameters, gradients, inputs). */
  fixed(tensor: Tensor): VirtualTensor {
    return { id: this.#nextId++, label: tensor.label, shape: tensor.shape, fixed: tensor };
  }

  add(step: ProgramStep): void {
    this.steps.push(step);
  }
}
