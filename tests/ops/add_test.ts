import { addForward } from "../../src/ops/add.ts";
import { submitCalls } from "../../src/plan/materialize.ts";
import { elementCount } from "../../src/util/shape.ts";
import { gradCheck } from "../support/gradcheck.ts";
import { f32Tensor, gpuTest, poisonedTensor, readTensor } from "../support/gpu.ts";
import { ELEMENTWISE } from "../support/tolerances.ts";
import {
  addBackward as referenceBackward,
  addForward as referenceForward,
} from "../support/reference/add.ts";
import { f32Array, Random } from "../support/reference/random.ts";

// [3, 7, 7, 17] has an odd element count (the scalar entry point), [2, 5, 5, 8] a multiple of 4.
for (const shape of [[1, 5, 5, 3], [3, 7, 7, 17], [2, 5, 5, 8]]) {
  gpuTest(`add: gradient check on [${shape}]`, async (gpu) => {
    const random = new Random(7);
    const count = elementCount(shape);
    await gradCheck({
      name: `add [${shape}]`,
      inputs: {
        a: f32Array(count, () => random.uniform(-2, 2)),
        b: f32Array(count, () => random.uniform(-2, 2)),
      },
      reference: {
        forward: ({ a, b }) => referenceForward(a, b),
        backward: (_, dy) => {
          const { da, db } = referenceBackward(dy);
          return { a: da, b: db };
        },
      },
      tolerance: ELEMENTWISE,
      async gpu({ a, b }, dy) {
        const y = poisonedTensor(gpu, "y", shape);
        await submitCalls(
          gpu,
          addForward({ a: f32Tensor(gpu, "a", shape, a), b: f32Tensor(gpu, "b", shape, b), y }),
        );
        // The backward of a sum is the identity: both inputs receive dy itself (no kernel).
        return { y: await readTensor(gpu, y), grads: { a: dy, b: dy } };
      },
    });
  });
}
