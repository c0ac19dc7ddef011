/**
 * `deno task bench`: every microbenchmark and the whole-network throughput on this machine's
 * adapter, printed as tables (GFLOP/s for convolutions, GB/s for memory-bound kernels, images/s
 * and GPU memory for training). `--quick` runs small sizes as a smoke test; `--only NAME` runs
 * one section (conv2d, batchnorm, small, optimizer, input, plan, training); `--json FILE` also writes the rows;
 * `--kernels cpu|gpu` runs the whole-network section with that kernel family (default: the
 * adapter's; the microbenchmarks time every variant anyway).
 */
import { parseArgs } from "node:util";
import { describeAdapter } from "../src/cli/describe.ts";
import { requestGpu } from "../src/gpu/device.ts";
import { KernelPolicy } from "../src/ops/policy.ts";
import { writeFileAtomic } from "../src/io/atomic.ts";
import { runCli } from "../src/cli/run.ts";
import { UsageError } from "../src/errors.ts";
import { benchBatchNorm, formatBatchNormRows } from "./batchnorm.ts";
import { benchConv2d, formatConv2dRows } from "./conv2d.ts";
import { benchInputBatch } from "./input_batch.ts";
import { benchOptimizer } from "./optimizer.ts";
import { benchPlanBuild, planBuildTable } from "./plan_build.ts";
import { benchSmallOps, formatSmallOpRows } from "./small_ops.ts";
import { formatTable } from "./timing.ts";
import { benchTrainingStep, trainingStepTable } from "./training_step.ts";

const SECTIONS = [
  "conv2d",
  "batchnorm",
  "small",
  "optimizer",
  "input",
  "plan",
  "training",
] as const;

await runCli(async () => {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean", default: false },
      only: { type: "string", multiple: true },
      json: { type: "string" },
      kernels: { type: "string", default: "auto" },
    },
  });
  const only = values.only ?? [...SECTIONS];
  for (const name of only) {
    if (!(SECTIONS as readonly string[]).includes(name)) {
      throw new UsageError(`--only ${name}: not a section; use one of ${SECTIONS.join(", ")}`);
    }
  }
  const kernels = values.kernels;
  if (kernels !== "auto" && kernels !== "cpu" && kernels !== "gpu") {
    throw new UsageError(`--kernels ${kernels}: use auto, cpu or gpu`);
  }
  const quick = values.quick;
  const gpu = await requestGpu();
  console.log(`adapter: ${describeAdapter(gpu)}`);
  const policy = KernelPolicy.forAdapter(gpu, kernels);
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
    const rows = await benchOptimizer(gpu, {
      minSeconds: quick ? 0.1 : 1,
      configs: [{ kind: "adam", lr: 1e-3 }, {
        kind: "sgd",
        lr: 0.1,
        momentum: 0.9,
        nesterov: true,
        weightDecay: 5e-4,
      }],
    });
    console.log("\noptimizer step over ResNet-18's 11,173,962 parameters");
    console.log(formatTable(
      ["optimizer", "ms", "GB/s"],
      rows.map((row) => [row.optimizer, row.ms.toFixed(2), row.gbPerSecond.toFixed(1)]),
    ));
    results.optimizer = rows;
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
        ? { models: [{ preset: "resnet18", width: 0.125 }], batchSize: 32, minMs: 200, policy }
        : { policy },
    );
    console.log("\nwhole ResNet training step (Adam) and evaluation, synthetic data");
    console.log(`kernels: ${policy.describe()}`);
    console.log(trainingStepTable(rows));
    results.training = rows;
  }
  if (values.json) await writeFileAtomic(values.json, JSON.stringify(results, null, 2));
});
