import assert from "node:assert/strict";
import { readFloat32, STORAGE_ALIGNMENT, uploadBuffer } from "../../src/gpu/buffer.ts";
import type { Tensor } from "../../src/gpu/tensor.ts";
import { tensorDesc } from "../../src/gpu/tensor.ts";
import { emaUpdate } from "../../src/ops/ema.ts";
import { ShapeError } from "../../src/ops/shape.ts";
import { submitCalls } from "../../src/plan/materialize.ts";
import { elementCount } from "../../src/util/shape.ts";
import { f32Tensor, gpuTest, readTensor } from "../support/gpu.ts";
import { assertAllClose } from "../support/reference/compare.ts";
import { emaUpdate as referenceEmaUpdate } from "../support/reference/optimizer.ts";
import { f32Array, Random } from "../support/reference/random.ts";
import { ELEMENTWISE } from "../support/tolerances.ts";

const UPDATES = 5;

// Odd counts (105, 257, 1001: the scalar entry point, none a multiple of the 256-wide workgroup),
// multiples of 4 (the vec4 entry point: 1728 a conv weight's, 4 a single vec4), and 1.
const CASES = [
  { shape: [3, 5, 7], decay: 0.9 },
  { shape: [257], decay: 0.999 },
  { shape: [1001], decay: 0.5 },
  { shape: [1], decay: 0.99 },
  { shape: [64, 3, 3, 3], decay: 0.9 },
  { shape: [4], decay: 0.999 },
  { shape: [2, 1030], decay: 0.9999 },
];

for (const { shape, decay } of CASES) {
  const count = elementCount(shape);
  gpuTest(`ema: ${UPDATES} updates on [${shape}], decay ${decay}, against f64`, async (gpu) => {
    const random = new Random(count);
    const initial = f32Array(count, () => random.uniform(-2, 2));
    const values = Array.from(
      { length: UPDATES },
      () => f32Array(count, () => random.uniform(-2, 2)),
    );
    const average = f32Tensor(gpu, "average", shape, initial);
    const expected = initial.slice();
    for (const value of values) {
      const calls = emaUpdate({ average, value: f32Tensor(gpu, "value", shape, value) }, { decay });
      assert.equal(calls.length, 1);
      assert.equal(calls[0].entryPoint, count % 4 === 0 ? "update_vec4" : "update");
      await submitCalls(gpu, calls);
      referenceEmaUpdate(expected, value, decay);
    }
    // Each update rounds a few times (≤ 2 ulp of the largest value), and decay shrinks the errors
    // of earlier ones: under 1e-6 over 5 updates (measured at most 2.6e-7). A wrong decay or
    // index is off by 1e-4 or more.
    assertAllClose(await readTensor(gpu, average), expected, ELEMENTWISE, `ema [${shape}]`);
  });
}

gpuTest("ema: decay 0 copies the value exactly", async (gpu) => {
  for (const shape of [[7], [8]]) {
    const random = new Random(3);
    const value = f32Array(elementCount(shape), () => random.uniform(-1e3, 1e3));
    const average = f32Tensor(gpu, "average", shape, new Float32Array(shape[0]).fill(5));
    await submitCalls(
      gpu,
      emaUpdate({ average, value: f32Tensor(gpu, "value", shape, value) }, { decay: 0 }),
    );
    assert.deepEqual([...await readTensor(gpu, average)], [...value]);
  }
});

gpuTest("ema: 1 − decay is folded in f64, as PyTorch's (1 - decay) is", async (gpu) => {
  // From an average of 0 towards 1, one update gives exactly the kernel's 1 − decay: f32(0.001)
  // from the host's f64, where 1 − f32(0.999) in f32 would be 0.0009999871.
  for (const count of [3, 4]) {
    const average = f32Tensor(gpu, "average", [count], new Float32Array(count));
    const value = f32Tensor(gpu, "value", [count], new Float32Array(count).fill(1));
    await submitCalls(gpu, emaUpdate({ average, value }, { decay: 0.999 }));
    const expected = new Array(count).fill(Math.fround(1 - 0.999));
    assert.deepEqual([...await readTensor(gpu, average)], expected, `${count} elements`);
  }
});

gpuTest("ema: updates exactly its ranges of larger buffers", async (gpu) => {
  // As src/train/weight_average.ts binds chunks of the arenas: views at an aligned offset, the
  // rest of the buffers a guard that must stay as it was.
  const floats = STORAGE_ALIGNMENT / 4;
  for (const count of [3 * floats, 3 * floats - 1]) {
    const guard = -7;
    const random = new Random(count);
    const initial = f32Array(count, () => random.uniform(-1, 1));
    const value = f32Array(count, () => random.uniform(-1, 1));
    const buffer = (values: Float64Array) => {
      const data = new Float32Array(count + 2 * floats).fill(guard);
      data.set(values, floats);
      return uploadBuffer(gpu, "arena", data);
    };
    const view = (label: string, data: Float64Array): Tensor => ({
      label,
      buffer: buffer(data),
      offset: STORAGE_ALIGNMENT,
      shape: [count],
      dtype: "f32",
    });
    const average = view("average", initial);
    await submitCalls(gpu, emaUpdate({ average, value: view("value", value) }, { decay: 0.75 }));
    const all = await readFloat32(gpu, average.buffer);
    const expected = initial.slice();
    referenceEmaUpdate(expected, value, 0.75);
    assertAllClose(all.subarray(floats, floats + count), expected, ELEMENTWISE, `ema ${count}`);
    const outside = [...all.subarray(0, floats), ...all.subarray(floats + count)];
    assert.deepEqual(outside, new Array(outside.length).fill(guard), `ema ${count}: guard`);
  }
});

Deno.test("ema: refuses decays outside [0, 1) and mismatched tensors, naming them", () => {
  const average = tensorDesc("average", [4, 3]);
  const value = tensorDesc("value", [4, 3]);
  for (const decay of [-0.1, 1, 1.5, Number.NaN, Infinity]) {
    assert.throws(
      () => emaUpdate({ average, value }, { decay }),
      (error) =>
        error instanceof RangeError &&
        error.message === `ema: decay must be a finite number in [0, 1), got ${decay}`,
    );
  }
  const refused = (message: string) => (error: unknown) =>
    error instanceof ShapeError && error.message === message;
  assert.throws(
    () => emaUpdate({ average, value: tensorDesc("value", [12]) }, { decay: 0.9 }),
    refused("ema: value has shape [12], expected [4,3]"),
  );
  assert.throws(
    () => emaUpdate({ average, value: tensorDesc("value", [4, 3], "f16") }, { decay: 0.9 }),
    refused("ema: value holds f16 elements, expected f32"),
  );
  assert.throws(
    () => emaUpdate({ average: tensorDesc("average", [4, 3], "u32"), value }, { decay: 0.9 }),
    refused("ema: average holds u32 elements, expected f32"),
  );
  assert.equal(emaUpdate({ average, value }, { decay: 0 }).length, 1);
});
