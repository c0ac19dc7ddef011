/**
 * The one buffer helper shared by the runtime and the tests: create (checked against the device's
 * limits), upload, and read back.
 */
import { UserError } from "../errors.ts";
import type { Gpu } from "./device.ts";

/** Raised when a buffer would exceed the device's limits; the message names it and the fix. */
export class BufferLimitError extends UserError {
  override name = "BufferLimitError";
}

/**
 * Byte alignment of every tensor that shares a buffer (arena entries, counters, optimizer chunks):
 * WebGPU's default minStorageBufferOffsetAlignment, which no adapter exceeds, so layouts are the
 * same on every device.
 */
export const STORAGE_ALIGNMENT = 256;

export const STORAGE_USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
  GPUBufferUsage.COPY_DST;

export interface BufferRequest {
  label: string;
  /** Bytes; rounded up to a multiple of 4 as WebGPU requires. */
  size: number;
  usage?: GPUBufferUsageFlags;
}

/** Throws a BufferLimitError if a storage binding of `size` bytes does not fit the device. */
export function checkBindingSize(
  gpu: Gpu,
  label: string,
  size: number,
  hint = "use a smaller batch size",
): void {
  const limits = gpu.device.limits;
  const limit = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  if (size > limit) {
    throw new BufferLimitError(
      `${label} needs ${mib(size)}, over this device's limit of ${mib(limit)} per buffer: ${hint}`,
    );
  }
}

export function createBuffer(gpu: Gpu, request: BufferRequest): GPUBuffer {
  const size = Math.max(4, Math.ceil(request.size / 4) * 4);
  checkBindingSize(gpu, request.label, size);
  return gpu.device.createBuffer({
    label: request.label,
    size,
    usage: request.usage ?? STORAGE_USAGE,
  });
}

/** A new buffer holding `data` (uploaded at creation, no staging copy). */
export function uploadBuffer(
  gpu: Gpu,
  label: string,
  data: ArrayBufferView,
  usage: GPUBufferUsageFlags = STORAGE_USAGE,
): GPUBuffer {
  const buffer = gpu.device.createBuffer({
    label,
    size: Math.max(4, Math.ceil(data.byteLength / 4) * 4),
    usage,
    mappedAtCreation: true,
  });
  checkBindingSize(gpu, label, buffer.size);
  new Uint8Array(buffer.getMappedRange()).set(
    new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  );
  buffer.unmap();
  return buffer;
}

/** Writes `data` into `buffer` at `offset` bytes (queued; ordered before later submits). */
export function writeBuffer(
  gpu: Gpu,
  buffer: GPUBuffer,
  data: ArrayBufferView,
  offset = 0,
): void {
  // Typed arrays over a SharedArrayBuffer are not valid here; none of ours are.
  gpu.device.queue.writeBuffer(buffer, offset, data as ArrayBufferView<ArrayBuffer>);
}

/**
 * Copies `byteLength` bytes at `offset` of `buffer` back to the CPU. This waits for the GPU
 * (about 10 ms in Deno however small the read), so the runtime batches its readbacks.
 */
export async function readBuffer(
  gpu: Pick<Gpu, "device">,
  buffer: GPUBuffer,
  offset = 0,
  byteLength = buffer.size - offset,
): Promise<ArrayBuffer> {
  const staging = gpu.device.createBuffer({
    label: `${buffer.label} readback`,
    size: byteLength,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const encoder = gpu.device.createCommandEncoder();
  encoder.copyBufferToBuffer(buffer, offset, staging, 0, byteLength);
  gpu.device.queue.submit([encoder.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const bytes = staging.getMappedRange().slice(0);
  staging.destroy();
  return bytes;
}

export async function readFloat32(gpu: Gpu, buffer: GPUBuffer, offset = 0, count?: number) {
  const length = count === undefined ? undefined : count * 4;
  return new Float32Array(await readBuffer(gpu, buffer, offset, length));
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/** One binding's worth of a buffer too large to bind whole: `bytes` from `offset`. */
export interface BufferChunk {
  offset: number;
  bytes: number;
  /** "[offset, end)", for labels. */
  label: string;
}

/**
 * The largest chunk of a buffer one storage binding may hold on `gpu`, a multiple of
 * STORAGE_ALIGNMENT so that every chunk's offset is bindable.
 */
export function largestChunk(gpu: Gpu): number {
  const { maxStorageBufferBindingSize, maxBufferSize } = gpu.device.limits;
  const limit = Math.min(maxStorageBufferBindingSize, maxBufferSize);
  return Math.floor(limit / STORAGE_ALIGNMENT) * STORAGE_ALIGNMENT;
}

/** `size` bytes cut into chunks of `chunkBytes` (the last one shorter). */
export function bufferChunks(size: number, chunkBytes: number): BufferChunk[] {
  const chunks: BufferChunk[] = [];
  for (let offset = 0; offset < size; offset += chunkBytes) {
    const bytes = Math.min(chunkBytes, size - offset);
    chunks.push({ offset, bytes, label: `[${offset}, ${offset + bytes})` });
  }
  return chunks;
}
