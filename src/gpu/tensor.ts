/**
 * Tensors: a label, a shape and an element type (`TensorDesc`), and where storage exists, a range
 * of a GPU buffer (`Tensor`). Ops plan over descriptions alone; the plan gives the transient ones
 * storage. Activations are NHWC, conv weights OHWI (see shaders/README.md); kernels receive sizes
 * as override constants, the shape is kept for validation and for the CPU side.
 */
import { createBuffer, uploadBuffer } from "./buffer.ts";
import type { Gpu } from "./device.ts";
import { elementCount } from "../util/shape.ts";

/** Element types: what the WGSL side declares as `f32`, `u32`, `i32` or `f16`. */
export type DType = "f32" | "u32" | "i32" | "f16";

const DTYPE_BYTES: Readonly<Record<DType, number>> = { f32: 4, u32: 4, i32: 4, f16: 2 };

/**
 * What a tensor is, without storage. Object identity is the tensor's identity: a plan tells two
 * tensors apart by reference, never by label.
 */
export interface TensorDesc {
  readonly label: string;
  readonly shape: readonly number[];
  readonly dtype: DType;
  /** A kernel's scratch (a split reduction's partial sums), reported apart from activations. */
  readonly role?: "workspace";
  /**
   * Set for a tensor held as an `rgba32float` texture of [width, height] texels instead of a
   * buffer range (see `textureDesc`); bound with the "texture" and "storage_texture" accesses.
   */
  readonly texture?: readonly [number, number];
}

/** A tensor with storage: `byteSize` bytes of `buffer` at `offset`. */
export interface Tensor extends TensorDesc {
  readonly buffer: GPUBuffer;
  /** Byte offset in the buffer; a multiple of STORAGE_ALIGNMENT. */
  readonly offset: number;
}

export function hasStorage(tensor: TensorDesc): tensor is Tensor {
  return "buffer" in tensor;
}

/**
 * Bytes of a tensor's data, rounded up to whole 4-byte words as WebGPU binds them; for a texture,
 * its whole texels (16 bytes each).
 */
export function byteSize(tensor: Pick<TensorDesc, "shape" | "dtype" | "texture">): number {
  if (tensor.texture) return tensor.texture[0] * tensor.texture[1] * 16;
  return Math.ceil(elementCount(tensor.shape) * DTYPE_BYTES[tensor.dtype] / 4) * 4;
}

/** WebGPU's default `maxTextureDimension2D`. */
export const MAX_TEXTURE_SIDE = 8192;

/**
 * The [width, height] of the texture holding `elements` floats, four per texel, in rows of a
 * power of two texels (a kernel finds texel t at (t & (width - 1), t >> log2(width))), at most
 * MAX_TEXTURE_SIDE wide; undefined where it would be more than MAX_TEXTURE_SIDE rows.
 */
export function textureExtent(elements: number): [number, number] | undefined {
  const texels = Math.max(1, Math.ceil(elements / 4));
  const width = Math.min(MAX_TEXTURE_SIDE, 2 ** Math.ceil(Math.log2(texels)));
  const height = Math.ceil(texels / width);
  return height <= MAX_TEXTURE_SIDE ? [width, height] : undefined;
}

/** A channel count (a last dimension) rounded up to whole texels of 4 elements. */
export function texelChannels(channels: number): number {
  return Math.ceil(channels / 4) * 4;
}

/** `shape` with its last dimension rounded up to whole texels of 4 elements. */
export function texelShape(shape: readonly number[]): number[] {
  return [...shape.slice(0, -1), texelChannels(shape[shape.length - 1])];
}

/**
 * A tensor without storage holding `source`'s elements as f32 in an `rgba32float` texture
 * (`textureExtent`), for a kernel to fill from `source` and others to read with `textureLoad`:
 * a kernel's staged copy, so a workspace (memory reports it apart from the activations). Its
 * shape is `texelShape(source.shape)`: a last dimension that is not a multiple of 4 is padded
 * with zeros, so that a texel never straddles two rows.
 */
export function textureDesc(label: string, source: TensorDesc): TensorDesc {
  const shape = texelShape(source.shape);
  const extent = textureExtent(elementCount(shape));
  if (!extent) {
    throw new RangeError(
      `${label}: [${shape}] needs more than ${MAX_TEXTURE_SIDE} rows of ${MAX_TEXTURE_SIDE} texels`,
    );
  }
  return { label, shape, dtype: "f32", role: "workspace", texture: extent };
}

/** A tensor without storage, for a plan to allocate. */
export function tensorDesc(
  label: string,
  shape: readonly number[],
  dtype: DType = "f32",
): TensorDesc {
  return { label, shape, dtype };
}

/** A kernel's scratch tensor, for a plan to allocate beside (and apart from) the activations. */
export function workspaceDesc(label: string, shape: readonly number[]): TensorDesc {
  return { label, shape, dtype: "f32", role: "workspace" };
}

/** A tensor with a buffer of its own. */
export function createTensor(
  gpu: Gpu,
  label: string,
  shape: readonly number[],
  dtype: DType = "f32",
): Tensor {
  return {
    label,
    shape,
    dtype,
    offset: 0,
    buffer: createBuffer(gpu, { label, size: byteSize({ shape, dtype }) }),
  };
}

/** Typed arrays a tensor can be made from, and the element type each holds. */
export type TensorData = Float32Array | Float16Array | Uint32Array | Int32Array;

function dtypeOf(data: TensorData): DType {
  if (data instanceof Float32Array) return "f32";
  if (data instanceof Float16Array) return "f16";
  if (data instanceof Uint32Array) return "u32";
  return "i32";
}

/** A tensor with a buffer of its own holding `data`; the element type follows the array's. */
export function tensorFromData(
  gpu: Gpu,
  label: string,
  shape: readonly number[],
  data: TensorData,
  usage?: GPUBufferUsageFlags,
): Tensor {
  if (data.length !== elementCount(shape)) {
    throw new RangeError(`${label}: ${data.length} values do not fill shape [${shape}]`);
  }
  return {
    label,
    shape,
    dtype: dtypeOf(data),
    offset: 0,
    buffer: uploadBuffer(gpu, label, data, usage),
  };
}

/** The binding resource for a tensor: exactly its range, so kernels can use arrayLength(). */
/** A view of `bytes` bytes of `buffer` from `offset`, as a flat f32 tensor. */
export function f32View(label: string, buffer: GPUBuffer, offset: number, bytes: number): Tensor {
  return { label, buffer, offset, shape: [bytes / 4], dtype: "f32" };
}

export function bindingOf(tensor: Tensor): GPUBufferBinding {
  return { buffer: tensor.buffer, offset: tensor.offset, size: byteSize(tensor) };
}
