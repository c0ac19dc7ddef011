import { submitDispatches } from "../../src/gpu/dispatch.ts";
import { linearBackward, linearForward } from "../../src/ops/linear.ts";
import { gradCheck } from "../support/gradcheck.ts";
import { f32Tensor, gpuTest, poisonedTensor, readTensor } from "../support/gpu.ts";
import { REDUCTION } from "../support/tolerances.ts";
import {
  linearBackward as referenceBackward,
  linearForward as referenceForward,
} from "../support/reference/linear.ts";
import { f32Array, Random } from "../support/reference/random.ts";

for (const [n, inFeatures, outFeatures] of [[1, 512, 10], [3, 17, 5], [3, 65, 10], [7, 3, 1]]) {
  gpuTest(`linear: gradient check on batch ${n}, ${inFeatures} -> ${outFeatures}`, async (gpu) => {
    const random = new Random(n * inFeatures + outFeatures);
    const shape = { n, inFeatures, outFeatures };
    const bound = 1 / Math.sqrt(inFeatures);
    await gradCheck({
      name: `linear ${n}x${inFeatures}->${outFeatures}`,
      inputs: {
        x: f32Array(n * inFeatures, () => random.uniform(-1, 1)),
        weight: f32Array(outFeatures * inFeatures, () => random.uniform(-bound, bound)),
        bias: f32Array(outFeatures, () => random.uniform(-bound, bound)),
      },
      reference: {
        forward: ({ x, weight, bias }) => referenceForward(x, weight, bias, shape),
        backward: ({ x, weight }, dy) => {
          const { dx, dweight, dbias } = referenceBackward(x, weight, dy, shape);
          return { x: dx, weight: dweight, bias: dbias };
        },
      },
      tolerance: REDUCTION,
      async gpu(inputs, dy) {
        const x = f32Tensor(gpu, "x", [n, inFeatures], inputs.x);
        const weight = f32Tensor(gpu, "weight", [outFeatures, inFeatures], inputs.weight);
        const bias = f32Tensor(gpu, "bias", [outFeatures], inputs.bias);
        const y = poisonedTensor(gpu, "y", [n, outFeatures]);
        const dx = poisonedTensor(gpu, "dx", [n, inFeatures]);
        const dweight = poisonedTensor(gpu, "dweight", [outFeatures, inFeatures]);
        const dbias = poisonedTensor(gpu, "dbias", [outFeatures]);
        const dyTensor = f32Tensor(gpu, "dy", [n, outFeatures], dy);
        submitDispatches(gpu, [
          await linearForward(gpu, { x, weight, bias, y }),
          ...await linearBackward(gpu, { x, weight, bias, dy: dyTensor, dx, dweight, dbias }),
        ]);
        return {
          y: await readTensor(gpu, y),
          grads: {
            x: await readTensor(gpu, dx),
            weight: await readTensor(gpu, dweight),
            bias: await readTensor(gpu, dbias),
          },
        };
      },
    });
  });
}
