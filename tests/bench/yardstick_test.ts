/**
 * The benchmarks' yardsticks (bench/kernels.ts) compute what they claim, so the GFLOP/s and GB/s
 * they are compared with are of real work: the matrix product (bench/conv2d.ts) against an f64
 * product on the CPU, the copy (bench/batchnorm.ts) element for element, in every tiling the
 * bench uses, and the FMA loop (bench/step_profile.ts's FLOP/s peak) against its recurrence in f64.
 */
import assert from "node:assert/strict";
import { writeBuffer } from "../../src/gpu/buffer.ts";
import { tensorDesc } from "../../src/gpu/tensor.ts";
import { materialize, submitCalls } from "../../src/plan/materialize.ts";
import { elementCount } from "../../src/util/shape.ts";
import { submitCommands } from "../../src/gpu/dispatch.ts";
import { copyCall } from "../../bench/batchnorm.ts";
import { matmulCalls } from "../../bench/conv2d.ts";
import { yardsticks } from "../../bench/kernels.ts";
import { fmaCall } from "../../bench/step_profile.ts";
import { f32Tensor, gpuTest, poisonedTensor, readTensor } from "../support/gpu.ts";
import { REDUCTION } from "../support/tolerances.ts";
import { assertAllClose } from "../support/reference/compare.ts";
import { f32Array, Random } from "../support/reference/random.ts";

gpuTest("matmul yardstick: c = a · b against an f64 product", async (gpu) => {
  // Sizes the kernel's blocks divide (M by 8, N by 16, K by 4), as the bench picks them.
  const [m, n, k] = [24, 32, 12];
  const { calls, flops, tensors: [a, b, c] } = matmulCalls(gpu, m, n, k);
  assert.deepEqual([a.shape, b.shape, c.shape], [[m, k], [k, n], [m, n]]);
  assert.equal(calls.length, 1);
  assert.equal(calls[0].kernel, yardsticks.matmul);
  assert.equal(flops, 2 * m * n * k);
  const random = new Random(11);
  const aValues = f32Array(m * k, () => random.uniform(-1, 1));
  const bValues = f32Array(k * n, () => random.uniform(-1, 1));
  writeBuffer(gpu, a.buffer, Float32Array.from(aValues));
  writeBuffer(gpu, b.buffer, Float32Array.from(bValues));
  await submitCalls(gpu, calls);
  const expected = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      for (let p = 0; p < k; p++) expected[i * n + j] += aValues[i * k + p] * bValues[p * n + j];
    }
  }
  assertAllClose(await readTensor(gpu, c), expected, REDUCTION, "matmul");
  for (const tensor of [a, b, c]) tensor.buffer.destroy();
});

for (const VECTORS_PER_INVOCATION of [1, 4, 64, 256]) {
  for (const WORKGROUP_SIZE of [8, 256]) {
    gpuTest(
      `copy yardstick: ${VECTORS_PER_INVOCATION} vectors per invocation, workgroups of ${WORKGROUP_SIZE}`,
      async (gpu) => {
        // Not a multiple of any tiling, so the last invocation's run is cut short.
        const shape = [3, 7, 7, 20];
        const values = Float32Array.from({ length: elementCount(shape) }, (_, i) => i * 0.5 - 7);
        const source = f32Tensor(gpu, "source", shape, values);
        // NaN until written, so an element the copy misses fails the comparison.
        const destination = poisonedTensor(gpu, "destination", shape);
        const tiling = { WORKGROUP_SIZE, VECTORS_PER_INVOCATION };
        const call = copyCall(source, destination, tiling);
        assert.equal(call.kernel, yardsticks.copy);
        assert.deepEqual(call.workgroupSize, [WORKGROUP_SIZE, 1, 1]);
        await submitCalls(gpu, [call]);
        assert.deepEqual(await readTensor(gpu, destination), values);
        // The same call into a destination without storage, which materialize allocates.
        const transient = tensorDesc("copy", shape);
        const materialized = await materialize(gpu, [copyCall(source, transient, tiling)], {
          label: "yardstick",
        });
        submitCommands(gpu, materialized.commands);
        assert.deepEqual(await readTensor(gpu, materialized.resolve(transient)), values);
        materialized.destroy();
        source.buffer.destroy();
        destination.buffer.destroy();
      },
    );
  }
}

gpuTest("fma yardstick: every accumulator runs the recurrence, against an f64 one", async (gpu) => {
  const invocations = 13; // not a multiple of the workgroup, so the bounds check matters
  const iterations = 5;
  // Halves and small integers: every value of the recurrence is exact in f32, fused or not.
  const a = [0.5, 0.25, 0.5, 1];
  const b = [1, 2, -1, 0.5];
  const seeds = Array.from({ length: invocations * 4 }, (_, i) => (i % 7) - 3);
  const coefficients = f32Tensor(gpu, "coefficients", [2, 4], [...a, ...b]);
  const sums = f32Tensor(gpu, "sums", [invocations * 4], seeds);
  const call = fmaCall(coefficients, sums, { iterations, workgroupSize: 8 });
  assert.equal(call.kernel, yardsticks.fma);
  assert.equal(call.flops, invocations * iterations * 8 * 4 * 2);
  await submitCalls(gpu, [call]);
  const expected = seeds.map((seed, i) => {
    let sum = 0;
    for (let accumulator = 0; accumulator < 8; accumulator++) {
      let x = seed + accumulator;
      for (let k = 0; k < iterations; k++) x = x * a[i % 4] + b[i % 4];
      sum += x;
    }
    return sum;
  });
  assert.deepEqual([...await readTensor(gpu, sums)], expected);
  for (const tensor of [coefficients, sums]) tensor.buffer.destroy();
});
