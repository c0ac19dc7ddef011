/** GPU helpers for tests: one device per test process, tensors from f64 data, readbacks. */
import { readBuffer } from "../../src/gpu/buffer.ts";
import { type Gpu, requestGpu } from "../../src/gpu/device.ts";
import { type Tensor, tensorFromData } from "../../src/gpu/tensor.ts";
import { elementCount } from "../../src/util/shape.ts";

let shared: Promise<Gpu> | undefined;

/** The device all tests in this process share (creating one costs tens of milliseconds). */
export function testGpu(): Promise<Gpu> {
  shared ??= requestGpu();
  return shared;
}

/**
 * Deno.test for code that uses the GPU. The device's lost promise and wgpu's own polling stay
 * pending across tests by design, so the op and resource sanitizers are off.
 */
export function gpuTest(name: string, fn: (gpu: Gpu) => Promise<void>): void {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => fn(await testGpu()),
  });
}

/** A tensor holding `values` as f32 (f64 test data is f32-representable, so nothing rounds). */
export function f32Tensor(
  gpu: Gpu,
  label: string,
  shape: readonly number[],
  values: ArrayLike<number>,
): Tensor {
  return tensorFromData(gpu, label, shape, Float32Array.from(values));
}

export function u32Tensor(
  gpu: Gpu,
  label: string,
  shape: readonly number[],
  values: ArrayLike<number>,
): Tensor {
  return tensorFromData(gpu, label, shape, Uint32Array.from(values));
}

/** An f32 tensor filled with NaN, so an element a kernel forgets to write fails the comparison. */
export function poisonedTensor(gpu: Gpu, label: string, shape: readonly number[]): Tensor {
  return f32Tensor(gpu, label, shape, new Float32Array(elementCount(shape)).fill(NaN));
}

/** Reads a tensor back, failing if any GPU validation error was raised since the last read. */
export async function readTensor(gpu: Gpu, tensor: Tensor): Promise<Float32Array> {
  const count = elementCount(tensor.shape);
  const values = new Float32Array(await readBuffer(gpu, tensor.buffer, tensor.offset, count * 4));
  const error = gpu.takeUncapturedError();
  if (error) throw new Error(`GPU error before reading ${tensor.label}: ${error.message}`);
  return values;
}
