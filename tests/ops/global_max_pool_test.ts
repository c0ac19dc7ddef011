import assert from "node:assert/strict";
import { tensorDesc } from "../../src/gpu/tensor.ts";
import { globalMaxPoolBackward, globalMaxPoolForward } from "../../src/ops/global_max_pool.ts";
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
} from "../support/gpu.ts";
import { ELEMENTWISE } from "../support/tolerances.ts";
import {
  globalMaxPoolBackward as referenceBackward,
  globalMaxPoolForward as referenceForward,
} from "../support/reference/pool.ts";
import type { NhwcShape } from "../support/reference/shape.ts";
import { Random } from "../support/reference/random.ts";

/**
 * Inputs whose (h, w) planes hold distinct values, multiples of 1/64 in [-4, 4) (at most 512 per
 * plane): exact in f32 and f16, and at least 1/64 apart, so the finite differences (step 1e-6)
 * never cross a tie, where the maximum has no derivative.
 */
function distinctPlanes(random: Random, shape: NhwcShape): Float64Array {
  const draw = () => (random.integer(512) - 256) / 64;
  const x = new Float64Array(shape.n * shape.h * shape.w * shape.c);
  const spatial = shape.h * shape.w;
  for (let n = 0; n < shape.n; n++) {
    for (let c = 0; c < shape.c; c++) {
      const seen = new Set<number>();
      for (let p = 0; p < spatial; p++) {
        let value = draw();
        while (seen.has(value)) value = draw();
        seen.add(value);
        x[(n * spatial + p) * shape.c + c] = value;
      }
    }
  }
  return x;
}

const CASES = [
  { shape: [1, 4, 4, 512], dtype: "f32" },
  { shape: [3, 5, 7, 17], dtype: "f32" },
  // 1x1 planes: the pooling is a copy, and so is its gradient.
  { shape: [1, 1, 1, 3], dtype: "f32" },
  { shape: [3, 8, 8, 65], dtype: "f32" },
  // [1, 1, 1, 3] and [1, 5, 7, 3] f16: x and dx have odd element counts, so their bindings have a
  // padding element.
  { shape: [1, 1, 1, 3], dtype: "f16" },
  { shape: [1, 5, 7, 3], dtype: "f16" },
  { shape: [3, 5, 7, 17], dtype: "f16" },
  { shape: [2, 4, 4, 64], dtype: "f16" },
] as const;

for (const { shape: [n, h, w, c], dtype } of CASES) {
  gpuTest(`global max pool: gradient check on [${n},${h},${w},${c}] ${dtype}`, async (gpu) => {
    const shape = { n, h, w, c };
    await gradCheck({
      name: `global_max_pool [${n},${h},${w},${c}] ${dtype}`,
      inputs: { x: distinctPlanes(new Random(n * h * w * c), shape) },
      reference: {
        forward: ({ x }) => referenceForward(x, shape),
        backward: ({ x }, dy) => ({ x: referenceBackward(x, dy, shape) }),
      },
      // Both passes copy values (x's maximum, widened to f32; dy, narrowed to f16 where dx is f16)
      // or write 0: exact, as x and dy are f16-representable in the f16 cases.
      tolerance: ELEMENTWISE,
      activations: dtype,
      async gpu({ x }, dy) {
        // The pooled features and their gradient are f32 whatever x is (the head runs in f32).
        const xTensor = activationTensor(gpu, "x", [n, h, w, c], x, dtype);
        const y = poisonedTensor(gpu, "y", [n, c]);
        const dx = poisonedActivation(gpu, "dx", [n, h, w, c], dtype);
        await submitCalls(gpu, [
          ...globalMaxPoolForward({ x: xTensor, y }),
          ...globalMaxPoolBackward({ x: xTensor, dy: f32Tensor(gpu, "dy", [n, c], dy), dx }),
        ]);
        return { y: await readTensor(gpu, y), grads: { x: await readTensor(gpu, dx) } };
      },
    });
  });
}

for (const dtype of ["f32", "f16"] as const) {
  gpuTest(
    `global max pool: ties send the gradient to the plane's first maximum, ${dtype}`,
    async (gpu) => {
      // [2, 3, 3, 2]: image 0 channel 0 is constant (position 0 wins); image 0 channel 1 has its
      // maximum 4 at positions 3, 5 and 8 (3 wins); image 1 channel 0 at positions 7 and 8 (7
      // wins); image 1 channel 1 has a unique maximum at position 8.
      const [n, h, w, c] = [2, 3, 3, 2];
      const planes = [
        [[2, 2, 2, 2, 2, 2, 2, 2, 2], [0, 1, -1, 4, 3, 4, 0, 0, 4]],
        [[-3, -2, -2, -1, -3, -1, -2, 0.5, 0.5], [1, 1, 1, 1, 1, 1, 1, 1, 1.5]],
      ];
      const x = new Array(n * h * w * c);
      planes.forEach((image, b) =>
        image.forEach((plane, channel) =>
          plane.forEach((value, p) => x[(b * h * w + p) * c + channel] = value)
        )
      );
      const dy = [0.5, -2, 3, 0.25];
      const expectedDx = new Array(n * h * w * c).fill(0);
      for (const [b, channel, p] of [[0, 0, 0], [0, 1, 3], [1, 0, 7], [1, 1, 8]]) {
        expectedDx[(b * h * w + p) * c + channel] = dy[b * c + channel];
      }
      const shape = { n, h, w, c };
      assert.deepEqual([...referenceForward(Float64Array.from(x), shape)], [2, 4, 0.5, 1.5]);
      assert.deepEqual(
        [...referenceBackward(Float64Array.from(x), Float64Array.from(dy), shape)],
        expectedDx,
      );
      const xTensor = activationTensor(gpu, "x", [n, h, w, c], x, dtype);
      const y = poisonedTensor(gpu, "y", [n, c]);
      const dx = poisonedActivation(gpu, "dx", [n, h, w, c], dtype);
      await submitCalls(gpu, [
        ...globalMaxPoolForward({ x: xTensor, y }),
        ...globalMaxPoolBackward({ x: xTensor, dy: f32Tensor(gpu, "dy", [n, c], dy), dx }),
      ]);
      assert.deepEqual([...await readTensor(gpu, y)], [2, 4, 0.5, 1.5]);
      assert.deepEqual([...await readTensor(gpu, dx)], expectedDx);
    },
  );
}

Deno.test("global max pool: a tensor of the wrong shape or element type is refused, naming it", () => {
  const [n, h, w, c] = [2, 4, 4, 8];
  const refused = (message: RegExp) => (error: unknown) =>
    error instanceof ShapeError && message.test(error.message);
  const x = tensorDesc("x", [n, h, w, c]);
  const y = tensorDesc("y", [n, c]);
  const x16 = tensorDesc("x", [n, h, w, c], "f16");
  assert.throws(
    () => globalMaxPoolForward({ x: tensorDesc("x", [n, h, w, c], "u32"), y }),
    refused(/^global_max_pool: x holds u32 elements, expected f32 or f16 activations$/),
  );
  assert.throws(
    () => globalMaxPoolForward({ x: tensorDesc("x", [n, h * w, c]), y }),
    refused(/^global_max_pool: x has shape \[2,16,8\], expected NHWC$/),
  );
  assert.throws(
    () => globalMaxPoolForward({ x, y: tensorDesc("y", [n, c], "i32") }),
    refused(/^global_max_pool: y holds i32 elements, expected f32$/),
  );
  assert.throws(
    () => globalMaxPoolForward({ x, y: tensorDesc("y", [n, 1, 1, c]) }),
    refused(/^global_max_pool: y has shape \[2,1,1,8\], expected \[2,8\]$/),
  );
  assert.throws(
    () => globalMaxPoolForward({ x: x16, y: tensorDesc("y", [n, c], "f16") }),
    refused(/^global_max_pool: y holds f16 elements, expected f32$/),
  );
  assert.throws(
    () => globalMaxPoolBackward({ x, dy: tensorDesc("dy", [n, c], "u32"), dx: x }),
    refused(/^global_max_pool backward: dy holds u32 elements, expected f32$/),
  );
  assert.throws(
    () => globalMaxPoolBackward({ x, dy: tensorDesc("dy", [n, c + 1]), dx: x }),
    refused(/^global_max_pool backward: dy has shape \[2,9\], expected \[2,8\]$/),
  );
  assert.throws(
    () => globalMaxPoolBackward({ x, dy: y, dx: tensorDesc("dx", [n, h, w, c], "u32") }),
    refused(/^global_max_pool backward: dx holds u32 elements, expected f32$/),
  );
  assert.throws(
    () => globalMaxPoolBackward({ x: x16, dy: y, dx: tensorDesc("dx", [n, h, w, c]) }),
    refused(/^global_max_pool backward: dx holds f32 elements, expected f16$/),
  );
  assert.throws(
    () => globalMaxPoolBackward({ x, dy: y, dx: tensorDesc("dx", [n, h, w, c + 1]) }),
    refused(/^global_max_pool backward: dx has shape \[2,4,4,9\], expected \[2,4,4,8\]$/),
  );
  assert.throws(
    () => globalMaxPoolBackward({ x: tensorDesc("x", [n, h, w, c], "u32"), dy: y, dx: x }),
    refused(/^global_max_pool backward: x holds u32 elements, expected f32 or f16 activations$/),
  );
  assert.equal(globalMaxPoolForward({ x, y }).length, 1);
  assert.equal(globalMaxPoolForward({ x: x16, y }).length, 1);
  assert.equal(globalMaxPoolBackward({ x, dy: y, dx: x }).length, 1);
  assert.equal(globalMaxPoolBackward({ x: x16, dy: y, dx: x16 }).length, 1);
});
