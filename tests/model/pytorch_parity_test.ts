/**
 * The project held to PyTorch itself (issue: PyTorch parity). tools/pytorch_fixture.py built the
 * book's model at tiny size in PyTorch and recorded one training step; here the fixture's state
 * dict is loaded through the project's checkpoint loader (PyTorch names and OIHW layouts), one
 * training step runs on the GPU, then one Adam step, and everything is compared: logits, loss,
 * every gradient, the running statistics, and the parameters after Adam.
 *
 * Tolerance: PyTorch ran in f32 on the CPU and the GPU runs in f32 with other summation orders;
 * both differ from exact arithmetic by f32 rounding amplified through train-mode batch norm, the
 * same budget as the whole-network check against the f64 reference (NETWORK).
 */
import assert from "node:assert/strict";
import { writeBuffer } from "../../src/gpu/buffer.ts";
import { submitDispatches } from "../../src/gpu/dispatch.ts";
import { createTensor } from "../../src/gpu/tensor.ts";
import { decodeSafetensors, type Tensor } from "../../src/io/safetensors.ts";
import { loadModelStateDict } from "../../src/model/checkpoint.ts";
import { resNetConfigSchema } from "../../src/model/config.ts";
import { oihwToOhwi, permute4 } from "../../src/model/layout.ts";
import { ModelWeights } from "../../src/model/weights.ts";
import { Optimizer } from "../../src/train/optimizer.ts";
import { createMetrics, readMetrics } from "../../src/ops/softmax_cross_entropy.ts";
import { KernelPolicy } from "../../src/ops/policy.ts";
import { StepPlan } from "../../src/plan/plan.ts";
import { f32Tensor, gpuTest, readTensor, u32Tensor } from "../support/gpu.ts";
import { NETWORK } from "../support/tolerances.ts";
import { assertAllClose } from "../support/reference/compare.ts";
import basic from "../support/fixtures/pytorch_resnet_tiny.safetensors" with { type: "bytes" };
import bottleneck from "../support/fixtures/pytorch_resnet_bottleneck_tiny.safetensors" with {
  type: "bytes",
};

function under(tensors: Map<string, Tensor>, prefix: string): Map<string, Tensor> {
  return new Map(
    [...tensors].filter(([name]) => name.startsWith(prefix)).map((
      [name, t],
    ) => [name.slice(prefix.length), t]),
  );
}

function floats(tensor: Tensor): Float32Array {
  return Float32Array.from(tensor.data as ArrayLike<number>);
}

/** A fixture tensor in the project's layout: OIHW conv weights (and their gradients) to OHWI. */
function projectLayout(tensor: Tensor): Float32Array {
  return tensor.shape.length === 4 ? oihwToOhwi(floats(tensor), tensor.shape) : floats(tensor);
}

for (const [name, bytes] of [["basic", basic], ["bottleneck", bottleneck]] as const) {
  gpuTest(
    `PyTorch parity (${name} blocks): train step and Adam step match the book's model in PyTorch`,
    async (gpu) => {
      const { tensors, metadata } = decodeSafetensors(bytes, `${name} fixture`);
      const config = resNetConfigSchema.parse(JSON.parse(metadata.architecture));
      const weights = new ModelWeights(gpu, config);
      loadModelStateDict(weights, under(tensors, "weights/"), `${name} fixture`);

      const images = tensors.get("input")!;
      const [n, c, h, w] = images.shape;
      const labels = Array.from(tensors.get("labels")!.data as BigInt64Array, Number);
      const metrics = createMetrics(gpu);
      const logits = createTensor(gpu, "logits", [n, config.classes]);
      const plan = await StepPlan.build(gpu, weights, "train", {
        // NCHW -> NHWC
        input: f32Tensor(
          gpu,
          "input",
          [n, h, w, c],
          permute4(floats(images), images.shape, [0, 2, 3, 1]),
        ),
        labels: u32Tensor(gpu, "labels", [n], labels),
        metrics,
        logits,
      }, KernelPolicy.forAdapter(gpu));
      const optimizer = await Optimizer.create(
        gpu,
        { params: weights.params, grads: weights.grads, size: weights.parameterLayout.size },
        { kind: "adam", lr: Number(metadata.lr), eps: Number(metadata.eps) },
      );
      submitDispatches(gpu, plan.dispatches);

      assertAllClose(
        await readTensor(gpu, logits),
        floats(tensors.get("logits")!),
        NETWORK,
        "logits",
      );
      const { lossSum, samples } = await readMetrics(gpu, metrics);
      assertAllClose([lossSum / samples], floats(tensors.get("loss")!), NETWORK, "loss");
      const gradients = await weights.downloadGradients();
      const expectedGradients = under(tensors, "grad/");
      assert.equal(gradients.size, expectedGradients.size);
      for (const [parameter, expected] of expectedGradients) {
        assertAllClose(
          gradients.get(parameter)!,
          projectLayout(expected),
          NETWORK,
          `grad/${parameter}`,
        );
      }
      const state = await weights.downloadState();
      for (const [stat, expected] of under(tensors, "running/")) {
        if (stat.endsWith("num_batches_tracked")) {
          const bn = stat.slice(0, -".num_batches_tracked".length);
          assert.equal(
            state.numBatchesTracked[weights.batchNormNames.indexOf(bn)],
            Number(expected.data[0]),
            stat,
          );
        } else {
          assertAllClose(state.values.get(stat)!, floats(expected), NETWORK, `running/${stat}`);
        }
      }

      // Adam's first step is lr·g/(|g| + eps): for gradients near eps it magnifies the f32 noise
      // in g, so the optimizer is fed PyTorch's own gradients to compare the update alone.
      for (const [parameter, expected] of expectedGradients) {
        const grad = weights.grad(parameter);
        writeBuffer(gpu, grad.buffer, projectLayout(expected), grad.offset);
      }
      optimizer.prepareStep(Number(metadata.lr));
      submitDispatches(gpu, optimizer.dispatches);
      const after = await weights.downloadParameters();
      const before = under(tensors, "weights/");
      for (const [parameter, expected] of under(tensors, "adam/")) {
        // Compare the update (the step is about lr, far below |p|), not the parameters themselves.
        const start = projectLayout(before.get(parameter)!);
        const update = after.get(parameter)!.map((p, i) => p - start[i]);
        const expectedUpdate = projectLayout(expected).map((p, i) => p - start[i]);
        assertAllClose(update, expectedUpdate, NETWORK, `adam/${parameter}`);
      }
      plan.destroy();
      optimizer.destroy();
      weights.destroy();
    },
  );
}
