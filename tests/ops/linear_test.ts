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

// Scaled: ResNet-9's head (0.125), and a negative scale that is no power of two.
for (
  const [n, inFeatures, outFeatures, scale] of [
    [1, 512, 10, 1],
    [3, 17, 5, 1],
    [3, 65, 10, 1],
    [7, 3, 1, 1],
    [1, 512, 10, 0.125],
    [3, 17, 5, 0.125],
    [7, 3, 1, 0.125],
    [3, 17, 5, -3],
  ]
) {
  const scaled = scale === 1 ? "" : `, scale ${scale}`;
  gpuTest(
    `linear: gradient check on batch ${n}, ${inFeatures} -> ${outFeatures}${scaled}`,
    async (gpu) => {
      const random = new Random(n * inFeatures + outFeatures);
      const shape = { n, inFeatures, outFeatures };
      const bound = 1 / Math.sqrt(inFeatures);
      await gradCheck({
        name: `linear ${n}x${inFeatures}->${outFeatures}${scaled}`,
        inputs: {
          x: f32Array(n * inFeatures, () => random.uniform(-1, 1)),
          weight: f32Array(outFeatures * inFeatures, () => random.uniform(-bound, bound)),
          bias: f32Array(outFeatures, () => random.uniform(-bound, bound)),
        },
        reference: {
          forward: ({ x, weight, bias }) => referenceForward(x, weight, bias, shape, scale),
          backward: ({ x, weight }, dy) => {
            const { dx, dweight, dbias } = referenceBackward(x, weight, dy, shape, scale);
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
            ...linearForward({ x, weight, bias, y }, { scale }),
            ...linearBackward(
              { x, weight, bias, dy: dyTensor, dx, dweight, dbias },
              { scale },
            ),
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
    },
  );
}

gpuTest(
  "linear: scale 0.125 gives the unscaled layer's output and gradients times 0.125, bit for bit",
  async (gpu) => {
    // A power of two multiplies exactly, so scaling the sums once equals scaling every term
    // (PyTorch's fc(x) * 0.125 and its backward) to the last bit.
    const [n, inFeatures, outFeatures] = [5, 33, 10];
    const random = new Random(7);
    const x = f32Tensor(gpu, "x", [n, inFeatures], f32Array(n * inFeatures, () => random.normal()));
    const weight = f32Tensor(
      gpu,
      "weight",
      [outFeatures, inFeatures],
      f32Array(outFeatures * inFeatures, () => random.uniform(-0.2, 0.2)),
    );
    const bias = f32Tensor(
      gpu,
      "bias",
      [outFeatures],
      f32Array(outFeatures, () => random.normal()),
    );
    const dy = f32Tensor(
      gpu,
      "dy",
      [n, outFeatures],
      f32Array(n * outFeatures, () => random.normal()),
    );
    const run = async (scale: number) => {
      const y = poisonedTensor(gpu, "y", [n, outFeatures]);
      const dx = poisonedTensor(gpu, "dx", [n, inFeatures]);
      const dweight = poisonedTensor(gpu, "dweight", [outFeatures, inFeatures]);
      const dbias = poisonedTensor(gpu, "dbias", [outFeatures]);
      await submitCalls(gpu, [
        ...linearForward({ x, weight, bias, y }, { scale }),
        ...linearBackward({ x, weight, bias, dy, dx, dweight, dbias }, { scale }),
      ]);
      return Promise.all([y, dx, dweight, dbias].map((t) => readTensor(gpu, t)));
    };
    const plain = await run(1);
    const scaled = await run(0.125);
    for (const [i, name] of ["y", "dx", "dweight", "dbias"].entries()) {
      assert.deepEqual(Array.from(scaled[i]), Array.from(plain[i], (v) => v * 0.125), name);
    }
  },
);

Deno.test("linear: a scale that is zero or not finite is refused, naming it", () => {
  const [n, inFeatures, outFeatures] = [3, 17, 5];
  const f32 = (label: string, shape: number[]) => tensorDesc(label, shape, "f32");
  const layer = {
    x: f32("x", [n, inFeatures]),
    weight: f32("weight", [outFeatures, inFeatures]),
    bias: f32("bias", [outFeatures]),
  };
  const gradients = {
    dy: f32("dy", [n, outFeatures]),
    dx: f32("dx", [n, inFeatures]),
    dweight: f32("dweight", [outFeatures, inFeatures]),
    dbias: f32("dbias", [outFeatures]),
  };
  const y = f32("y", [n, outFeatures]);
  for (const scale of [0, -0, NaN, Infinity, -Infinity]) {
    assert.throws(() => linearForward({ ...layer, y }, { scale }), {
      name: "RangeError",
      message: `linear: scale must be a finite nonzero number, got ${scale}`,
    });
    assert.throws(() => linearBackward({ ...layer, ...gradients }, { scale }), {
      name: "RangeError",
      message: `linear backward: scale must be a finite nonzero number, got ${scale}`,
    });
  }
  for (const scale of [0.125, -3, 1e-3]) {
    assert.equal(linearForward({ ...layer, y }, { scale })[0].constants.SCALE, scale);
    const backward = linearBackward({ ...layer, ...gradients }, { scale });
    assert.deepEqual(backward.map((call) => call.constants.SCALE), [scale, scale]);
  }
  // Without the option the layer is nn.Linear itself.
  assert.equal(linearForward({ ...layer, y })[0].constants.SCALE, 1);
});

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
