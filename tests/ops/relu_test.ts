import { submitDispatches } from "../../src/gpu/dispatch.ts";
import { reluBackward, reluForward } from "../../src/ops/relu.ts";
import { gradCheck } from "../support/gradcheck.ts";
import { f32Tensor, gpuTest, poisonedTensor, readTensor } from "../support/gpu.ts";
import { ELEMENTWISE } from "../support/tolerances.ts";
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

for (const shape of [[1, 5, 5, 3], [3, 7, 7, 17], [2, 1, 1, 1027]]) {
  gpuTest(`relu: gradient check on [${shape}]`, async (gpu) => {
    const random = new Random(shape.reduce((a, b) => a * b));
    const count = shape.reduce((a, b) => a * b);
    await gradCheck({
      name: `relu [${shape}]`,
      inputs: { x: f32Array(count, () => awayFromZero(random)) },
      reference: {
        forward: ({ x }) => referenceForward(x),
        backward: ({ x }, dy) => ({ x: referenceBackward(x, dy) }),
      },
      tolerance: ELEMENTWISE,
      async gpu({ x }, dy) {
        const xTensor = f32Tensor(gpu, "x", shape, x);
        const y = poisonedTensor(gpu, "y", shape);
        const dyTensor = f32Tensor(gpu, "dy", shape, dy);
        const dx = poisonedTensor(gpu, "dx", shape);
        submitDispatches(gpu, [
          await reluForward(gpu, xTensor, y),
          await reluBackward(gpu, y, dyTensor, dx),
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
    submitDispatches(gpu, [await reluForward(gpu, x, output)]);
    const y = await readTensor(gpu, output);
    for (let i = 0; i < count; i++) {
      if (y[i] !== Math.max((i % 7) - 3, 0)) throw new Error(`element ${i}: ${y[i]}`);
    }
  },
);
