import { addForward } from "../../src/ops/add.ts";
import { submitCalls } from "../../src/plan/materialize.ts";
import { elementCount } from "../../src/util/shape.ts";
import { gradCheck } from "../support/gradcheck.ts";
import assert from "node:assert/strict";
import { tensorDesc } from "../../src/gpu/tensor.ts";
import { ShapeError } from "../../src/ops/shape.ts";
import {
  activationTensor,
  gpuTest,
  poisonedActivation,
  readTensor,
  roundTo,
} from "../support/gpu.ts";
import { ELEMENTWISE, F16_STORAGE } from "../support/tolerances.ts";
import {
  addBackward as referenceBackward,
  addForward as referenceForward,
} from "../support/reference/add.ts";
import { f32Array, Random } from "../support/reference/random.ts";

// [3, 7, 7, 17] has an odd element count (the scalar entry point), [2, 5, 5, 8] a multiple of 4.
const CASES = [
  { shape: [1, 5, 5, 3], dtype: "f32" },
  { shape: [3, 7, 7, 17], dtype: "f32" },
  { shape: [2, 5, 5, 8], dtype: "f32" },
  { shape: [1, 5, 5, 3], dtype: "f16" },
  { shape: [3, 7, 7, 17], dtype: "f16" },
  { shape: [2, 5, 5, 8], dtype: "f16" },
] as const;

for (const { shape, dtype } of CASES) {
  gpuTest(`add: gradient check on [${shape}] ${dtype}`, async (gpu) => {
    const random = new Random(7);
    const count = elementCount(shape);
    await gradCheck({
      name: `add [${shape}] ${dtype}`,
      inputs: {
        a: roundTo(f32Array(count, () => random.uniform(-2, 2)), dtype),
        b: roundTo(f32Array(count, () => random.uniform(-2, 2)), dtype),
      },
      reference: {
        forward: ({ a, b }) => referenceForward(a, b),
        backward: (_, dy) => {
          const { da, db } = referenceBackward(dy);
          return { a: da, b: db };
        },
      },
      // f16: the sum of two f16 values is rounded to f16 once.
      tolerance: dtype === "f16" ? F16_STORAGE : ELEMENTWISE,
      activations: dtype,
      async gpu({ a, b }, dy) {
        const y = poisonedActivation(gpu, "y", shape, dtype);
        await submitCalls(
          gpu,
          addForward({
            a: activationTensor(gpu, "a", shape, a, dtype),
            b: activationTensor(gpu, "b", shape, b, dtype),
            y,
          }),
        );
        // The backward of a sum is the identity: both inputs receive dy itself (no kernel).
        return { y: await readTensor(gpu, y), grads: { a: dy, b: dy } };
      },
    });
  });
}

Deno.test("add: mixed element types are refused, naming the tensor", () => {
  const shape = [2, 3];
  const refused = (message: RegExp) => (error: unknown) =>
    error instanceof ShapeError && message.test(error.message);
  const f16 = (label: string) => tensorDesc(label, shape, "f16");
  assert.throws(
    () => addForward({ a: f16("a"), b: tensorDesc("b", shape), y: f16("y") }),
    refused(/^add: b holds f32 elements, expected f16$/),
  );
  assert.throws(
    () => addForward({ a: tensorDesc("a", shape, "u32"), b: f16("b"), y: f16("y") }),
    refused(/^add: a holds u32 elements, expected f32 or f16 activations$/),
  );
  assert.equal(addForward({ a: f16("a"), b: f16("b"), y: f16("y") }).length, 1);
});
