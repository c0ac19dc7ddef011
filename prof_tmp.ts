import { requestGpu } from "./src/gpu/device.ts";
import { ModelWeights } from "./src/model/weights.ts";
import { createMetrics } from "./src/ops/softmax_cross_entropy.ts";
import { StepPlan } from "./src/plan/plan.ts";
import { f32Tensor, u32Tensor } from "./tests/support/gpu.ts";
import { f32Array, Random } from "./tests/support/reference/random.ts";
import { randomResnetWeights, resnetTrainStep } from "./tests/support/reference/resnet.ts";
const config = {
  block: "basic" as const,
  blocksPerStage: [1, 1, 1, 1] as [number, number, number, number],
  widthMultiplier: 1 / 16,
  classes: 10,
};
const random = new Random(1);
const ref = randomResnetWeights(config, random);
const input = f32Array(3 * 32 * 32 * 3, () => random.normal());
let t = performance.now();
resnetTrainStep(config, ref, input, { n: 3, h: 32, w: 32, c: 3 }, [1, 2, 3]);
console.log("reference", performance.now() - t);
const gpu = await requestGpu();
const weights = new ModelWeights(gpu, config);
weights.initialize(1);
t = performance.now();
const plan = await StepPlan.build(gpu, weights, "train", {
  input: f32Tensor(gpu, "i", [3, 32, 32, 3], input),
  labels: u32Tensor(gpu, "l", [3], [1, 2, 3]),
  metrics: createMetrics(gpu),
});
console.log(
  "plan build",
  performance.now() - t,
  "pipelines",
  gpu.pipelines.size,
  "dispatches",
  plan.dispatches.length,
);
