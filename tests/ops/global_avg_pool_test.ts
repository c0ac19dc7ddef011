import { submitDispatches } from "../../src/gpu/dispatch.ts";
import { globalAvgPoolBackward, globalAvgPoolForward } from "../../src/ops/global_avg_pool.ts";
import { gradCheck } from "../support/gradcheck.ts";
import { f32Tensor, gpuTest, poisonedTensor, readTensor } from "../support/gpu.ts";
import { REDUCTION } from "../support/tolerances.ts";
import {
  globalAvgPoolBackward as referenceBackward,
  globalAvgPoolForward as referenceForward,
} from "../support/reference/pool.ts";
import { f32Array, Random } from "../support/reference/random.ts";

for (const [n, h, w, c] of [[1, 4, 4, 512], [3, 5, 7, 17], [1, 1, 1, 3], [3, 8, 8, 65]]) {
  gpuTest(`global average pool: gradient check on [${n},${h},${w},${c}]`, async (gpu) => {
    const random = new Random(n * h * w * c);
    const shape = { n, h, w, c };
    await gradCheck({
      name: `global_avg_pool [${n},${h},${w},${c}]`,
      inputs: { x: f32Array(n * h * w * c, () => random.uniform(-1, 3)) },
      reference: {
        forward: ({ x }) => referenceForward(x, shape),
        backward: (_, dy) => ({ x: referenceBackward(dy, shape) }),
      },
      tolerance: REDUCTION,
      async gpu({ x }, dy) {
        const y = poisonedTensor(gpu, "y", [n, c]);
        const dx = poisonedTensor(gpu, "dx", [n, h, w, c]);
        submitDispatches(gpu, [
          await globalAvgPoolForward(gpu, f32Tensor(gpu, "x", [n, h, w, c], x), y),
          await globalAvgPoolBackward(gpu, f32Tensor(gpu, "dy", [n, c], dy), dx),
        ]);
        return { y: await readTensor(gpu, y), grads: { x: await readTensor(gpu, dx) } };
      },
    });
  });
}
