import assert from "node:assert/strict";
import { tensorDesc } from "../../src/gpu/tensor.ts";
import { reluBackward, reluForward } from "../../src/ops/relu.ts";
import { ShapeError } from "../../src/ops/shape.ts";
import { submitCalls } from "../../src/plan/materialize.ts";
import { elementCount } from "../../src/util/shape.ts";
import { gradCheck } from "../support/gradcheck.ts";
import {
  activationTensor,
  f32Tensor,
  gpuTest,
  poisonedActivation,
  poisonedTensor,
  readTensor,
  roundTo,
} from "../support/gpu.ts";
import { ELEMENTWISE, F16_STORAGE } from "../support/tolerances.ts";
import {
  reluBackward as referenceBackward,
  reluForward as referenceForward,
} from "../support/reference/relu.ts";
import { f32Array, Random } from "../support/reference/random.ts";

/** Values away from the kink at 0, where finite differences of ReLU are undefined. */
function awayFromZero(random: Random): number {
  const magnitude = random.uniform(0.01, 2);
  return random.uniform() < 0.5 ? -magnitude : magnitude;
}

const CASES = [
  { shape: [1, 5, 5, 3], dtype: "f32" },
  { shape: [3, 7, 7, 17], dtype: "f32" },
  { shape: [2, 1, 1, 1027], dtype: "f32" },
  { shape: [1, 5, 5, 3], dtype: "f16" },
  { shape: [3, 7, 7, 17], dtype: "f16" },
] as const;

for (const { shape, dtype } of CASES) {
  gpuTest(`relu: gradient check on [${shape}] ${dtype}`, async (gpu) => {
    const count = elementCount(shape);
    const random = new Random(count);
    await gradCheck({
      name: `relu [${shape}] ${dtype}`,
      // f16 tensors hold these values exactly: the reference sees what the GPU sees.
      inputs: { x: roundTo(f32Array(count, () => awayFromZero(random)), dtype) },
      reference: {
        forward: ({ x }) => referenceForward(x),
        backward: ({ x }, dy) => ({ x: referenceBackward(x, dy) }),
      },
      tolerance: dtype === "f16" ? F16_STORAGE : ELEMENTWISE,
      activations: dtype,
      async gpu({ x }, dy) {
        const xTensor = activationTensor(gpu, "x", shape, x, dtype);
        const y = poisonedActivation(gpu, "y", shape, dtype);
        const dyTensor = activationTensor(gpu, "dy", shape, dy, dtype);
        const dx = poisonedActivation(gpu, "dx", shape, dtype);
        await submitCalls(gpu, [
          ...reluForward({ x: xTensor, y }),
          ...reluBackward({ y, dy: dyTensor, dx }),
        ]);
        return { y: await readTensor(gpu, y), grads: { x: await readTensor(gpu, dx) } };
      },
    });
  });
}

gpuTest(
  "relu: a tensor larger than 65,535 workgroups wraps the grid into y and covers every element",
  async (gpu) => {
    const count = 65535 * 256 + 1001;
    const values = new Float32Array(count);
    for (let i = 0; i < count; i++) values[i] = (i % 7) - 3;
    const x = f32Tensor(gpu, "x", [count], values);
    const output = poisonedTensor(gpu, "y", [count]);
    await submitCalls(gpu, reluForward({ x, y: output }));
    const y = await readTensor(gpu, output);
    for (let i = 0; i < count; i++) {
      if (y[i] !== Math.max((i % 7) - 3, 0)) throw new Error(`element ${i}: ${y[i]}`);
    }
  },
);

Deno.test("relu: a tensor of the wrong element type is refused, naming it", () => {
  const shape = [2, 3, 3, 4];
  const f32 = (label: string) => tensorDesc(label, shape);
  const u32 = (label: string) => tensorDesc(label, shape, "u32");
  const refused = (message: RegExp) => (error: unknown) =>
    error instanceof ShapeError && message.test(error.message);
  assert.throws(
    () => reluForward({ x: u32("x"), y: f32("y") }),
    refused(/^relu: x holds u32 elements, expected f32 or f16 activations$/),
  );
  assert.throws(
    () => reluForward({ x: f32("x"), y: u32("y") }),
    refused(/^relu: y holds u32 elements, expected f32$/),
  );
  assert.throws(
    () => reluBackward({ y: f32("y"), dy: u32("dy"), dx: f32("dx") }),
    refused(/^relu backward: dy holds u32 elements, expected f32$/),
  );
  assert.throws(
    () => reluBackward({ y: f32("y"), dy: f32("dy"), dx: tensorDesc("dx", shape, "i32") }),
    refused(/^relu backward: dx holds i32 elements, expected f32$/),
  );
  // The same tensors in f32 plan one call each.
  assert.equal(reluForward({ x: f32("x"), y: f32("y") }).length, 1);
  assert.equal(reluBackward({ y: f32("y"), dy: f32("dy"), dx: f32("dx") }).length, 1);
});
