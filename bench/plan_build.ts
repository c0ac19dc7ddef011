/**
 * What building a plan costs, split into its two halves: planning (the network's kernel calls and
 * their allocation, pure TypeScript) and materialising (buffers, every pipeline compiled at once
 * through the async API, one bind group per call). Pipelines are compiled cold: each build gets a
 * pipeline cache of its own. This is the wait before a run's first step.
 *
 *   deno run --allow-env bench/plan_build.ts
 */
import type { Gpu } from "../src/gpu/device.ts";
import { requestGpu } from "../src/gpu/deno_device.ts";
import { PipelineCache } from "../src/gpu/pipeline.ts";
import { createTensor } from "../src/gpu/tensor.ts";
import { type PresetName, resnetConfig } from "../src/model/config.ts";
import { ModelWeights } from "../src/model/weights.ts";
import { KernelPolicy } from "../src/ops/policy.ts";
import { createMetrics } from "../src/ops/softmax_cross_entropy.ts";
import { allocate } from "../src/plan/allocator.ts";
import { materialize } from "../src/plan/materialize.ts";
import { buildNetworkProgram, type Mode } from "../src/plan/network.ts";
import { formatTable } from "./timing.ts";

export interface PlanBuildRow {
  model: string;
  mode: Mode;
  calls: number;
  pipelines: number;
  /** Building the program and allocating it, milliseconds. */
  planMs: number;
  /** Creating buffers, pipelines and bind groups, milliseconds. */
  materializeMs: number;
}

export async function benchPlanBuild(
  gpu: Gpu,
  options: {
    models?: { preset: PresetName; width: number }[];
    batchSize?: number;
    policy?: KernelPolicy;
  } = {},
): Promise<PlanBuildRow[]> {
  const {
    models = [{ preset: "resnet18", width: 0.25 }, { preset: "resnet50", width: 0.25 }],
    batchSize = 128,
    policy = KernelPolicy.forAdapter(gpu),
  } = options;
  const rows: PlanBuildRow[] = [];
  for (const { preset, width } of models) {
    const weights = new ModelWeights(gpu, resnetConfig(preset, width));
    const io = {
      input: createTensor(gpu, "input", [batchSize, 32, 32, 3]),
      labels: createTensor(gpu, "labels", [batchSize], "u32"),
      metrics: createMetrics(gpu),
      confusion: createTensor(gpu, "confusion", [10, 10], "u32"),
    };
    for (const mode of ["train", "eval"] as const) {
      const start = performance.now();
      const program = buildNetworkProgram(weights, mode, io, policy);
      allocate(program.calls);
      const planned = performance.now();
      const cold = {
        ...gpu,
        pipelines: new PipelineCache(gpu.device, { subgroupDirective: false }),
      };
      const materialized = await materialize(cold, program.calls, { label: mode });
      const done = performance.now();
      rows.push({
        model: `${preset} width ${width}`,
        mode,
        calls: program.calls.length,
        pipelines: cold.pipelines.size,
        planMs: planned - start,
        materializeMs: done - planned,
      });
      materialized.destroy();
    }
    weights.destroy();
    for (const tensor of Object.values(io)) tensor.buffer.destroy();
  }
  return rows;
}

export function planBuildTable(rows: PlanBuildRow[]): string {
  return formatTable(
    ["model", "mode", "calls", "pipelines", "plan ms", "materialize ms"],
    rows.map((row) => [
      row.model,
      row.mode,
      row.calls,
      row.pipelines,
      row.planMs.toFixed(1),
      row.materializeMs.toFixed(0),
    ]),
  );
}

if (import.meta.main) {
  const gpu = await requestGpu();
  console.log(`adapter: ${gpu.adapterName}`);
  console.log(planBuildTable(await benchPlanBuild(gpu)));
}
