/**
 * conv2d in a browser: headless Chromium (WebGPU on SwiftShader where there is no GPU, 4-lane
 * subgroups) runs the browser bundle's convolutions, ResNet-18 width 1/4's 3x3 layers at batch 32,
 * in turns per variant: blocked (storage buffers), blocked_texture and, where the adapter has
 * subgroups, blocked_texture_subgroup (weight rows loaded once per 4 lanes, shared by broadcasts).
 * Each pass (forward; backward: input and weight gradients) is materialized once, submitted R
 * times and waited for once, after one untimed submit; GFLOP/s = 2·N·OH·OW·Cout·K·K·Cin per pass
 * (backward counts two) over the wall-clock mean. Then the whole training step of ResNet-18 width
 * 1/4 (forward, loss, backward) at the same batch with each texture variant, timed the same way.
 *
 *   deno run -A bench/browser_conv2d.ts [--rounds N] [--batch N] [--reps R]
 *
 * Needs /usr/bin/chromium (tools/setup.sh installs it) and playwright-core (deno.json).
 */
import { parseArgs } from "node:util";
import { serveBundlePage } from "../tests/browser/bundle_page.ts";
import { launchChromium } from "../tests/browser/chromium.ts";
import { formatTable } from "./timing.ts";

const PAGE = `<!doctype html>
<meta charset="utf-8">
<script type="module">
import * as lib from "/webgpu-resnet.js";
const gpu = await lib.requestGpu();
window.adapter = { name: gpu.adapterName, subgroups: gpu.subgroups };
async function time(commands, reps) {
  lib.submitCommands(gpu, commands);
  await gpu.device.queue.onSubmittedWorkDone();
  const start = performance.now();
  for (let i = 0; i < reps; i++) lib.submitCommands(gpu, commands);
  await gpu.device.queue.onSubmittedWorkDone();
  return (performance.now() - start) / reps;
}
window.timeConv = async ({ variant, n, size, cin, cout, reps }) => {
  const config = { kernelSize: 3, stride: 1, padding: 1 };
  const random = (count) => Float32Array.from({ length: count }, () => Math.random() - 0.5);
  const shape = [n, size, size, cin];
  const t = {
    x: lib.tensorFromData(gpu, "x", shape, random(n * size * size * cin)),
    weight: lib.tensorFromData(gpu, "weight", [cout, 3, 3, cin], random(cout * 9 * cin)),
    y: lib.createTensor(gpu, "y", [n, size, size, cout]),
    dy: lib.tensorFromData(gpu, "dy", [n, size, size, cout], random(n * size * size * cout)),
    dx: lib.createTensor(gpu, "dx", shape),
    dweight: lib.createTensor(gpu, "dweight", [cout, 3, 3, cin]),
  };
  const policy = lib.KernelPolicy.forcing("conv2d", variant, "cpu", gpu.subgroups);
  const forward = await lib.materialize(gpu, lib.conv2dForward(t, config, policy), { label: "f" });
  const backward = await lib.materialize(gpu, lib.conv2dBackward(t, config, policy), { label: "b" });
  const result = { forward: await time(forward.commands, reps), backward: await time(backward.commands, reps) };
  forward.destroy();
  backward.destroy();
  for (const tensor of Object.values(t)) tensor.buffer.destroy();
  const error = gpu.takeUncapturedError();
  if (error) throw new Error(error.message);
  return result;
};
window.timeStep = async ({ variant, width, n, reps }) => {
  const config = lib.resnetConfig("resnet18", width);
  const weights = new lib.ModelWeights(gpu, config);
  weights.initialize(1);
  const images = Float32Array.from({ length: n * 32 * 32 * 3 }, () => Math.random() - 0.5);
  const labels = Uint32Array.from({ length: n }, (_, i) => i % config.classes);
  const policy = lib.KernelPolicy.forcing("conv2d", variant, "cpu", gpu.subgroups);
  const plan = await lib.StepPlan.build(gpu, weights, "train", {
    input: lib.tensorFromData(gpu, "input", [n, 32, 32, 3], images),
    labels: lib.tensorFromData(gpu, "labels", [n], labels),
    metrics: lib.createMetrics(gpu),
    logits: lib.createTensor(gpu, "logits", [n, config.classes]),
  }, policy);
  const ms = await time(plan.commands, reps);
  const error = gpu.takeUncapturedError();
  if (error) throw new Error(error.message);
  return ms;
};
window.ready = true;
</script>`;

const SHAPES = [
  { size: 32, channels: 16 },
  { size: 16, channels: 32 },
  { size: 8, channels: 64 },
  { size: 4, channels: 128 },
];

async function main() {
  const { values } = parseArgs({
    options: {
      rounds: { type: "string", default: "2" },
      batch: { type: "string", default: "32" },
      reps: { type: "string", default: "3" },
    },
  });
  const rounds = Number(values.rounds);
  const n = Number(values.batch);
  const reps = Number(values.reps);
  const server = await serveBundlePage(PAGE);
  const browser = await launchChromium();
  try {
    const { page } = await browser.newPage();
    await page.goto(server.address);
    await page.waitForFunction(() => (globalThis as { ready?: boolean }).ready === true);
    const adapter = await page.evaluate(() =>
      (globalThis as unknown as { adapter: { name: string; subgroups: boolean } }).adapter
    );
    console.log(`browser adapter: ${adapter.name}, subgroups: ${adapter.subgroups}`);
    const variants = [
      "blocked",
      "blocked_texture",
      ...adapter.subgroups ? ["blocked_texture_subgroup"] : [],
    ];
    const rows: string[][] = [];
    for (const { size, channels } of SHAPES) {
      const flops = 2 * n * size * size * channels * 9 * channels;
      for (let round = 0; round < rounds; round++) {
        for (const variant of variants) {
          const ms = await page.evaluate(
            (args) =>
              (globalThis as unknown as {
                timeConv(a: unknown): Promise<{ forward: number; backward: number }>;
              }).timeConv(args),
            { variant, n, size, cin: channels, cout: channels, reps },
          );
          rows.push([
            `${size}x${size}x${channels}->${channels}`,
            variant,
            String(round + 1),
            (flops / ms.forward / 1e6).toFixed(1),
            (2 * flops / ms.backward / 1e6).toFixed(1),
          ]);
        }
      }
    }
    console.log(
      formatTable(["layer", "variant", "round", "forward GFLOP/s", "backward GFLOP/s"], rows),
    );
    // The whole training step (forward, loss, backward; no optimizer) with each conv variant.
    const stepRows: string[][] = [];
    for (let round = 0; round < rounds; round++) {
      for (const variant of variants.slice(1)) {
        const ms = await page.evaluate(
          (args) =>
            (globalThis as unknown as { timeStep(a: unknown): Promise<number> }).timeStep(args),
          { variant, width: 0.25, n, reps },
        );
        stepRows.push([variant, String(round + 1), ms.toFixed(0), (n / ms * 1000).toFixed(1)]);
      }
    }
    console.log(`\nResNet-18 width 1/4, batch ${n}, training step without the optimizer:`);
    console.log(formatTable(["conv2d variant", "round", "ms", "images/s"], stepRows));
  } finally {
    await browser.close();
    await server.close();
  }
}

if (import.meta.main) await main();
