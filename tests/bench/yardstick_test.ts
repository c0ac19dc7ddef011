/**
 * The benchmarks' yardsticks compute what they claim, so the GFLOP/s and GB/s they are compared
 * with are of real work: the matrix product (bench/conv2d.ts) against an f64 product on the CPU,
 * the copy (bench/batchnorm.ts) element for element, in every tiling the bench uses.
 */
import assert from "node:assert/strict";
import { writeBuffer } from "../../src/gpu/buffer.ts";
import { submitDispatches } from "../../src/gpu/dispatch.ts";
import { copyDispatch } from "../../bench/batchnorm.ts";
import { matmulDispatches } from "../../bench/conv2d.ts";
import { f32Tensor, gpuTest, poisonedTensor, readTensor } from "../support/gpu.ts";
import { REDUCTION } from "../support/tolerances.ts";
import { assertAllClose } from "../support/reference/compare.ts";
import { f32Array, Random } from "../support/reference/random.ts";

gpuTest("matmul yardstick: c = a · b against an f64 product", async (gpu) => {
  // Sizes the kernel's blocks divide (M by 8, N by 16, K by 4), as the bench picks them.
  const [m, n, k] = [24, 32, 12];
  const { dispatches, tensors: [a, b, c] } = await matmulDispatches(gpu, m, n, k);
  assert.deepEqual([a.shape, b.shape, c.shape], [[m, k], [k, n], [m, n]]);
  const random = new Random(11);
  const aValues = f32Array(m * k, () => random.uniform(-1, 1));
  const bValues = f32Array(k * n, () => random.uniform(-1, 1));
  writeBuffer(gpu, a.buffer, Float32Array.from(aValues));
  writeBuffer(gpu, b.buffer, Float32Array.from(bValues));
  submitDispatches(gpu, dispatches);
  const expected = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      for (let p = 0; p < k; p++) expected[i * n + j] += aValues[i * k + p] * bValues[p * n + j];
    }
  }
  assertAllClose(await readTensor(gpu, c), expected, REDUCTION, "matmul");
  for (const tensor of [a, b, c]) tensor.buffer.destroy();
});

for (const tiling of [1, 4, 64, 256].map((vectors) => ({ VECTORS_PER_INVOCATION: vectors }))) {
  for (const WORKGROUP_SIZE of [8, 256]) {
    gpuTest(
      `copy yardstick: ${tiling.VECTORS_PER_INVOCATION} vectors per invocation, workgroups of ${WORKGROUP_SIZE}`,
      async (gpu) => {
        // Not a multiple of any tiling, so the last invocation's run is cut short.
        const shape = [3, 7, 7, 20];
        const values = Float32Array.from({ length: 3 * 7 * 7 * 20 }, (_, i) => i * 0.5 - 7);
        const destination = poisonedTensor(gpu, "destination", shape);
        submitDispatches(gpu, [
          await copyDispatch(gpu, f32Tensor(gpu, "source", shape, values), destination, {
            WORKGROUP_SIZE,
            ...tiling,
          }),
        ]);
        assert.deepEqual(await readTensor(gpu, destination), values);
      },
    );
  }
}
