/**
 * A tensor is a typed view of a range of a GPU buffer. Activations are NHWC, conv weights OHWI
 * (see shaders/README.md); the shape is kept for validation and for the CPU side, the kernels
 * receive sizes as override constants.
 */
import { createBuffer } from "./buffer.ts";
import type { Gpu } from "./device.ts";

export interface Tensor {
  readonly label: string;
  readonly buffer: GPUBuffer;
  /** Byte offset in the buffer; a multiple of the device's minStorageBufferOffsetAlignment. */
  readonly offset: number;
  readonly shape: readonly number[];
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((product, size) => product * size, 1);
}

/** Bytes of a tensor's data (4 per element: f32, u32 and i32 alike). */
export function byteSize(tensor: Pick<Tensor, "shape">): number {
  return elementCount(tensor.shape) * 4;
}

/** A tensor with a buffer of its own. */
export function createTensor(gpu: Gpu, label: string, shape: readonly number[]): Tensor {
  return {
    label,
    shape,
    offset: 0,
    buffer: createBuffer(gpu, { label, size: elementCount(shape) * 4 }),
  };
}

/** The binding resource for a tensor: exactly its range, so kernels can use arrayLength(). */
export function bindingOf(tensor: Tensor): GPUBufferBinding {
  return { buffer: tensor.buffer, offset: tensor.offset, size: byteSize(tensor) };
}
