/**
 * The kernel policy without a GPU: the rules by family, forced and pinned variants, shapes a
 * variant cannot run, the record of choices and its round trip, the header line, and the calls
 * each op's request builds per variant for the autotune.
 */
import assert from "node:assert/strict";
import { tensorDesc } from "../../src/gpu/tensor.ts";
import type { Call } from "../../src/gpu/kernel_call.ts";
import { CONV2D_VARIANTS, conv2dBackward, conv2dForward } from "../../src/ops/conv2d.ts";
import {
  BATCH_NORM_VARIANTS,
  batchNormBackward,
  batchNormEvalForward,
  batchNormTrainForward,
  chooseBatchNormVariant,
} from "../../src/ops/batchnorm.ts";
import { KernelPolicy, KernelPolicyError, type VariantRequest } from "../../src/ops/policy.ts";

const VARIANTS = ["blocked", "tiled"] as const;

function request(key: string, unsupported = {}) {
  return { op: "conv2d", key, variants: VARIANTS, unsupported };
}

Deno.test("policy: each family's rule decides, and the choice is recorded per call site", () => {
  const cpu = new KernelPolicy({ family: "cpu" });
  const gpu = new KernelPolicy({ family: "gpu" });
  assert.equal(cpu.choose(request("a")), "blocked");
  assert.equal(gpu.choose(request("a")), "tiled");
  assert.equal(chooseBatchNormVariant(tensorDesc("x", [2, 4, 4, 8]), cpu), "serial_texture");
  // A texel is a channel vector: other channel counts fall back to the storage reads.
  assert.equal(chooseBatchNormVariant(tensorDesc("x", [2, 4, 4, 6]), cpu), "serial");
  assert.equal(chooseBatchNormVariant(tensorDesc("x", [2, 4, 4, 8]), gpu), "tree");
  assert.deepEqual(cpu.choices(), {
    family: "cpu",
    choices: {
      a: "blocked",
      "batchnorm [2,4,4,8]": "serial_texture",
      "batchnorm [2,4,4,6]": "serial",
    },
  });
});

Deno.test("policy: the adapter decides the family unless one is asked for", () => {
  const software = { isFallbackAdapter: true };
  const hardware = { isFallbackAdapter: false };
  assert.equal(KernelPolicy.forAdapter(software).family, "cpu");
  assert.equal(KernelPolicy.forAdapter(hardware).family, "gpu");
  assert.equal(KernelPolicy.forAdapter(software, "gpu").family, "gpu");
  assert.equal(KernelPolicy.forAdapter(hardware, "cpu").source, "flag");
  assert.equal(KernelPolicy.forAdapter(hardware, "auto").source, "adapter");
});

Deno.test("policy: a variant that cannot run a shape is passed over, or refused when forced", () => {
  const cpu = new KernelPolicy({ family: "cpu" });
  assert.equal(cpu.choose(request("tiny", { blocked: "needs 4 elements" })), "tiled");
  const forced = KernelPolicy.forcing("conv2d", "blocked");
  assert.throws(
    () => forced.choose(request("tiny", { blocked: "needs 4 elements" })),
    (error: Error) =>
      error instanceof KernelPolicyError &&
      error.message === "tiny: the forced blocked variant needs 4 elements",
  );
  assert.throws(
    () => KernelPolicy.forcing("conv2d", "winograd").choose(request("a")),
    /forced variant "winograd" is not one of conv2d's \(blocked, tiled\)/,
  );
  assert.throws(
    () => cpu.choose(request("none", { blocked: "no", tiled: "no" })),
    /none: no conv2d variant can run this shape/,
  );
});

// A variant an op marks slower on a shape: the rules pass over it to the next that runs, unless
// every runnable one is slower; forcing, pinning and the runnable list (the autotune's candidates)
// still have it.
Deno.test("policy: a variant marked slower on a shape is passed over by the rules only", () => {
  const slower = (key: string, marked: Record<string, string>, unsupported = {}) => ({
    ...request(key, unsupported),
    slower: marked,
  });
  const cpu = new KernelPolicy({ family: "cpu" });
  assert.equal(cpu.choose(slower("a", { blocked: "slower here" })), "tiled");
  assert.equal(cpu.choose(slower("b", { tiled: "slower here" })), "blocked");
  assert.equal(cpu.choose(slower("c", { blocked: "slower", tiled: "slower" })), "blocked");
  assert.equal(cpu.choose(slower("d", { tiled: "slower" }, { blocked: "no" })), "tiled");
  assert.deepEqual(cpu.runnable(slower("e", { blocked: "slower here" })), ["blocked", "tiled"]);
  const forced = KernelPolicy.forcing("conv2d", "blocked");
  assert.equal(forced.choose(slower("f", { blocked: "slower here" })), "blocked");
  const pinned = KernelPolicy.restoring({ family: "cpu", choices: { g: "blocked" } });
  assert.equal(pinned.choose(slower("g", { blocked: "slower here" })), "blocked");
});

Deno.test("policy: forcing one op leaves the others to the rules", () => {
  const policy = KernelPolicy.forcing("conv2d", "tiled", "cpu");
  assert.equal(policy.choose(request("a")), "tiled");
  assert.equal(chooseBatchNormVariant(tensorDesc("x", [2, 4, 4, 8]), policy), "serial_texture");
});

Deno.test("policy: stored choices are made again, before the rules, and round-trip", () => {
  const first = new KernelPolicy({ family: "gpu" });
  first.choose(request("layer 1"));
  const stored = first.choices();
  // A stored choice wins over the family's rule: the run computes as it started.
  const resumed = KernelPolicy.restoring({ family: "cpu", choices: { "layer 1": "tiled" } });
  assert.equal(resumed.choose(request("layer 1")), "tiled");
  // Keys it does not hold fall to the stored family's rules.
  assert.equal(resumed.choose(request("layer 2")), "blocked");
  assert.equal(resumed.source, "checkpoint");
  const again = KernelPolicy.restoring(stored);
  assert.equal(again.choose(request("layer 1")), "tiled");
  assert.deepEqual(again.choices(), stored);
  assert.throws(
    () => KernelPolicy.restoring({ family: "gpu", choices: { x: "fft" } }).choose(request("x")),
    /x: pinned variant "fft" is not one of conv2d's/,
  );
});

Deno.test("policy: the header line names the family, its source and each op's variants", () => {
  const policy = new KernelPolicy({ family: "cpu" });
  assert.equal(policy.describe(), "cpu family (the adapter's)");
  const conv = (cin: number, h: number) => {
    const x = tensorDesc("x", [1, h, h, cin]);
    const weight = tensorDesc("w", [8, 3, 3, cin]);
    conv2dForward({ x, weight, y: tensorDesc("y", [1, h, h, 8]) }, {
      kernelSize: 3,
      stride: 1,
      padding: 1,
    }, policy);
  };
  conv(4, 8);
  chooseBatchNormVariant(tensorDesc("x", [1, 8, 8, 8]), policy);
  assert.equal(
    policy.describe(),
    "cpu family (the adapter's): conv2d blocked_texture, batchnorm serial_texture",
  );
  conv(16, 4100); // past 8192² texels: blocked_texture passes it to blocked
  assert.equal(
    policy.describe(),
    "cpu family (the adapter's): conv2d blocked_texture x1 / blocked x1, batchnorm serial_texture",
  );
  assert.match(
    KernelPolicy.forAdapter({ isFallbackAdapter: true }, "gpu").describe(),
    /^gpu family \(forced by --kernels\)$/,
  );
  assert.match(
    KernelPolicy.restoring({ family: "cpu", choices: {} }).describe(),
    /^cpu family \(as the checkpoint stored them\)$/,
  );
});

Deno.test("policy: the runnable variants, in the order of the family's rule", () => {
  const three = { op: "conv2d", key: "k", variants: ["tiled", "blocked", "other"] };
  assert.deepEqual(new KernelPolicy({ family: "cpu" }).runnable(three), [
    "blocked",
    "tiled",
    "other",
  ]);
  assert.deepEqual(
    new KernelPolicy({ family: "gpu" }).runnable({ ...three, unsupported: { tiled: "no" } }),
    ["blocked", "other"],
  );
});

Deno.test("policy: the header line names a tuned policy and one taken from the tune's cache", () => {
  const tuned = new KernelPolicy({ family: "cpu", source: "tuned", pinned: { a: "tiled" } });
  tuned.choose(request("a"));
  assert.equal(tuned.describe(), "cpu family (tuned on this adapter): conv2d tiled");
  assert.equal(
    new KernelPolicy({ family: "gpu", source: "tune cache" }).describe(),
    "gpu family (tuned on this adapter, from the cache)",
  );
});

/** A policy that keeps every request it answers. */
class Recorder extends KernelPolicy {
  readonly requests: VariantRequest<string>[] = [];
  override choose<V extends string>(request: VariantRequest<V>): V {
    this.requests.push(request as unknown as VariantRequest<string>);
    return super.choose(request);
  }
}

/** Each variant's calls from the request's plan, and from the op run with the variant forced. */
function plannedAndForced(
  op: string,
  variants: readonly string[],
  pass: (policy: KernelPolicy) => Call[],
) {
  // A device with subgroups, so that every variant can be planned.
  const recorder = new Recorder({ family: "cpu", subgroups: true });
  pass(recorder);
  assert.equal(recorder.requests.length, 1);
  const { plan } = recorder.requests[0];
  assert.ok(plan, "the request can build its calls in another variant");
  return variants.map((variant) => ({
    planned: plan(variant),
    forced: pass(KernelPolicy.forcing(op, variant, "cpu", true)),
  }));
}

Deno.test("policy: conv2d's and batch norm's requests build each variant's calls", () => {
  const config = { kernelSize: 3, stride: 1, padding: 1 } as const;
  const x = tensorDesc("x", [2, 8, 8, 8]);
  const weight = tensorDesc("w", [8, 3, 3, 8]);
  const y = tensorDesc("y", [2, 8, 8, 8]);
  const convPasses = [
    (policy: KernelPolicy) => conv2dForward({ x, weight, y }, config, policy),
    (policy: KernelPolicy) =>
      conv2dBackward(
        { x, weight, dy: y, dx: tensorDesc("dx", x.shape), dweight: weight },
        config,
        policy,
      ),
  ];
  const channels = () => tensorDesc("c", [8]);
  const params = {
    gamma: channels(),
    beta: channels(),
    runningMean: channels(),
    runningVar: channels(),
    numBatchesTracked: tensorDesc("n", [1], "u32"),
  };
  const saved = { mean: channels(), invStd: channels() };
  const activation = { activation: "relu" } as const;
  const bnPasses = [
    (policy: KernelPolicy) => batchNormTrainForward({ x, y, params, saved }, activation, policy),
    (policy: KernelPolicy) => batchNormEvalForward({ x, y, params }, activation, policy),
    (policy: KernelPolicy) =>
      batchNormBackward(
        {
          x,
          y,
          dy: y,
          dx: tensorDesc("dx", x.shape),
          dgamma: channels(),
          dbeta: channels(),
          params,
          saved,
        },
        activation,
        policy,
      ),
  ];
  for (
    const [op, variants, passes] of [
      ["conv2d", CONV2D_VARIANTS, convPasses],
      ["batchnorm", BATCH_NORM_VARIANTS, bnPasses],
    ] as const
  ) {
    for (const pass of passes) {
      const calls = plannedAndForced(op, variants, pass);
      for (const { planned, forced } of calls) {
        // Equal but for the identity of scratch tensors made per build.
        assert.equal(JSON.stringify(planned), JSON.stringify(forced));
      }
      const distinct = new Set(calls.map(({ planned }) => JSON.stringify(planned)));
      assert.equal(distinct.size, variants.length, `${op}: every variant builds its own calls`);
    }
  }
});

Deno.test("policy: conv2d takes blocked_texture_subgroup only on a device with subgroups", () => {
  const x = tensorDesc("x", [2, 8, 8, 16]);
  const weight = tensorDesc("w", [16, 3, 3, 16]);
  const y = tensorDesc("y", [2, 8, 8, 16]);
  const config = { kernelSize: 3, stride: 1, padding: 1 } as const;
  const kernelsOf = (calls: Call[]) =>
    calls.flatMap((call) => "kernel" in call ? [call.kernel.name] : []);
  const software = KernelPolicy.forAdapter({ isFallbackAdapter: true, subgroups: true });
  assert.equal(software.subgroups, true);
  assert.ok(
    kernelsOf(conv2dForward({ x, weight, y }, config, software)).includes(
      "conv2d_texture_subgroup",
    ),
  );
  assert.match(software.describe(), /conv2d blocked_texture_subgroup$/);
  // Without subgroups (Deno's lavapipe), the rule's next variant; forced or pinned, one line.
  const without = KernelPolicy.forAdapter({ isFallbackAdapter: true });
  assert.ok(
    kernelsOf(conv2dForward({ x, weight, y }, config, without)).includes(
      "conv2d_texture",
    ),
  );
  assert.throws(
    () =>
      conv2dForward(
        { x, weight, y },
        config,
        KernelPolicy.forcing("conv2d", "blocked_texture_subgroup"),
      ),
    (error) =>
      error instanceof KernelPolicyError &&
      /forced blocked_texture_subgroup variant needs subgroups .* which this device lacks$/.test(
        error.message,
      ),
  );
  const stored = software.choices();
  assert.throws(
    () => conv2dForward({ x, weight, y }, config, KernelPolicy.restoring(stored)),
    /pinned blocked_texture_subgroup variant needs subgroups/,
  );
  const resumed = KernelPolicy.restoring(stored, { subgroups: true });
  conv2dForward({ x, weight, y }, config, resumed);
  assert.deepEqual(resumed.choices(), stored);
  // A GPU with subgroups keeps its own rule (the subgroup kernel is the CPU family's).
  const gpu = KernelPolicy.forAdapter({ isFallbackAdapter: false, subgroups: true });
  assert.ok(kernelsOf(conv2dForward({ x, weight, y }, config, gpu)).includes("conv2d_tiled"));
});
