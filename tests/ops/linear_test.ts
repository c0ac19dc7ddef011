import assert from "node:assert/strict";
import { type DType, type TensorDesc, tensorDesc } from "../../src/gpu/tensor.ts";
import { linearBackward, linearForward } from "../../src/ops/linear.ts";
import { ShapeError } from "../../src/ops/shape.ts";
import { submitCalls } from "../../src/plan/materialize.ts";
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
        await submitCalls(gpu, [
          ...linearForward({ x, weight, bias, y }),
          ...linearBackward({ x, weight, bias, dy: dyTensor, dx, dweight, dbias }),
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

Deno.test("linear: a tensor of the wrong element type is refused, naming it", () => {
  const [n, inFeatures, outFeatures] = [3, 17, 5];
  const shapes = {
    x: [n, inFeatures],
    weight: [outFeatures, inFeatures],
    bias: [outFeatures],
    y: [n, outFeatures],
    dy: [n, outFeatures],
    dx: [n, inFeatures],
    dweight: [outFeatures, inFeatures],
    dbias: [outFeatures],
  };
  type Name = keyof typeof shapes;
  /** Every tensor in f32 but `wrong`, which holds `dtype`. */
  const tensors = (wrong?: Name, dtype: DType = "u32") =>
    Object.fromEntries(
      Object.entries(shapes).map(([name, shape]) => [
        name,
        tensorDesc(name, shape, name === wrong ? dtype : "f32"),
      ]),
    ) as Record<Name, TensorDesc>;
  const refused = (op: string, name: Name, dtype: DType) => (error: unknown) =>
    error instanceof ShapeError &&
    error.message === `${op}: ${name} holds ${dtype} elements, expected f32`;
  for (const name of ["x", "weight", "bias", "y"] as const) {
    const { x, weight, bias, y } = tensors(name);
    assert.throws(() => linearForward({ x, weight, bias, y }), refused("linear", name, "u32"));
  }
  for (const name of ["x", "weight", "bias", "dy", "dx", "dweight", "dbias"] as const) {
    const { x, weight, bias, dy, dx, dweight, dbias } = tensors(name, "i32");
    assert.throws(
      () => linearBackward({ x, weight, bias, dy, dx, dweight, dbias }),
      refused("linear backward", name, "i32"),
    );
  }
  const { x, weight, bias, y, dy, dx, dweight, dbias } = tensors();
  assert.equal(linearForward({ x, weight, bias, y }).length, 1);
  assert.equal(linearBackward({ x, weight, bias, dy, dx, dweight, dbias }).length, 2);
  assert.equal(linearBackward({ x, weight, bias, dy, dweight, dbias }).length, 1);
});
