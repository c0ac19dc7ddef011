import assert from "node:assert/strict";
import { tensorDesc } from "../../src/gpu/tensor.ts";
import { maxPoolBackward, maxPoolForward, maxPoolOutputShape } from "../../src/ops/max_pool.ts";
import { type ActivationDType, ShapeError } from "../../src/ops/shape.ts";
import { submitCalls } from "../../src/plan/materialize.ts";
import type { Gpu } from "../../src/gpu/device.ts";
import { gradCheck } from "../support/gradcheck.ts";
import { activationTensor, gpuTest, poisonedActivation, readTensor } from "../support/gpu.ts";
import { ELEMENTWISE } from "../support/tolerances.ts";
import {
  maxPool2dBackward as referenceBackward,
  maxPool2dForward as referenceForward,
} from "../support/reference/pool.ts";
import type { NhwcShape } from "../support/reference/shape.ts";
import { Random } from "../support/reference/random.ts";

/**
 * Inputs whose 2x2 windows hold four distinct values, multiples of 1/64 in [-4, 4): exact in f32
 * and f16, and at least 1/64 apart, so the finite differences (step 1e-6) never cross a tie, where
 * the maximum has no derivative. The unpooled last row and column take any value.
 */
function distinctWindows(random: Random, shape: NhwcShape): Float64Array {
  const draw = () => (random.integer(512) - 256) / 64;
  const x = Float64Array.from({ length: shape.n * shape.h * shape.w * shape.c }, draw);
  const at = (n: number, row: number, column: number, c: number) =>
    ((n * shape.h + row) * shape.w + column) * shape.c + c;
  for (let n = 0; n < shape.n; n++) {
    for (let i = 0; i + 1 < shape.h; i += 2) {
      for (let j = 0; j + 1 < shape.w; j += 2) {
        for (let c = 0; c < shape.c; c++) {
          const window = [
            at(n, i, j, c),
            at(n, i, j + 1, c),
            at(n, i + 1, j, c),
            at(n, i + 1, j + 1, c),
          ];
          window.forEach((offset, k) => {
            while (window.slice(0, k).some((earlier) => x[earlier] === x[offset])) {
              x[offset] = draw();
            }
          });
        }
      }
    }
  }
  return x;
}

const CASES = [
  // Batch 1, odd H and W: the last row and column are in no window and get gradient 0.
  { shape: [1, 5, 7, 3], dtype: "f32" },
  { shape: [1, 2, 2, 1], dtype: "f32" },
  { shape: [3, 8, 6, 17], dtype: "f32" },
  // H = 3: one row of windows, and the odd last row beside it.
  { shape: [2, 3, 9, 65], dtype: "f32" },
  { shape: [1, 12, 10, 32], dtype: "f32" },
  // [1, 5, 7, 3] f16: 105 elements, so x's and dx's bindings have a padding element.
  { shape: [1, 5, 7, 3], dtype: "f16" },
  { shape: [3, 8, 6, 17], dtype: "f16" },
  { shape: [2, 7, 5, 64], dtype: "f16" },
] as const;

for (const { shape: [n, h, w, c], dtype } of CASES) {
  gpuTest(`max pool: gradient check on [${n},${h},${w},${c}] ${dtype}`, async (gpu) => {
    const shape = { n, h, w, c };
    const outShape = maxPoolOutputShape([n, h, w, c]);
    await gradCheck({
      name: `max_pool [${n},${h},${w},${c}] ${dtype}`,
      inputs: { x: distinctWindows(new Random(n * h * w * c), shape) },
      reference: {
        forward: ({ x }) => referenceForward(x, shape),
        backward: ({ x }, dy) => ({ x: referenceBackward(x, dy, shape) }),
      },
      // Both passes copy values (x's maximum, dy) or write 0: exact in f32 and in f16, where x and
      // dy are f16-representable.
      tolerance: ELEMENTWISE,
      activations: dtype,
      async gpu({ x }, dy) {
        const xTensor = activationTensor(gpu, "x", [n, h, w, c], x, dtype);
        const y = poisonedActivation(gpu, "y", outShape, dtype);
        const dx = poisonedActivation(gpu, "dx", [n, h, w, c], dtype);
        await submitCalls(gpu, [
          ...maxPoolForward({ x: xTensor, y }),
          ...maxPoolBackward({
            x: xTensor,
            dy: activationTensor(gpu, "dy", outShape, dy, dtype),
            dx,
          }),
        ]);
        return { y: await readTensor(gpu, y), grads: { x: await readTensor(gpu, dx) } };
      },
    });
  });
}

/** The GPU's forward y and backward dx for input x of `shape` and output gradient dy. */
async function runPool(
  gpu: Gpu,
  shape: number[],
  x: number[],
  dy: number[],
  dtype: ActivationDType,
): Promise<{ y: number[]; dx: number[] }> {
  const outShape = maxPoolOutputShape(shape);
  const xTensor = activationTensor(gpu, "x", shape, x, dtype);
  const y = poisonedActivation(gpu, "y", outShape, dtype);
  const dx = poisonedActivation(gpu, "dx", shape, dtype);
  await submitCalls(gpu, [
    ...maxPoolForward({ x: xTensor, y }),
    ...maxPoolBackward({ x: xTensor, dy: activationTensor(gpu, "dy", outShape, dy, dtype), dx }),
  ]);
  return { y: [...await readTensor(gpu, y)], dx: [...await readTensor(gpu, dx)] };
}

for (const dtype of ["f32", "f16"] as const) {
  gpuTest(
    `max pool: ties send the gradient to the window's first maximum, ${dtype}`,
    async (gpu) => {
      // One image [3, 9] of one channel: four windows, then an odd last row and column. Windows: all
      // equal (top-left wins); top-right = bottom-left = bottom-right > top-left (top-right wins);
      // bottom-left = bottom-right (bottom-left wins); a unique maximum at bottom-right. The unpooled
      // last row and column hold the largest values, which no window may pick.
      const x = [
        [1, 1, 0, 2, 0, 0, -1, -1, 9],
        [1, 1, 2, 2, 3, 3, -1, 5, 9],
        [9, 9, 9, 9, 9, 9, 9, 9, 9],
      ].flat();
      const dy = [0.5, -2, 3, 0.25];
      const expectedDx = [
        [0.5, 0, 0, -2, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 3, 0, 0, 0.25, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 0],
      ].flat();
      const shape = { n: 1, h: 3, w: 9, c: 1 };
      assert.deepEqual([...referenceForward(Float64Array.from(x), shape)], [1, 2, 3, 5]);
      assert.deepEqual(
        [...referenceBackward(Float64Array.from(x), Float64Array.from(dy), shape)],
        expectedDx,
      );
      const gpuResult = await runPool(gpu, [1, 3, 9, 1], x, dy, dtype);
      assert.deepEqual(gpuResult.y, [1, 2, 3, 5]);
      assert.deepEqual(gpuResult.dx, expectedDx);
    },
  );
}

gpuTest("max pool: constant planes send each window's gradient to its top-left", async (gpu) => {
  // Every window ties four ways, over 2 images, 3 channels and an odd height and width.
  const [n, h, w, c] = [2, 5, 3, 3];
  const x = new Array(n * h * w * c).fill(0.75);
  const outCount = n * 2 * 1 * c;
  const dy = Array.from({ length: outCount }, (_, i) => i + 1);
  const { y, dx } = await runPool(gpu, [n, h, w, c], x, dy, "f32");
  assert.deepEqual(y, new Array(outCount).fill(0.75));
  const expected = new Array(n * h * w * c).fill(0);
  for (let image = 0; image < n; image++) {
    for (let i = 0; i < 2; i++) {
      for (let channel = 0; channel < c; channel++) {
        expected[((image * h + 2 * i) * w) * c + channel] = dy[(image * 2 + i) * c + channel];
      }
    }
  }
  assert.deepEqual(dx, expected);
});

gpuTest(
  "max pool: an output past 65,535 workgroups wraps the grid into y and covers every window",
  async (gpu) => {
    // f16 input [1, 2, 2 * 16,777,000, 1]: 128 MiB, under WebGPU's default binding limit, and
    // 16,777,000 windows, 40 more than 65,535 workgroups of 256 hold.
    const windows = 16_777_000;
    const shape = [1, 2, 2 * windows, 1];
    // Each window's maximum at corner (i % 4) in row-major order; its value i % 1024 is exact in f16.
    const x = new Float16Array(4 * windows).fill(-1);
    for (let i = 0; i < windows; i++) {
      const corner = i % 4;
      x[(corner >> 1) * 2 * windows + 2 * i + (corner & 1)] = i % 1024;
    }
    const dyValues = new Float16Array(windows);
    for (let i = 0; i < windows; i++) dyValues[i] = (i % 7) + 1;
    const xTensor = activationTensor(gpu, "x", shape, x, "f16");
    const y = poisonedActivation(gpu, "y", [1, 1, windows, 1], "f16");
    const dy = activationTensor(gpu, "dy", [1, 1, windows, 1], dyValues, "f16");
    const dx = poisonedActivation(gpu, "dx", shape, "f16");
    const calls = [
      ...maxPoolForward({ x: xTensor, y }),
      ...maxPoolBackward({ x: xTensor, dy, dx }),
    ];
    assert.deepEqual(calls.map((call) => call.grid[1]), [2, 2]);
    await submitCalls(gpu, calls);
    const pooled = await readTensor(gpu, y);
    for (let i = 0; i < windows; i++) {
      if (pooled[i] !== i % 1024) throw new Error(`y[${i}] is ${pooled[i]}, expected ${i % 1024}`);
    }
    const gradient = await readTensor(gpu, dx);
    for (let offset = 0; offset < gradient.length; offset++) {
      const row = Math.floor(offset / (2 * windows));
      const column = offset % (2 * windows);
      const i = Math.floor(column / 2);
      const expected = (i % 4) === 2 * row + (column % 2) ? (i % 7) + 1 : 0;
      if (gradient[offset] !== expected) {
        throw new Error(`dx[${offset}] is ${gradient[offset]}, expected ${expected}`);
      }
    }
    for (const tensor of [xTensor, y, dy, dx]) tensor.buffer.destroy();
  },
);

Deno.test("max pool: the output shape drops an odd last row and column", () => {
  assert.deepEqual(maxPoolOutputShape([512, 32, 32, 128]), [512, 16, 16, 128]);
  assert.deepEqual(maxPoolOutputShape([1, 5, 7, 3]), [1, 2, 3, 3]);
  assert.deepEqual(maxPoolOutputShape([2, 2, 3, 1]), [2, 1, 1, 1]);
});

Deno.test("max pool: an input under 2 high or wide is refused", () => {
  const refused = (message: RegExp) => (error: unknown) =>
    error instanceof ShapeError && message.test(error.message);
  const small = /smaller than the 2x2 window: H and W must be at least 2$/;
  assert.throws(
    () => maxPoolOutputShape([2, 1, 4, 8]),
    refused(/^max_pool: input has shape \[2,1,4,8\], smaller than the 2x2 window/),
  );
  assert.throws(() => maxPoolOutputShape([2, 4, 1, 8]), refused(small));
  assert.throws(
    () => maxPoolOutputShape([4, 4, 8]),
    refused(/^max_pool: input has shape \[4,4,8\], expected NHWC$/),
  );
  assert.throws(
    () => maxPoolForward({ x: tensorDesc("x", [2, 1, 4, 8]), y: tensorDesc("y", [2, 0, 2, 8]) }),
    refused(
      /^max_pool: x has shape \[2,1,4,8\], smaller than the 2x2 window: H and W must be at least 2$/,
    ),
  );
  assert.throws(
    () =>
      maxPoolBackward({
        x: tensorDesc("x", [2, 4, 1, 8]),
        dy: tensorDesc("dy", [2, 2, 0, 8]),
        dx: tensorDesc("dx", [2, 4, 1, 8]),
      }),
    refused(/^max_pool backward: x has shape \[2,4,1,8\], smaller than the 2x2 window/),
  );
});

Deno.test("max pool: a tensor of the wrong shape or element type is refused, naming it", () => {
  const refused = (message: RegExp) => (error: unknown) =>
    error instanceof ShapeError && message.test(error.message);
  const shape = [2, 5, 4, 8];
  const pooled = [2, 2, 2, 8];
  const x = tensorDesc("x", shape);
  const y = tensorDesc("y", pooled);
  const f16 = (label: string, s: number[]) => tensorDesc(label, s, "f16");
  assert.throws(
    () => maxPoolForward({ x: tensorDesc("x", shape, "u32"), y }),
    refused(/^max_pool: x holds u32 elements, expected f32 or f16 activations$/),
  );
  assert.throws(
    () => maxPoolForward({ x: tensorDesc("x", [2, 5, 4]), y }),
    refused(/^max_pool: x has shape \[2,5,4\], expected NHWC$/),
  );
  assert.throws(
    () => maxPoolForward({ x, y: tensorDesc("y", [2, 3, 2, 8]) }),
    refused(/^max_pool: y has shape \[2,3,2,8\], expected \[2,2,2,8\]$/),
  );
  assert.throws(
    () => maxPoolForward({ x: f16("x", shape), y }),
    refused(/^max_pool: y holds f32 elements, expected f16$/),
  );
  assert.throws(
    () => maxPoolBackward({ x, dy: tensorDesc("dy", shape), dx: tensorDesc("dx", shape) }),
    refused(/^max_pool backward: dy has shape \[2,5,4,8\], expected \[2,2,2,8\]$/),
  );
  assert.throws(
    () => maxPoolBackward({ x, dy: y, dx: tensorDesc("dx", pooled) }),
    refused(/^max_pool backward: dx has shape \[2,2,2,8\], expected \[2,5,4,8\]$/),
  );
  assert.throws(
    () => maxPoolBackward({ x, dy: f16("dy", pooled), dx: tensorDesc("dx", shape) }),
    refused(/^max_pool backward: dy holds f16 elements, expected f32$/),
  );
  assert.throws(
    () =>
      maxPoolBackward({ x: f16("x", shape), dy: f16("dy", pooled), dx: tensorDesc("dx", shape) }),
    refused(/^max_pool backward: dx holds f32 elements, expected f16$/),
  );
  assert.throws(
    () => maxPoolBackward({ x: tensorDesc("x", shape, "i32"), dy: y, dx: x }),
    refused(/^max_pool backward: x holds i32 elements, expected f32 or f16 activations$/),
  );
  assert.equal(maxPoolForward({ x, y }).length, 1);
  assert.equal(maxPoolForward({ x: f16("x", shape), y: f16("y", pooled) }).length, 1);
  assert.equal(maxPoolBackward({ x, dy: y, dx: tensorDesc("dx", shape) }).length, 1);
});
