import assert from "node:assert/strict";
import { BufferLimitError } from "../../src/gpu/buffer.ts";
import { createTensor } from "../../src/gpu/tensor.ts";
import { resnetConfig } from "../../src/model/config.ts";
import { ModelWeights } from "../../src/model/weights.ts";
import { createMetrics } from "../../src/ops/softmax_cross_entropy.ts";
import { allocate } from "../../src/plan/allocator.ts";
import { StepPlan } from "../../src/plan/plan.ts";
import { Program } from "../../src/plan/program.ts";
import { gpuTest } from "../support/gpu.ts";

gpuTest("the allocator reuses dead tensors' buffers, never within one step", (gpu) => {
  const program = new Program();
  const [a, b, c, d] = ["a", "b", "c", "d"].map((label) => program.tensor(label, [256]));
  const step = (label: string, reads: typeof a[], writes: typeof a[]) =>
    program.add({ label, reads, writes, build: () => Promise.resolve([]) });
  step("write a", [], [a]);
  step("a -> b", [a], [b]); // a dies here: b must not take its buffer (same step)
  step("b -> c", [b], [c]); // c may take a's buffer
  step("c -> d", [c], [d]); // d may take b's buffer
  const allocation = allocate(gpu, program, "test");
  const buffer = (t: typeof a) => allocation.resolve(t).buffer;
  assert.notEqual(buffer(a), buffer(b));
  assert.equal(buffer(c), buffer(a));
  assert.equal(buffer(d), buffer(b));
  assert.equal(allocation.bytes, 2 * 1024);
  assert.equal(allocation.bytesWithoutReuse, 4 * 1024);
  return Promise.resolve();
});

gpuTest("a tensor read before any step writes it is a planning error", (gpu) => {
  const program = new Program();
  const orphan = program.tensor("orphan", [4]);
  program.add({
    label: "reads orphan",
    reads: [orphan],
    writes: [],
    build: () => Promise.resolve([]),
  });
  assert.throws(
    () => allocate(gpu, program, "test"),
    /orphan is read by reads orphan before any step writes it/,
  );
  return Promise.resolve();
});

gpuTest(
  "an activation over the device's binding limit is caught while planning, naming it",
  async (gpu) => {
    const weights = new ModelWeights(gpu, resnetConfig("resnet18"));
    // 600 x 32 x 32 x 64 floats are 157 MB, over the default 128 MiB per binding.
    const batch = 600;
    const tensors = [
      createTensor(gpu, "input", [1, 32, 32, 3]),
      createTensor(gpu, "labels", [1]),
      createMetrics(gpu),
    ];
    await assert.rejects(
      StepPlan.build(gpu, weights, "train", {
        input: { ...tensors[0], shape: [batch, 32, 32, 3] },
        labels: { ...tensors[1], shape: [batch] },
        metrics: tensors[2],
      }),
      (error: Error) =>
        error instanceof BufferLimitError &&
        /^train conv\.0 needs 150\.0 MiB, over this device's limit of 128\.0 MiB per buffer: use a smaller batch size$/
          .test(error.message),
    );
    weights.destroy();
    for (const tensor of tensors) tensor.buffer.destroy();
  },
);
