import assert from "node:assert/strict";
import { tensorDesc } from "../../src/gpu/tensor.ts";
import { globalAvgPoolBackward, globalAvgPoolForward } from "../../src/ops/global_avg_pool.ts";
import { ShapeError } from "../../src/ops/shape.ts";
import { submitCalls } from "../../src/plan/materialize.ts";
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
import { F16_STORAGE, REDUCTION } from "../support/tolerances.ts";
import {
  globalAvgPoolBackward as referenceBackward,
  globalAvgPoolForward as referenceForward,
} from "../support/reference/pool.ts";
import { f32Array, Random } from "../support/reference/random.ts";

const CASES = [
  { shape: [1, 4, 4, 512], dtype: "f32" },
  { shape: [3, 5, 7, 17], dtype: "f32" },
  { shape: [1, 1, 1, 3], dtype: "f32" },
  { shape: [3, 8, 8, 65], dtype: "f32" },
  // [1, 1, 1, 3] f16: dx has an odd element count, so its binding has a padding element.
  { shape: [1, 1, 1, 3], dtype: "f16" },
  { shape: [3, 5, 7, 17], dtype: "f16" },
  { shape: [2, 4, 4, 64], dtype: "f16" },
] as const;

for (const { shape: [n, h, w, c], dtype } of CASES) {
  gpuTest(`global average pool: gradient check on [${n},${h},${w},${c}] ${dtype}`, async (gpu) => {
    const random = new Random(n * h * w * c);
    const shape = { n, h, w, c };
    await gradCheck({
      name: `global_avg_pool [${n},${h},${w},${c}] ${dtype}`,
      inputs: { x: roundTo(f32Array(n * h * w * c, () => random.uniform(-1, 3)), dtype) },
      reference: {
        forward: ({ x }) => referenceForward(x, shape),
        backward: (_, dy) => ({ x: referenceBackward(dy, shape) }),
      },
      // f16: y is an f32 mean of the f16 inputs (REDUCTION); dx is rounded to f16 once.
      tolerance: dtype === "f16" ? F16_STORAGE : REDUCTION,
      activations: dtype,
      async gpu({ x }, dy) {
        // The pooled features and their gradient are f32 whatever x is (the head runs in f32).
        const y = poisonedTensor(gpu, "y", [n, c]);
        const dx = poisonedActivation(gpu, "dx", [n, h, w, c], dtype);
        await submitCalls(gpu, [
          ...globalAvgPoolForward({ x: activationTensor(gpu, "x", [n, h, w, c], x, dtype), y }),
          ...globalAvgPoolBackward({ dy: f32Tensor(gpu, "dy", [n, c], dy), dx }),
        ]);
        return { y: await readTensor(gpu, y), grads: { x: await readTensor(gpu, dx) } };
      },
    });
  });
}

Deno.test("global average pool: a tensor of the wrong element type is refused, naming it", () => {
  const [n, h, w, c] = [2, 4, 4, 8];
  const refused = (message: RegExp) => (error: unknown) =>
    error instanceof ShapeError && message.test(error.message);
  const x = tensorDesc("x", [n, h, w, c]);
  const y = tensorDesc("y", [n, c]);
  assert.throws(
    () => globalAvgPoolForward({ x: tensorDesc("x", [n, h, w, c], "u32"), y }),
    refused(/^global_avg_pool: x holds u32 elements, expected f32 or f16 activations$/),
  );
  assert.throws(
    () => globalAvgPoolForward({ x, y: tensorDesc("y", [n, c], "i32") }),
    refused(/^global_avg_pool: y holds i32 elements, expected f32$/),
  );
  assert.throws(
    () => globalAvgPoolBackward({ dy: tensorDesc("dy", [n, c], "u32"), dx: x }),
    refused(/^global_avg_pool backward: dy holds u32 elements, expected f32$/),
  );
  assert.throws(
    () => globalAvgPoolBackward({ dy: y, dx: tensorDesc("dx", [n, h, w, c], "u32") }),
    refused(/^global_avg_pool backward: dx holds u32 elements, expected f32 or f16 activations$/),
  );
  assert.throws(
    () =>
      globalAvgPoolForward({
        x: tensorDesc("x", [n, h, w, c], "f16"),
        y: tensorDesc("y", [n, c], "f16"),
      }),
    refused(/^global_avg_pool: y holds f16 elements, expected f32$/),
  );
  assert.equal(globalAvgPoolForward({ x, y }).length, 1);
  assert.equal(globalAvgPoolBackward({ dy: y, dx: x }).length, 1);
});
