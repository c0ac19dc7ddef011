import assert from "node:assert/strict";
import { resnetConfig } from "../../src/model/config.ts";
import {
  CHECKPOINT_FORMAT,
  decodeCheckpoint,
  encodeCheckpoint,
  loadModelStateDict,
  modelStateDict,
} from "../../src/model/checkpoint.ts";
import { ModelWeights } from "../../src/model/weights.ts";
import { CheckpointError, encodeSafetensors, type Tensor } from "../../src/io/safetensors.ts";
import { gpuTest } from "../support/gpu.ts";

const tiny = resnetConfig("resnet18", 1 / 16);

gpuTest(
  "checkpoint round trip: weights, running statistics, counters, optimizer state and metadata",
  async (gpu) => {
    const source = new ModelWeights(gpu, tiny);
    source.initialize(1);
    const parameters = await source.downloadParameters();
    // Running statistics and counters other than their initial values, so a round trip that
    // re-initialises them is caught.
    const state = await source.downloadState();
    for (const values of state.values.values()) values.forEach((_, i) => values[i] = 0.25 + i);
    source.uploadState(state.values, Uint32Array.from(state.numBatchesTracked, (_, i) => i + 3));
    const metadata = {
      format: CHECKPOINT_FORMAT,
      model: tiny,
      epoch: 2,
      step: 780,
      seed: 1,
    } as const;
    const optimizer = {
      step: 780,
      buffers: { m: new Float32Array([1, 2, 3]), v: new Float32Array([4, 5, 6]) },
    };
    const bytes = await encodeCheckpoint(source, metadata, optimizer);

    const decoded = decodeCheckpoint(bytes, "round-trip.safetensors");
    assert.deepEqual(decoded.metadata, metadata);
    assert.deepEqual(decoded.optimizer, optimizer);
    const target = new ModelWeights(gpu, tiny);
    target.initialize(99);
    loadModelStateDict(target, decoded.tensors, "round-trip.safetensors");
    assert.deepEqual(await target.downloadParameters(), parameters);
    const loadedState = await target.downloadState();
    assert.deepEqual(loadedState.values, state.values);
    assert.deepEqual(
      Array.from(loadedState.numBatchesTracked),
      Array.from(state.numBatchesTracked, (_, i) => i + 3),
    );
    source.destroy();
    target.destroy();
  },
);

gpuTest(
  "the state dict uses PyTorch's layouts: OIHW conv weights, int64 num_batches_tracked",
  async (gpu) => {
    const weights = new ModelWeights(gpu, tiny);
    weights.initialize(5);
    const dict = await modelStateDict(weights);
    const conv = dict.get("conv2_x.0.residual_function.0.weight")!;
    assert.deepEqual(conv.shape, [4, 4, 3, 3]);
    // Element (o=1, i=2, kh=0, kw=1) of OIHW is element (1, 0, 1, 2) of the arena's OHWI.
    const ohwi = (await weights.downloadParameters()).get("conv2_x.0.residual_function.0.weight")!;
    assert.equal(conv.data[((1 * 4 + 2) * 3 + 0) * 3 + 1], ohwi[((1 * 3 + 0) * 3 + 1) * 4 + 2]);
    const counter = dict.get("conv.1.num_batches_tracked")!;
    assert.equal(counter.dtype, "I64");
    assert.deepEqual(counter.shape, []);
    assert.deepEqual([...dict.keys()].slice(0, 6), [
      "conv.0.weight",
      "conv.1.weight",
      "conv.1.bias",
      "conv.1.running_mean",
      "conv.1.running_var",
      "conv.1.num_batches_tracked",
    ]);
    weights.destroy();
  },
);

gpuTest("loading a checkpoint of another shape names the first mismatch", async (gpu) => {
  const small = new ModelWeights(gpu, tiny);
  small.initialize(1);
  const bytes = await encodeCheckpoint(small);
  const wider = new ModelWeights(gpu, resnetConfig("resnet18", 1 / 8));
  assert.throws(
    () =>
      loadModelStateDict(
        wider,
        decodeCheckpoint(bytes, "small.safetensors").tensors,
        "small.safetensors",
      ),
    /^CheckpointError: small\.safetensors: conv\.0\.weight has shape \[4,3,3,3\] but the model expects \[8,3,3,3\]/,
  );
  const missing = decodeCheckpoint(bytes, "x").tensors;
  missing.delete("fc.bias");
  assert.throws(
    () => loadModelStateDict(small, missing, "cut.safetensors"),
    /cut\.safetensors: has no tensor fc\.bias/,
  );
  const extra = decodeCheckpoint(bytes, "x").tensors;
  extra.set("head.weight", { dtype: "F32", shape: [1], data: new Float32Array(1) });
  assert.throws(
    () => loadModelStateDict(small, extra, "extra.safetensors"),
    /extra\.safetensors: has a tensor head\.weight/,
  );
  small.destroy();
  wider.destroy();
});

Deno.test("checkpoint metadata is validated", () => {
  const bad = encodeSafetensors(new Map(), {
    checkpoint: JSON.stringify({ format: CHECKPOINT_FORMAT, epoch: -1 }),
  });
  assert.throws(
    () => decodeCheckpoint(bad, "bad.safetensors"),
    /bad\.safetensors: bad checkpoint metadata at model/,
  );
  const notJson = encodeSafetensors(new Map(), { checkpoint: "{" });
  assert.throws(
    () => decodeCheckpoint(notJson, "nj.safetensors"),
    /nj\.safetensors: its checkpoint metadata is not JSON/,
  );
});

Deno.test("a file that is no checkpoint is refused as such, saying what to give instead", () => {
  const metrics = new TextEncoder().encode(
    '{"epoch":1,"step":4,"trainLoss":2.3026,"trainAccuracy":0.09,"testLoss":2.3}\n'.repeat(17),
  );
  assert.throws(
    () => decodeCheckpoint(metrics, "runs/a/metrics.jsonl"),
    (error: Error) =>
      error instanceof CheckpointError &&
      error.message ===
        "runs/a/metrics.jsonl: not a checkpoint: not a safetensors file (it is JSON text); give " +
          "a .safetensors checkpoint (a run's last.safetensors or best.safetensors, or a PyTorch " +
          "state dict saved with safetensors)",
  );
});

Deno.test("a checkpoint holding NaN or an infinity is refused, naming the tensor", () => {
  const weights = (values: number[]): Tensor => ({
    dtype: "F32",
    shape: [values.length],
    data: Float32Array.from(values),
  });
  const cases: [string, Map<string, Tensor>, string][] = [
    [
      "NaN in a weight",
      new Map([
        ["conv.0.weight", weights([1, 2, 3])],
        ["conv2_x.0.residual_function.1.weight", weights([1, NaN, NaN, 4])],
      ]),
      "conv2_x.0.residual_function.1.weight holds NaN at element 1 (2 of its 4 values are NaN or infinite)",
    ],
    [
      "an infinity in a running variance, stored as F64",
      new Map<string, Tensor>([
        ["conv.1.running_var", { dtype: "F64", shape: [2], data: Float64Array.of(1, -Infinity) }],
      ]),
      "conv.1.running_var holds -Infinity at element 1 (1 of its 2 values are NaN or infinite)",
    ],
    [
      "NaN in the optimizer state",
      new Map<string, Tensor>([
        ["conv.0.weight", weights([1])],
        ["optimizer.step", { dtype: "I64", shape: [], data: BigInt64Array.of(3n) }],
        ["optimizer.exp_avg", weights([0, 0, NaN])],
      ]),
      "optimizer.exp_avg holds NaN at element 2 (1 of its 3 values are NaN or infinite)",
    ],
  ];
  for (const [what, tensors, problem] of cases) {
    assert.throws(
      () => decodeCheckpoint(encodeSafetensors(tensors), "best.safetensors"),
      (error: Error) =>
        error instanceof CheckpointError &&
        error.message ===
          `best.safetensors: ${problem}: no usable model (saved from a run that diverged, or ` +
            "damaged); use another checkpoint",
      what,
    );
  }
  // Finite values of every kind load, integers untouched.
  const fine = new Map<string, Tensor>([
    ["conv.0.weight", weights([0, -0, 3.4e38, -1e-45])],
    ["conv.1.num_batches_tracked", { dtype: "I64", shape: [], data: BigInt64Array.of(7n) }],
  ]);
  assert.equal(decodeCheckpoint(encodeSafetensors(fine), "ok.safetensors").tensors.size, 2);
});
