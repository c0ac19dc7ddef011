/**
 * The kernel autotune: which call sites it times and how it groups their passes, the choice of
 * the fastest from injected measurements, the per-adapter cache (hit, miss, a key added, kernels
 * changed, corrupt, unwritable), the pins kept through a checkpoint's choices, and one real tune
 * on this adapter whose training step is bit-identical to the same variants pinned by hand.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { readBuffer } from "../../src/gpu/buffer.ts";
import { submitCommands } from "../../src/gpu/dispatch.ts";
import { kernelCall, write } from "../../src/gpu/kernel_call.ts";
import { tensorDesc } from "../../src/gpu/tensor.ts";
import { buildArchitecture } from "../../src/model/architecture.ts";
import type { ResNetConfig } from "../../src/model/config.ts";
import { ModelWeights, WeightLayout, WeightViews } from "../../src/model/weights.ts";
import { KernelPolicy } from "../../src/ops/policy.ts";
import { createMetrics } from "../../src/ops/softmax_cross_entropy.ts";
import {
  adapterCacheKey,
  type BuildCalls,
  gpuTimer,
  kernelCachePath,
  kernelSourcesHash,
  type Measure,
  measureSites,
  networkCalls,
  type TunableSite,
  tunableSites,
  tuneKernels,
} from "../../src/plan/autotune.ts";
import { StepPlan } from "../../src/plan/plan.ts";
import { kernels } from "../../src/shaders.ts";
import { f32Tensor, gpuTest, u32Tensor } from "../support/gpu.ts";
import { needs } from "../support/permissions.ts";
import { f32Array, Random } from "../support/reference/random.ts";

const TINY: ResNetConfig = {
  block: "basic",
  blocksPerStage: [1, 1, 1, 1],
  widthMultiplier: 1 / 16,
  classes: 10,
};

/** A model's tensors over buffers that only have a size: building programs touches no GPU. */
function standInWeights(config: ResNetConfig): WeightViews {
  const architecture = buildArchitecture(config);
  const sizes = new WeightLayout(architecture).sizes;
  const buffer = (label: string, size: number) => ({ label, size }) as unknown as GPUBuffer;
  return new WeightViews(architecture, {
    params: buffer("params", sizes.params),
    grads: buffer("grads", sizes.grads),
    state: buffer("state", sizes.state),
    counters: buffer("counters", sizes.counters),
  });
}

/** A call site of `op` under `key` that writes one tensor, in any of `variants`. */
function site(
  policy: KernelPolicy,
  key: string,
  options: { op?: string; variants?: string[]; unsupported?: Record<string, string> } = {},
  planned = true,
): void {
  const y = tensorDesc(`${key} y`, [4]);
  policy.choose({
    op: options.op ?? "conv2d",
    key,
    variants: options.variants ?? ["blocked", "tiled"],
    unsupported: options.unsupported,
    plan: planned
      ? (variant) => [kernelCall({
        label: variant,
        kernel: kernels.add,
        entryPoint: "forward",
        workgroupSize: 1,
        grid: [1],
        bindings: [write(y)],
      })]
      : undefined,
  });
}

/** A Measure from a table of milliseconds per "key variant"; it counts its calls. */
function fakeTimes(ms: Record<string, number>): Measure & { calls: string[] } {
  const calls: string[] = [];
  const measure = (s: TunableSite, variant: string) => {
    calls.push(`${s.key} ${variant}`);
    const time = ms[`${s.key} ${variant}`];
    if (time === undefined) throw new Error(`no time for ${s.key} ${variant}`);
    return Promise.resolve(time);
  };
  return Object.assign(measure, { calls });
}

const ADAPTER = {
  adapterName: "test adapter",
  backend: "Vulkan",
  isFallbackAdapter: false,
  subgroups: false,
} as const;

/** Runs `fn` with a cache path in a new temporary folder, removed afterwards. */
async function withTempCache(fn: (cachePath: string, folder: string) => Promise<void>) {
  const folder = await Deno.makeTempDir({ prefix: "kernel_cache_" });
  try {
    await fn(join(folder, "webgpu-resnet", "kernels.json"), folder);
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
}

Deno.test("tunable sites: one per key with several runnable variants and a plan for each pass", () => {
  const sites = tunableSites("gpu", (policy) => {
    site(policy, "a");
    site(policy, "a"); // the same pass again (another layer of the shape)
    site(policy, "single", { unsupported: { blocked: "too small" } });
    site(policy, "unplanned", {}, false);
    site(policy, "b", { op: "batchnorm", variants: ["serial", "tree"] });
  });
  assert.deepEqual(sites.map((s) => [s.op, s.key, s.variants]), [
    ["conv2d", "a", ["tiled", "blocked"]], // the gpu family's preference first
    ["batchnorm", "b", ["tree", "serial"]],
  ]);
  assert.deepEqual(sites[0].passes.map((pass) => pass.count), [2]);
});

Deno.test("tunable sites of a ResNet: a key's passes are its forward and backward, counted", () => {
  const sites = tunableSites(
    "cpu",
    networkCalls(standInWeights({ ...TINY, blocksPerStage: [2, 1, 1, 1] }), [
      { mode: "train", batchSize: 8 },
      { mode: "eval", batchSize: 8 },
    ]),
  );
  const passes = (key: string) =>
    sites.find((s) => s.key === key)!.passes.map((pass) => pass.count).sort();
  // The stem: forward in training and in evaluation (the same calls), backward without dx.
  assert.deepEqual(passes("conv2d [8,32,32,3]->4 k3 s1 p1"), [1, 2]);
  // Stage 1's four 3x3 convs: forward in training and evaluation, backward with dx.
  assert.deepEqual(passes("conv2d [8,32,32,4]->4 k3 s1 p1"), [4, 8]);
  for (const s of sites) assert.ok(s.variants.length > 1, s.key);
  assert.equal(new Set(sites.map((s) => s.key)).size, sites.length);
});

Deno.test("measuring: the fastest variant wins, unless within 10% of the preferred", async () => {
  const sites = tunableSites("cpu", (policy) => {
    site(policy, "a");
    site(policy, "b");
    site(policy, "c");
  });
  const toBeat: (number | undefined)[] = [];
  const progress: string[] = [];
  const ms: Record<string, number> = {
    "a blocked": 5,
    "a tiled": 3,
    "b blocked": 100,
    "b tiled": 91, // noise
    "c blocked": 100,
    "c tiled": 89,
  };
  const results = await measureSites(
    sites,
    (s, variant, best) => {
      toBeat.push(best);
      return Promise.resolve(ms[`${s.key} ${variant}`]);
    },
    (done, total) => progress.push(`${done}/${total}`),
  );
  assert.deepEqual(results.map((r) => [r.key, r.variant]), [
    ["a", "tiled"],
    ["b", "blocked"],
    ["c", "tiled"],
  ]);
  assert.deepEqual(results[0].ms, { blocked: 5, tiled: 3 });
  assert.deepEqual(toBeat, [undefined, 5, undefined, 100, undefined, 100]);
  assert.deepEqual(progress, ["0/3", "1/3", "2/3", "3/3"]);
});

/** Runs `fn` with XDG_CACHE_HOME set to a new temporary folder; gives it the cache's path. */
function withCacheHome(fn: (cachePath: string) => Promise<void>): Promise<void> {
  return withTempCache(async (cachePath, folder) => {
    const saved = Deno.env.get("XDG_CACHE_HOME");
    Deno.env.set("XDG_CACHE_HOME", folder);
    try {
      await fn(cachePath);
    } finally {
      if (saved === undefined) Deno.env.delete("XDG_CACHE_HOME");
      else Deno.env.set("XDG_CACHE_HOME", saved);
    }
  });
}

Deno.test(
  "tune: measured choices are pinned over the rules, then cached per adapter",
  needs("read", "write", "env"),
  () =>
    withCacheHome(async (cachePath) => {
      const build: BuildCalls = (policy) => {
        site(policy, "a");
        site(policy, "b");
      };
      const measure = fakeTimes({ "a blocked": 5, "a tiled": 3, "b blocked": 1, "b tiled": 2 });
      const lines: string[] = [];
      // No cachePath: the cache is found through XDG_CACHE_HOME.
      const first = await tuneKernels(ADAPTER, build, { measure, log: (l) => lines.push(l) });
      assert.deepEqual(first.choices, { a: "tiled", b: "blocked" });
      assert.equal(first.measured, 2);
      // The rules of the gpu family would answer tiled for b: the measurement decides.
      build(first.policy);
      assert.deepEqual(first.policy.choices(), { family: "gpu", choices: first.choices });
      assert.equal(
        first.policy.describe(),
        "gpu family (tuned on this adapter): conv2d tiled x1 / blocked x1",
      );
      assert.match(
        lines.at(-1)!,
        /^kernel autotune: 2 call sites, 2 timed in \d+\.\d s \(saved to .*kernels\.json\): conv2d tiled x1 \/ blocked x1$/,
      );
      const stored = JSON.parse(await Deno.readTextFile(cachePath));
      assert.deepEqual(stored.adapters[await adapterCacheKey(ADAPTER)], {
        kernels: await kernelSourcesHash(),
        choices: { a: "tiled", b: "blocked" },
      });

      // A hit: nothing is measured.
      const never = fakeTimes({});
      const again = await tuneKernels(ADAPTER, build, { measure: never });
      assert.deepEqual(never.calls, []);
      assert.deepEqual(again.choices, first.choices);
      assert.equal(again.policy.source, "tune cache");
      assert.match(again.summary, /0 timed .*\(from the cache .*\)/);

      // A new key: only it is measured, and it joins the cached ones.
      const more = fakeTimes({ "c blocked": 2, "c tiled": 1 });
      const grown = await tuneKernels(ADAPTER, (policy) => {
        build(policy);
        site(policy, "c");
      }, { measure: more, cachePath });
      assert.deepEqual(more.calls, ["c tiled", "c blocked"]);
      assert.deepEqual(grown.choices, { a: "tiled", b: "blocked", c: "tiled" });
      assert.match(grown.summary, /3 call sites, 1 timed .*\(2 from the cache, saved to/);

      // Another adapter is a miss, and both adapters' entries are kept.
      const other = { ...ADAPTER, adapterName: "other adapter" };
      const otherMeasure = fakeTimes({
        "a blocked": 1,
        "a tiled": 2,
        "b blocked": 1,
        "b tiled": 2,
      });
      await tuneKernels(other, build, { measure: otherMeasure, cachePath });
      assert.equal(otherMeasure.calls.length, 4);
      const both = JSON.parse(await Deno.readTextFile(cachePath));
      assert.equal(Object.keys(both.adapters).length, 2);
    }),
);

Deno.test(
  "tune: choices measured with other kernel sources are measured again",
  needs("read", "write", "env"),
  () =>
    withTempCache(async (cachePath) => {
      const build: BuildCalls = (policy) => site(policy, "a");
      await tuneKernels(ADAPTER, build, {
        measure: fakeTimes({ "a blocked": 2, "a tiled": 1 }),
        cachePath,
      });
      const file = JSON.parse(await Deno.readTextFile(cachePath));
      file.adapters[await adapterCacheKey(ADAPTER)].kernels = "the hash of older kernels";
      await Deno.writeTextFile(cachePath, JSON.stringify(file));
      const measure = fakeTimes({ "a blocked": 1, "a tiled": 2 });
      const tuned = await tuneKernels(ADAPTER, build, { measure, cachePath });
      assert.deepEqual(measure.calls, ["a tiled", "a blocked"]);
      assert.deepEqual(tuned.choices, { a: "blocked" });
      const rewritten = JSON.parse(await Deno.readTextFile(cachePath));
      assert.equal(
        rewritten.adapters[await adapterCacheKey(ADAPTER)].kernels,
        await kernelSourcesHash(),
      );
    }),
);

Deno.test(
  "tune: a corrupt cache is said in one line and tuned over; an unwritable one too",
  needs("read", "write", "env"),
  () =>
    withTempCache(async (cachePath, folder) => {
      const build: BuildCalls = (policy) => site(policy, "a");
      const times = { "a blocked": 2, "a tiled": 1 };
      for (const corrupt of ["{ not json", JSON.stringify({ format: "something else" })]) {
        await Deno.mkdir(join(cachePath, ".."), { recursive: true });
        await Deno.writeTextFile(cachePath, corrupt);
        const lines: string[] = [];
        const tuned = await tuneKernels(ADAPTER, build, {
          measure: fakeTimes(times),
          cachePath,
          log: (line) => lines.push(line),
        });
        assert.deepEqual(tuned.choices, { a: "tiled" });
        assert.equal(
          lines[0],
          `kernel cache ${cachePath} is corrupt (not a webgpu-resnet-kernel-cache/1 file): ignoring ` +
            "it, it is rewritten",
        );
        assert.equal(
          JSON.parse(await Deno.readTextFile(cachePath)).format,
          "webgpu-resnet-kernel-cache/1",
        );
      }

      // A file where the cache's folder should be: the choices stand, the cache is not written.
      const blocked = join(folder, "a file");
      await Deno.writeTextFile(blocked, "");
      const lines: string[] = [];
      const tuned = await tuneKernels(ADAPTER, build, {
        measure: fakeTimes(times),
        cachePath: join(blocked, "kernels.json"),
        log: (line) => lines.push(line),
      });
      assert.deepEqual(tuned.choices, { a: "tiled" });
      assert.ok(
        lines.some((line) => /^kernel autotune: not cached \(cannot .*a file/.test(line)),
        lines.join("\n"),
      );
    }),
);

Deno.test("the cache lives under XDG_CACHE_HOME, else ~/.cache", needs("env"), () => {
  const saved = { xdg: Deno.env.get("XDG_CACHE_HOME"), home: Deno.env.get("HOME") };
  try {
    Deno.env.set("XDG_CACHE_HOME", "/tmp/xdg cache");
    assert.equal(kernelCachePath(), "/tmp/xdg cache/webgpu-resnet/kernels.json");
    Deno.env.delete("XDG_CACHE_HOME");
    Deno.env.set("HOME", "/home/someone");
    assert.equal(kernelCachePath(), "/home/someone/.cache/webgpu-resnet/kernels.json");
    Deno.env.delete("HOME");
    assert.equal(kernelCachePath(), null);
  } finally {
    for (const [name, value] of [["XDG_CACHE_HOME", saved.xdg], ["HOME", saved.home]]) {
      if (value === undefined) Deno.env.delete(name!);
      else Deno.env.set(name!, value);
    }
  }
});

Deno.test(
  "a software adapter's cache key names the CPU and its worker threads; a hardware adapter's does not",
  needs("run"),
  async () => {
    const software = await adapterCacheKey({ ...ADAPTER, isFallbackAdapter: true });
    assert.match(software, /^test adapter \| Vulkan \| .+, (avx512|no avx512)$/);
    const threaded = await adapterCacheKey({ ...ADAPTER, isFallbackAdapter: true, cpuThreads: 4 });
    assert.equal(threaded, `${software} | 4 worker threads`);
    assert.equal(await adapterCacheKey({ ...ADAPTER, cpuThreads: 4 }), "test adapter | Vulkan");
    assert.equal(await adapterCacheKey(ADAPTER), "test adapter | Vulkan");
  },
);

Deno.test("a tuned network's choices, stored as a checkpoint stores them, are restored", async () => {
  const weights = standInWeights(TINY);
  const build = networkCalls(weights, [{ mode: "train", batchSize: 8 }]);
  // Tiled measured faster everywhere: against the cpu family's rules, which prefer blocked.
  const tuned = await tuneKernels({ ...ADAPTER, isFallbackAdapter: true }, build, {
    measure: (_, variant) => Promise.resolve(variant === "tiled" || variant === "tree" ? 1 : 2),
    cachePath: null,
  });
  build(tuned.policy);
  const stored = tuned.policy.choices();
  assert.equal(stored.family, "cpu");
  for (const [key, variant] of Object.entries(tuned.choices)) {
    assert.equal(stored.choices[key], variant);
  }
  assert.ok(
    Object.values(tuned.choices).every((variant) => variant === "tiled" || variant === "tree"),
  );
  const resumed = KernelPolicy.restoring(structuredClone(stored));
  build(resumed);
  assert.deepEqual(resumed.choices(), stored);
});

gpuTest(
  "a real tune of a tiny ResNet: the model is untouched, the step is the pinned variants'",
  async (gpu) => {
    const batch = 2;
    const random = new Random(11);
    const input = f32Array(batch * 32 * 32 * 3, () => random.normal());
    const labels = Array.from({ length: batch }, () => random.integer(10));
    /** One training step's gradients and running statistics under `policy`, from seed 5. */
    const step = async (weights: ModelWeights, policy: KernelPolicy) => {
      const plan = await StepPlan.build(gpu, weights, "train", {
        input: f32Tensor(gpu, "input", [batch, 32, 32, 3], input),
        labels: u32Tensor(gpu, "labels", [batch], labels),
        metrics: createMetrics(gpu),
      }, policy);
      submitCommands(gpu, plan.commands);
      const result = [
        new Uint8Array(await readBuffer(gpu, weights.grads)),
        new Uint8Array(await readBuffer(gpu, weights.state)),
      ];
      plan.destroy();
      return result;
    };
    const snapshot = async (weights: ModelWeights) =>
      await Promise.all(
        [weights.params, weights.grads, weights.state, weights.counters].map(async (buffer) =>
          new Uint8Array(await readBuffer(gpu, buffer))
        ),
      );

    const weights = new ModelWeights(gpu, TINY);
    weights.initialize(5);
    const before = await snapshot(weights);
    const progress: string[] = [];
    const tuned = await tuneKernels(
      gpu,
      networkCalls(weights, [{ mode: "train", batchSize: batch }]),
      {
        measure: gpuTimer(gpu, { repetitions: 1 }),
        cachePath: null,
        progress: (done, total) => progress.push(`${done}/${total}`),
      },
    );
    assert.ok(tuned.measured > 0 && progress.at(-1) === `${tuned.measured}/${tuned.measured}`);
    assert.deepEqual(await snapshot(weights), before, "the tune ran on scratch tensors only");
    const tunedStep = await step(weights, tuned.policy);
    for (const [key, variant] of Object.entries(tuned.choices)) {
      assert.equal(tuned.policy.choices().choices[key], variant, key);
    }

    // The same variants pinned by hand, under the other family's rules: every choice is the pin's.
    const pinnedWeights = new ModelWeights(gpu, TINY);
    pinnedWeights.initialize(5);
    const pinned = new KernelPolicy({
      family: gpu.isFallbackAdapter ? "gpu" : "cpu",
      pinned: tuned.choices,
    });
    const pinnedStep = await step(pinnedWeights, pinned);
    assert.deepEqual(pinnedStep, tunedStep);
    weights.destroy();
    pinnedWeights.destroy();
  },
);
