/**
 * Buffers for a program's transient tensors, reusing the buffer of a tensor whose last reader
 * ran before the new tensor's first writer. Greedy best fit in order of first use; a buffer
 * never serves two tensors of one step, since WebGPU forbids a written binding aliased by another.
 */
import { createBuffer } from "../gpu/buffer.ts";
import type { Gpu } from "../gpu/device.ts";
import { byteSize, type Tensor } from "../gpu/tensor.ts";
import type { Program, VirtualTensor } from "./program.ts";

export interface Allocation {
  resolve(tensor: VirtualTensor): Tensor;
  /** Bytes of the buffers created for transient tensors. */
  bytes: number;
  /** Bytes the transient tensors would take with a buffer each. */
  bytesWithoutReuse: number;
  buffers: GPUBuffer[];
}

interface Lifetime {
  tensor: VirtualTensor;
  first: number;
  last: number;
  size: number;
}

function lifetimes(program: Program): Lifetime[] {
  const byId = new Map<number, Lifetime>();
  program.steps.forEach((step, index) => {
    for (const tensor of [...step.reads, ...step.writes]) {
      if (tensor.fixed) continue;
      const lifetime = byId.get(tensor.id);
      if (lifetime) lifetime.last = index;
      else byId.set(tensor.id, { tensor, first: index, last: index, size: byteSize(tensor) });
    }
  });
  for (const lifetime of byId.values()) {
    const writtenFirst = program.steps[lifetime.first].writes.includes(lifetime.tensor);
    if (!writtenFirst) {
      throw new Error(
        `plan: ${lifetime.tensor.label} is read by ${
          program.steps[lifetime.first].label
        } before any step writes it`,
      );
    }
  }
  return [...byId.values()].sort((a, b) => a.first - b.first || b.size - a.size);
}

export function allocate(gpu: Gpu, program: Program, labelPrefix: string): Allocation {
  const buffers: { buffer: GPUBuffer; freeAfter: number }[] = [];
  const assigned = new Map<number, GPUBuffer>();
  let bytesWithoutReuse = 0;
  for (const lifetime of lifetimes(program)) {
    bytesWithoutReuse += lifetime.size;
    let best: { buffer: GPUBuffer; freeAfter: number } | undefined;
    for (const candidate of buffers) {
      const fits = candidate.freeAfter < lifetime.first && candidate.buffer.size >= lifetime.size;
      if (fits && (!best || candidate.buffer.size < best.buffer.size)) best = candidate;
    }
    if (!best) {
      best = {
        buffer: createBuffer(gpu, {
          label: `${labelPrefix} ${lifetime.tensor.label}`,
          size: lifetime.size,
        }),
        freeAfter: -1,
      };
      buffers.push(best);
    }
    best.freeAfter = lifetime.last;
    assigned.set(lifetime.tensor.id, best.buffer);
  }
  return {
    resolve(tensor) {
      if (tensor.fixed) return tensor.fixed;
      const buffer = assigned.get(tensor.id);
      if (!buffer) throw new Error(`plan: ${tensor.label} is used by no step`);
      return { label: tensor.label, buffer, offset: 0, shape: tensor.shape };
    },
    bytes: buffers.reduce((sum, { buffer }) => sum + buffer.size, 0),
    bytesWithoutReuse,
    buffers: buffers.map(({ buffer }) => buffer),
  };
}
