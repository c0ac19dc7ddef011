/** GPU helpers for tests: one device per test process, tensors from f64 data, readbacks. */
import { readBuffer } from "../../src/gpu/buffer.ts";
import { type Gpu, requestGpu } from "../../src/gpu/device.ts";
import { type Tensor, tensorFromData } from "../../src/gpu/tensor.ts";
import type { ActivationDType } from "../../src/ops/shape.ts";
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

/**
 * An activation tensor of `dtype` holding `values`: f32 as given (f32-representable test data does
 * not round), f16 rounded to nearest (the reference should be given the same rounded values, see
 * `roundTo`).
 */
export function activationTensor(
  gpu: Gpu,
  label: string,
  shape: readonly number[],
  values: ArrayLike<number>,
  dtype: ActivationDType,
): Tensor {
  const data = dtype === "f16" ? Float16Array.from(values) : Float32Array.from(values);
  return tensorFromData(gpu, label, shape, data);
}

/** An activation tensor of `dtype` filled with NaN (see `poisonedTensor`). */
export function poisonedActivation(
  gpu: Gpu,
  label: string,
  shape: readonly number[],
  dtype: ActivationDType,
): Tensor {
  return activationTensor(
    gpu,
    label,
    shape,
    new Float32Array(elementCount(shape)).fill(NaN),
    dtype,
  );
}

/** `values` rounded to `dtype` and back, as f64: what an f16 tensor made from them holds. */
export function roundTo(values: ArrayLike<number>, dtype: ActivationDType): Float64Array {
  return Float64Array.from(dtype === "f16" ? Float16Array.from(values) : Float32Array.from(values));
}

/**
 * Reads a tensor back (f32 or f16 elements, widened to f32), failing if any GPU validation error
 * was raised since the last read.
 */
export async function readTensor(gpu: Gpu, tensor: Tensor): Promise<Float32Array> {
  const count = elementCount(tensor.shape);
  const bytesPerElement = tensor.dtype === "f16" ? 2 : 4;
  const byteLength = Math.ceil(count * bytesPerElement / 4) * 4;
  const bytes = await readBuffer(gpu, tensor.buffer, tensor.offset, byteLength);
  const values = tensor.dtype === "f16"
    ? Float32Array.from(new Float16Array(bytes, 0, count))
    : new Float32Array(bytes, 0, count);
  const error = gpu.takeUncapturedError();
  if (error) throw new Error(`GPU error before reading ${tensor.label}: ${error.message}`);
  return values;
}
