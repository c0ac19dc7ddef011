/**
 * The step profile (bench/step_profile.ts) states what it measured: timestamps read into per-call times
 * and checked for order, bytes and FLOPs from the calls' bindings, groups that add up, and a
 * profile of a small ResNet whose calls are the step's, each in its pass, with the input batch's
 * and the optimizer's bytes as counted from the model's shapes; in f16 too, with loss scaling's
 * kernels. Speed itself is measured in bench/, never asserted here.
 */
import assert from "node:assert/strict";
import { type Gpu, requestGpu } from "../../src/gpu/device.ts";
import {
  isKernelCall,
  kernelCall,
  read,
  readWrite,
  uniform,
  write,
} from "../../src/gpu/kernel_call.ts";
import { tensorDesc } from "../../src/gpu/tensor.ts";
import { materialize } from "../../src/plan/materialize.ts";
import { buildNetworkProgram, FORWARD_END } from "../../src/plan/network.ts";
import { resnetConfig } from "../../src/model/config.ts";
import { parameterSpecs } from "../../src/model/parameters.ts";
import { ModelWeights } from "../../src/model/weights.ts";
import { KernelPolicy } from "../../src/ops/policy.ts";
import type { ActivationDType } from "../../src/ops/shape.ts";
import { createMetrics } from "../../src/ops/softmax_cross_entropy.ts";
import { createTensor } from "../../src/gpu/tensor.ts";
import { PrecisionUnsupportedError } from "../../src/train/precision.ts";
import { elementCount } from "../../src/util/shape.ts";
import {
  callBytes,
  fmaCall,
  formatProfile,
  groupCalls,
  type ProfiledCall,
  profileTrainingStep,
  readStamps,
  timeCallByCall,
  TIMER_NOTES,
  timeWithTimestamps,
} from "../../bench/step_profile.ts";
import { yardsticks } from "../../bench/kernels.ts";
import { gpuTest } from "../support/gpu.ts";

Deno.test("readStamps: per-call milliseconds from nanosecond pairs, disorder counted", () => {
  const { ms, stamps } = readStamps(
    new BigUint64Array([1_000_000n, 3_500_000n, 3_600_000n, 3_600_000n, 3_500_000n, 4_000_000n]),
  );
  assert.deepEqual(ms, [2.5, 0, 0.5]);
  // The third call begins (3.5 ms) before the second ended (3.6 ms).
  assert.equal(stamps.outOfOrder, 1);
  assert.equal(stamps.zeroLength, 1);
  assert.equal(stamps.shortestNs, 500_000);
  assert.equal(stamps.spanMs, 3);
  // An end before its begin.
  assert.equal(readStamps(new BigUint64Array([10n, 5n])).stamps.outOfOrder, 1);
});

Deno.test("callBytes: read and write once, read_write twice, by element type", () => {
  const call = kernelCall({
    kernel: yardsticks.copy,
    entryPoint: "copy",
    workgroupSize: 8,
    grid: [1],
    bindings: [
      read(tensorDesc("x", [2, 3, 4])), // 96 bytes
      write(tensorDesc("y", [10], "f16")), // 20
      readWrite(tensorDesc("state", [5], "u32")), // 2 x 20
      uniform(tensorDesc("params", [4], "u32")), // 16
    ],
  });
  assert.equal(callBytes(call), 96 + 20 + 40 + 16);
});

Deno.test("groupCalls: sums, shares and rates; one peak per group or none", () => {
  const calls: ProfiledCall[] = [
    { label: "a conv", op: "conv", pass: "forward", ms: 2, flops: 6e6, bytes: 1e6 },
    { label: "b conv", op: "conv", pass: "forward", ms: 1, flops: 3e6, bytes: 2e6 },
    { label: "a bn", op: "bn", pass: "forward", ms: 4, bytes: 8e6 },
    { label: "adam", op: "adam", pass: "optimizer", ms: 3 },
  ];
  const peaks = { gflops: 6, gbPerSecond: 4 };
  const groups = groupCalls(calls, peaks, (call) => `${call.op} ${call.pass}`);
  assert.deepEqual(groups, [
    { op: "bn", pass: "forward", calls: 1, ms: 4, share: 0.4, gbPerSecond: 2, peakShare: 0.5 },
    {
      op: "conv",
      pass: "forward",
      calls: 2,
      ms: 3,
      share: 0.3,
      gflops: 3,
      gbPerSecond: 1,
      peakShare: 0.5,
    },
    { op: "adam", pass: "optimizer", calls: 1, ms: 3, share: 0.3 },
  ]);
  const passes = groupCalls(calls, peaks, (call) => call.pass);
  // The forward pass mixes arithmetic and memory-bound calls: bytes over time, but no peak.
  assert.deepEqual(passes[0], {
    op: "all",
    pass: "forward",
    calls: 3,
    ms: 7,
    share: 0.7,
    gbPerSecond: 11e6 / 7 / 1e6,
  });
});

gpuTest(
  "timestamps: in order, positive, within the submit's wall-clock time",
  async (gpu) => {
    if (!gpu.device.features.has("timestamp-query")) return;
    const coefficients = createTensor(gpu, "coefficients", [2, 4]);
    const sums = createTensor(gpu, "sums", [1024 * 4]);
    const calls = [64, 512, 64].map((iterations) =>
      fmaCall(coefficients, sums, { iterations, workgroupSize: 8 })
    );
    const { commands } = await materialize(gpu, calls, { label: "profile test" });
    await timeWithTimestamps(gpu, commands); // first commands compile
    const run = await timeWithTimestamps(gpu, commands);
    assert.equal(run.ms.length, 3);
    assert.equal(run.stamps!.outOfOrder, 0);
    assert(run.ms.every((ms) => ms > 0), `${run.ms}`);
    assert(run.stamps!.spanMs >= run.ms.reduce((sum, ms) => sum + ms, 0));
    assert(
      run.stamps!.spanMs <= run.wallMs,
      `span ${run.stamps!.spanMs} ms, wall ${run.wallMs} ms`,
    );

    const byCall = await timeCallByCall(gpu, commands);
    assert.equal(byCall.ms.length, 3);
    assert.equal(byCall.stamps, undefined);
    assert(byCall.ms.reduce((sum, ms) => sum + ms, 0) <= byCall.wallMs);
    for (const tensor of [coefficients, sums]) tensor.buffer.destroy();
  },
);

/** The step's size in these tests: small, so that the profile takes seconds on lavapipe. */
const [MODEL, WIDTH, BATCH] = ["resnet18", 1 / 16, 4] as const;

/** A profile of the small step, the fewest repetitions, yardsticks of almost no work. */
function profileSmallStep(gpu: Gpu, precision: ActivationDType, policy: KernelPolicy) {
  return profileTrainingStep(gpu, {
    model: MODEL,
    width: WIDTH,
    batchSize: BATCH,
    precision,
    repeats: 1,
    policy,
    peakSizes: { fmaInvocations: 64, fmaIterations: 64, copyBytes: 2 ** 16 },
  });
}

/**
 * What the profile must count, computed here from the model's tensor shapes: the network's calls
 * (the same program, built apart), the parameter arena's bytes (each tensor padded to 256 bytes),
 * and the input batch's bytes (per image its 3072 pixel bytes, its label and its order entry read;
 * the batch in `precision` and its labels written).
 */
function expectedCounts(gpu: Gpu, precision: ActivationDType, policy: KernelPolicy) {
  const weights = new ModelWeights(gpu, resnetConfig(MODEL, WIDTH));
  const io = {
    input: tensorDesc("input", [BATCH, 32, 32, 3], precision),
    labels: tensorDesc("labels", [BATCH], "u32"),
    metrics: createMetrics(gpu),
    ...(precision === "f16" ? { lossScale: tensorDesc("loss scale", [5], "u32") } : {}),
  };
  const program = buildNetworkProgram(weights, "train", io, policy);
  const specs = parameterSpecs(weights.architecture);
  weights.destroy();
  io.metrics.buffer.destroy();
  const arenaBytes = specs.reduce(
    (sum, spec) => sum + Math.ceil(elementCount(spec.shape) * 4 / 256) * 256,
    0,
  );
  const activationBytes = precision === "f16" ? 2 : 4;
  return {
    program,
    forwardEnd: program.markAt(FORWARD_END),
    arenaBytes,
    inputBatchBytes: BATCH * (3072 + 4 + 4) + BATCH * 32 * 32 * 3 * activationBytes + BATCH * 4,
  };
}

gpuTest("profile: the step's calls, each in its pass, groups that add up", async (gpu) => {
  const policy = KernelPolicy.forAdapter(gpu);
  const timer = gpu.device.features.has("timestamp-query") ? "timestamps" : "calls";
  const profile = await profileSmallStep(gpu, "f32", policy);
  const { program, forwardEnd, arenaBytes, inputBatchBytes } = expectedCounts(gpu, "f32", policy);

  assert.equal(profile.timer, timer);
  assert.equal(profile.timerNote, TIMER_NOTES[timer]);
  assert.equal(profile.precision, "f32");
  const inNetwork = profile.calls.filter((call) =>
    call.pass === "forward" || call.pass === "backward"
  );
  assert.deepEqual(
    inNetwork.map((call) => [call.label, call.pass]),
    program.calls.map((call, i) => [call.label, i < forwardEnd ? "forward" : "backward"]),
  );
  assert.deepEqual(
    inNetwork.map((call) => call.flops),
    program.calls.map((call) => isKernelCall(call) ? call.flops : undefined),
  );
  assert.deepEqual(inNetwork.map((call) => call.bytes), program.calls.map(callBytes));
  // The input batch first, the optimizer last: Adam reads the gradients, reads and writes the
  // params and its two state buffers.
  assert.deepEqual(
    profile.calls.filter((call) => call.pass !== "forward" && call.pass !== "backward")
      .map((call) => [call.pass, call.op, call.bytes]),
    [["input", "input_batch", inputBatchBytes], ["optimizer", "optimizer.adam", 7 * arenaBytes]],
  );
  assert.equal(profile.calls[0].pass, "input");
  assert.equal(profile.calls.at(-1)!.pass, "optimizer");
  assert.equal(profile.calls.length, inNetwork.length + 2);
  // With bytes counted, every pass has GB/s; the input batch and the optimizer a share of the
  // copy's peak too (they count no FLOPs).
  assert(profile.passes.every((group) => group.gbPerSecond! > 0));
  for (const pass of ["input", "optimizer"]) {
    const group = profile.passes.find((group) => group.pass === pass)!;
    assert.equal(group.peakShare, group.gbPerSecond! / profile.peaks.gbPerSecond);
  }

  assert.deepEqual(profile.passes.map((group) => group.pass), [
    "input",
    "forward",
    "backward",
    "optimizer",
  ]);
  for (const groups of [profile.passes, profile.groups]) {
    assert.equal(groups.reduce((sum, group) => sum + group.calls, 0), profile.calls.length);
    const ms = groups.reduce((sum, group) => sum + group.ms, 0);
    assert(Math.abs(ms - profile.callsMs) <= 1e-9 * profile.callsMs);
    assert(Math.abs(groups.reduce((sum, group) => sum + group.share, 0) - 1) < 1e-9);
  }
  assert(profile.peaks.gflops > 0 && profile.peaks.gbPerSecond > 0);
  assert.equal(profile.runs.length, 1);
  if (timer === "timestamps") assert.equal(profile.runs[0].stamps!.outOfOrder, 0);
  assert.equal(profile.lossScale, undefined);
  assert.match(formatProfile(profile), /batch 4, f32 activations, input batch/);
});

gpuTest(
  "profile in f16: f16 activations, 2 bytes each, and loss scaling's kernels",
  async (gpu) => {
    const policy = KernelPolicy.forAdapter(gpu);
    const profile = await profileSmallStep(gpu, "f16", policy);
    const { program, arenaBytes, inputBatchBytes } = expectedCounts(gpu, "f16", policy);

    assert.equal(profile.precision, "f16");
    const text = formatProfile(profile);
    assert.match(text, /batch 4, f16 activations with loss scaling, input batch/);
    // Three steps: one untimed, one timed as training runs it, one repetition timed call by call.
    // A blank batch may overflow at the first scale; each overflow halves it.
    const { scale, steps, skipped, skippedInRepetitions } = profile.lossScale!;
    assert.equal(steps, 3);
    assert(skippedInRepetitions <= skipped && skippedInRepetitions <= 1);
    assert.equal(scale, 2 ** (16 - skipped));
    assert.match(
      text,
      new RegExp(`\\nloss scale ${scale} after 3 steps, ${skipped} skipped for an overflow, `),
    );
    const inNetwork = profile.calls.filter((call) =>
      call.pass === "forward" || call.pass === "backward"
    );
    assert.deepEqual(inNetwork.map((call) => call.label), program.calls.map((call) => call.label));
    assert.deepEqual(inNetwork.map((call) => call.bytes), program.calls.map(callBytes));
    // The overflow check reads the gradients; the update as in f32; the scale update reads and
    // writes the 5-word loss-scale state.
    assert.deepEqual(
      profile.calls.filter((call) => call.pass !== "forward" && call.pass !== "backward")
        .map((call) => [call.pass, call.op, call.bytes]),
      [
        ["input", "input_batch", inputBatchBytes],
        ["optimizer", "optimizer.find_non_finite", arenaBytes],
        ["optimizer", "optimizer.adam", 7 * arenaBytes],
        ["optimizer", "optimizer.update_scale", 2 * 5 * 4],
      ],
    );
  },
);

gpuTest("profile in f16: a device without shader-f16 is refused in one line", async () => {
  const gpu = await requestGpu({ requiredFeatures: [] });
  await assert.rejects(
    profileTrainingStep(gpu, { model: MODEL, width: WIDTH, batchSize: BATCH, precision: "f16" }),
    (error) =>
      error instanceof PrecisionUnsupportedError &&
      error.message ===
        `--precision f16 needs the WebGPU feature shader-f16, which the adapter ${gpu.adapterName} ` +
          "does not offer: use --precision f32",
  );
  gpu.device.destroy();
});
