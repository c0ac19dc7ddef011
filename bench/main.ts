/**
 * `deno task bench`: every microbenchmark and the whole-network throughput on this machine's
 * adapter, printed as tables (GFLOP/s for convolutions, GB/s for memory-bound kernels, images/s
 * and GPU memory for training). `--quick` runs small sizes as a smoke test; `--only NAME` runs
 * one section (conv2d, batchnorm, small, optimizer, input, plan, training, cpu-probe);
 * `--json FILE` also writes the rows; `--kernels cpu|gpu` runs the whole-network section with that
 * kernel family (default: the adapter's; the microbenchmarks time every variant anyway);
 * `--kernels tune` tunes the model at the quick or default size (`--width`, 1/4) first
 * (src/plan/autotune.ts), other models' call sites take the rules. `--model NAME` (default
 * resnet18; any the train command's --model takes, resnet9 included) is the network of the
 * training section, the profile and that tuning; `--width W` runs the training section at that
 * width only; `--batch-size N` sets their batch (default: the model's, 128 for a ResNet and 512
 * for ResNet-9; `--quick` 32). `--profile` times every kernel call of one training step instead
 * (bench/step_profile.ts; sections only where `--only` names them): the model at `--width`
 * (default 1); `--profile-calls` adds a row per call. `--precision f16` runs the training section
 * and the profile with f16 activations and loss scaling (an adapter without `shader-f16` is
 * refused with one line).
 */
import { parseArgs } from "node:util";
import { describeAdapter } from "../src/cli/describe.ts";
import { requestGpu } from "../src/gpu/deno_device.ts";
import { STDERR } from "../src/cli/terminal.ts";
import { modelConfig, type ModelName, modelNames } from "../src/model/config.ts";
import { kernelPolicyFor } from "../src/plan/autotune.ts";
import { writeFileAtomic } from "../src/io/atomic.ts";
import { runCli } from "../src/cli/run.ts";
import { UsageError } from "../src/errors.ts";
import { formatBytes } from "../src/util/format.ts";
import { benchBatchNorm, formatBatchNormRows } from "./batchnorm.ts";
import { benchConv2d, formatConv2dRows } from "./conv2d.ts";
import { benchCpuProbe, formatCpuProbeRows } from "./cpu_probe.ts";
import { benchInputBatch } from "./input_batch.ts";
import {
  benchEma,
  benchLossScaling,
  benchOptimizer,
  type OptimizerBenchOptions,
} from "./optimizer.ts";
import { benchPlanBuild, planBuildTable } from "./plan_build.ts";
import { benchSmallOps, formatSmallOpRows } from "./small_ops.ts";
import { formatProfile, profileTrainingStep } from "./step_profile.ts";
import { formatTable } from "./timing.ts";
import {
  benchRecipe,
  benchTrainingStep,
  describeOptimizer,
  trainingStepTable,
} from "./training_step.ts";

const SECTIONS = [
  "conv2d",
  "batchnorm",
  "small",
  "optimizer",
  "input",
  "plan",
  "training",
  "cpu-probe",
] as const;

/** `parse()`, with parseArgs's complaints (an unknown flag, a missing value) as usage errors. */
function usageErrors<R>(parse: () => R): R {
  try {
    return parse();
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (typeof code === "string" && code.startsWith("ERR_PARSE_ARGS")) {
      throw new UsageError(`${(error as Error).message} (flags: see bench/main.ts)`);
    }
    throw error;
  }
}

await runCli(async () => {
  const { values } = usageErrors(() =>
    parseArgs({
      args: Deno.args,
      options: {
        quick: { type: "boolean", default: false },
        only: { type: "string", multiple: true },
        json: { type: "string" },
        kernels: { type: "string", default: "auto" },
        profile: { type: "boolean", default: false },
        "profile-calls": { type: "boolean", default: false },
        width: { type: "string" },
        model: { type: "string", default: "resnet18" },
        "batch-size": { type: "string" },
        precision: { type: "string", default: "f32" },
      },
    })
  );
  const only = values.only ?? (values.profile ? [] : [...SECTIONS]);
  for (const name of only) {
    if (!(SECTIONS as readonly string[]).includes(name)) {
      throw new UsageError(`--only ${name}: not a section; use one of ${SECTIONS.join(", ")}`);
    }
  }
  const width = values.width === undefined ? undefined : Number(values.width);
  if (width !== undefined && !(width > 0)) {
    throw new UsageError(`--width ${values.width}: use a positive number, e.g. 0.25`);
  }
  const model = values.model as ModelName;
  if (!(modelNames as readonly string[]).includes(model)) {
    throw new UsageError(`--model ${model}: not a model; use one of ${modelNames.join(", ")}`);
  }
  const batchText = values["batch-size"];
  const batchSize = batchText === undefined ? undefined : Number(batchText);
  if (batchSize !== undefined && !(/^[0-9]+$/.test(batchText!) && batchSize > 0)) {
    throw new UsageError(`--batch-size ${batchText}: use a positive integer, e.g. 128`);
  }
  const kernels = values.kernels;
  if (kernels !== "auto" && kernels !== "cpu" && kernels !== "gpu" && kernels !== "tune") {
    throw new UsageError(`--kernels ${kernels}: use auto, cpu, gpu or tune`);
  }
  const precision = values.precision;
  if (precision !== "f32" && precision !== "f16") {
    throw new UsageError(`--precision ${precision}: use f32 or f16`);
  }
  const quick = values.quick;
  // The adapter's largest buffers, as the train command asks: ResNet-9's first layer at its batch
  // of 512 binds 256 MiB, over WebGPU's default 128 MiB.
  const gpu = await requestGpu({ largestBuffers: true });
  console.log(`adapter: ${describeAdapter(gpu)}`);
  const recipe = benchRecipe(model);
  const batch = batchSize ?? (quick ? 32 : recipe.batchSize);
  const policy = await kernelPolicyFor(
    gpu,
    kernels,
    {
      model: modelConfig(model, quick ? 0.125 : width ?? 0.25),
      passes: [{ mode: "train", batchSize: batch }, { mode: "eval", batchSize: batch }],
    },
    console.log,
    STDERR,
  );
  const results: Record<string, unknown> = { adapter: gpu.adapterName, quick };

  if (only.includes("conv2d")) {
    const batch = quick ? 4 : 128;
    const rows = await benchConv2d(gpu, { batch, seconds: quick ? 0.05 : 1 });
    console.log(
      `\nconv2d, batch ${batch}, GFLOP/s (matmul: a tuned WGSL matrix product of the same FLOPs)`,
    );
    console.log(formatConv2dRows(rows));
    results.conv2d = rows;
  }
  if (only.includes("batchnorm")) {
    const rows = await benchBatchNorm(gpu, { quick });
    console.log("\nbatch norm, batch 128, GB/s beside a plain copy of the same bytes");
    console.log(formatBatchNormRows(rows));
    results.batchnorm = rows;
  }
  if (only.includes("small")) {
    const rows = await benchSmallOps(gpu, { minMs: quick ? 100 : 500 });
    console.log(
      "\nsmall ops at ResNet-18's shapes, batch 128, GB/s of the bytes each reads and writes",
    );
    console.log(formatSmallOpRows(rows));
    results.small = rows;
  }
  if (only.includes("optimizer")) {
    const settings: OptimizerBenchOptions = {
      minSeconds: quick ? 0.1 : 1,
      configs: [{ kind: "adam", lr: 1e-3 }, {
        kind: "sgd",
        lr: 0.1,
        momentum: 0.9,
        nesterov: true,
        weightDecay: 5e-4,
      }],
    };
    const rows = await benchOptimizer(gpu, settings);
    console.log("\noptimizer step over ResNet-18's 11,173,962 parameters");
    console.log(formatTable(
      ["optimizer", "ms", "GB/s"],
      rows.map((row) => [row.optimizer, row.ms.toFixed(2), row.gbPerSecond.toFixed(1)]),
    ));
    results.optimizer = rows;
    const lossScaling = await benchLossScaling(gpu, settings);
    console.log(
      "\ndynamic loss scaling (f16 training) over the same parameters: each kernel submitted " +
        "alone, then the three in one submit; the bytes each reads and writes, and their GB/s",
    );
    console.log(formatTable(
      ["kernel", "bytes", "ms", "GB/s"],
      lossScaling.map((row) => [
        row.name,
        formatBytes(row.bytesPerCall),
        row.ms.toFixed(2),
        row.gbPerSecond.toFixed(1),
      ]),
    ));
    results.lossScaling = lossScaling;
    const ema = await benchEma(gpu, { minSeconds: quick ? 0.1 : 1 });
    console.log(
      `\nweight average (--ema) over ResNet-9's ${ema.parameters.toLocaleString("en-US")} ` +
        `parameters: ${ema.ms.toFixed(2)} ms, ${ema.gbPerSecond.toFixed(1)} GB/s`,
    );
    results.ema = ema;
  }
  if (only.includes("input")) {
    const rows = await benchInputBatch(gpu, { batches: quick ? 5 : 50 });
    console.log("\ninput pipeline: gather + normalise (+ augment) a batch of 128 on the GPU");
    console.log(formatTable(
      ["batch", "ms", "images/s"],
      rows.map((row) => [row.name, row.msPerBatch.toFixed(2), Math.round(row.imagesPerSecond)]),
    ));
    results.input = rows;
  }
  if (only.includes("plan")) {
    const rows = await benchPlanBuild(
      gpu,
      quick
        ? { models: [{ preset: "resnet18", width: 0.125 }], batchSize: 32, policy }
        : { policy },
    );
    console.log(
      "\nplan build: kernel calls planned and allocated, then materialised (cold pipelines)",
    );
    console.log(`kernels: ${policy.describe()}`);
    console.log(planBuildTable(rows));
    results.plan = rows;
  }
  if (only.includes("training")) {
    const rows = await benchTrainingStep(
      gpu,
      quick
        ? {
          models: [{ model, width: width ?? 0.125 }],
          batchSize: batch,
          minMs: 200,
          policy,
          precision,
        }
        : {
          models: (width === undefined ? [0.25, 1] : [width]).map((w) => ({ model, width: w })),
          batchSize: batch,
          policy,
          precision,
        },
    );
    console.log(
      `\nwhole-network training step with ${
        describeOptimizer(recipe.optimizer)
      }, and evaluation, synthetic data`,
    );
    console.log(`kernels: ${policy.describe()}`);
    console.log(trainingStepTable(rows));
    results.training = rows;
  }
  if (values.profile) {
    const profile = await profileTrainingStep(
      gpu,
      quick
        ? { model, width: width ?? 0.125, batchSize: batch, precision, repeats: 2, policy }
        : { model, width: width ?? 1, batchSize: batch, precision, policy },
    );
    console.log(`\n${formatProfile(profile, { calls: values["profile-calls"] })}`);
    results.profile = profile;
  }
  if (only.includes("cpu-probe")) {
    const rows = await benchCpuProbe(gpu, { quick });
    console.log(
      "\nload probes: GB/s each load form delivers to the invocations, beside the FMA peak",
    );
    console.log(formatCpuProbeRows(rows));
    results.cpuProbe = rows;
  }
  if (values.json) await writeFileAtomic(values.json, JSON.stringify(results, null, 2));
});
