import { elementCount } from "../../src/util/shape.ts";
import assert from "node:assert/strict";
import { buildArchitecture } from "../../src/model/architecture.ts";
import { modelConfig, presetNames, resnetConfig } from "../../src/model/config.ts";
import { initialParameters } from "../../src/model/init.ts";
import { ohwiToOihw, oihwToOhwi } from "../../src/model/layout.ts";
import {
  countParameters,
  layoutArena,
  parameterSpecs,
  stateSpecs,
} from "../../src/model/parameters.ts";
import { oihwToOhwi as referenceOihwToOhwi } from "../support/reference/layout.ts";
import { f32Array, Random } from "../support/reference/random.ts";
import { resnetStateDictShapes } from "../support/reference/resnet.ts";

// PyTorch's sum(p.numel() for p in model.parameters()) for the CIFAR ResNets with 10 classes.
const PYTORCH_PARAMETER_COUNTS = {
  resnet18: 11_173_962,
  resnet34: 21_282_122,
  resnet50: 23_520_842,
  resnet101: 42_512_970,
  resnet152: 58_156_618,
};

Deno.test("parameter counts of every preset match PyTorch's", () => {
  for (const preset of presetNames) {
    assert.equal(
      countParameters(buildArchitecture(resnetConfig(preset))),
      PYTORCH_PARAMETER_COUNTS[preset],
      preset,
    );
  }
});

Deno.test("ResNet-9: parameter counts and state-dict names match the PyTorch module of the README", () => {
  // sum(p.numel() for p in model.parameters()) of the README's module tree in PyTorch 1.13.
  assert.equal(countParameters(buildArchitecture(modelConfig("resnet9"))), 6_573_130);
  assert.equal(countParameters(buildArchitecture(modelConfig("resnet9", 0.25))), 412_954);
  const architecture = buildArchitecture(modelConfig("resnet9", 0.25));
  // The state dict in PyTorch's order, running statistics beside their BN's parameters.
  const expected = ["prep", "layer1", "res1", "layer2", "layer3", "res3"].flatMap((layer) =>
    (layer.startsWith("res") ? [0, 3] : [0]).flatMap((conv) => [
      `${layer}.${conv}.weight`,
      `${layer}.${conv + 1}.weight`,
      `${layer}.${conv + 1}.bias`,
    ])
  );
  assert.deepEqual(parameterSpecs(architecture).map((spec) => spec.name), [
    ...expected,
    "fc.weight",
    "fc.bias",
  ]);
  const shapes = new Map(parameterSpecs(architecture).map((spec) => [spec.name, spec.torchShape]));
  assert.deepEqual(shapes.get("prep.0.weight"), [16, 3, 3, 3]);
  assert.deepEqual(shapes.get("layer1.0.weight"), [32, 16, 3, 3]);
  assert.deepEqual(shapes.get("res1.3.weight"), [32, 32, 3, 3]);
  assert.deepEqual(shapes.get("layer3.0.weight"), [128, 64, 3, 3]);
  assert.deepEqual(shapes.get("res3.4.bias"), [128]);
  assert.deepEqual(shapes.get("fc.weight"), [10, 128]);
  assert.deepEqual(
    stateSpecs(architecture).map((spec) => spec.name).filter((name) => name.startsWith("res3")),
    ["res3.1.running_mean", "res3.1.running_var", "res3.4.running_mean", "res3.4.running_var"],
  );
});

Deno.test("state-dict names, order and shapes match the independent reference of the book's model", () => {
  for (
    const config of [
      resnetConfig("resnet18", 1 / 16),
      resnetConfig("resnet34", 1 / 8),
      resnetConfig("resnet50", 1 / 16),
      {
        block: "bottleneck" as const,
        blocksPerStage: [2, 1, 1, 1] as [number, number, number, number],
        widthMultiplier: 0.5,
        classes: 7,
      },
    ]
  ) {
    const architecture = buildArchitecture(config);
    const expected = [...resnetStateDictShapes(config)].filter(([name]) =>
      !name.endsWith("num_batches_tracked")
    );
    const parameters = parameterSpecs(architecture);
    const state = new Map(stateSpecs(architecture).map((spec) => [spec.name, spec]));
    const ours = new Map([
      ...parameters.map((spec) => [spec.name, spec.shape] as const),
      ...[...state].map(([name, spec]) => [name, spec.shape] as const),
    ]);
    assert.deepEqual(
      new Set(ours.keys()),
      new Set(expected.map(([name]) => name)),
      JSON.stringify(config),
    );
    for (const [name, { shape, trainable }] of expected) {
      assert.deepEqual(ours.get(name), shape, name);
      assert.equal(parameters.some((spec) => spec.name === name), trainable, name);
    }
    // Trainable parameters keep PyTorch's order (model.parameters()).
    assert.deepEqual(
      parameters.map((spec) => spec.name),
      expected.filter(([, e]) => e.trainable).map(([name]) => name),
    );
  }
});

Deno.test("the book's names: stem conv, conv2_x..conv5_x with residual_function and shortcut, fc", () => {
  const names = parameterSpecs(buildArchitecture(resnetConfig("resnet18"))).map((spec) =>
    spec.name
  );
  for (
    const name of [
      "conv.0.weight",
      "conv.1.weight",
      "conv2_x.0.residual_function.0.weight",
      "conv2_x.1.residual_function.4.bias",
      "conv3_x.0.shortcut.0.weight",
      "conv3_x.0.shortcut.1.weight",
      "conv5_x.1.residual_function.3.weight",
      "fc.weight",
      "fc.bias",
    ]
  ) assert.ok(names.includes(name), name);
  assert.ok(
    !names.includes("conv2_x.0.shortcut.0.weight"),
    "conv2_x keeps its shape: identity shortcut",
  );
});

Deno.test("arena offsets are aligned and tensors do not overlap", () => {
  const specs = parameterSpecs(buildArchitecture(resnetConfig("resnet18", 0.25)));
  const { entries, size } = layoutArena(specs);
  let end = 0;
  for (const { spec, offset } of entries) {
    assert.equal(offset % 256, 0);
    assert.ok(offset >= end, spec.name);
    end = offset + elementCount(spec.shape) * 4;
  }
  assert.ok(size >= end && size % 256 === 0);
});

Deno.test("initialisation: U(±1/√fan_in) for conv and fc, BN weight 1 and bias 0, reproducible by seed", () => {
  const specs = parameterSpecs(buildArchitecture(resnetConfig("resnet18", 0.25)));
  const first = initialParameters(specs, 7);
  const again = initialParameters(specs, 7);
  const other = initialParameters(specs, 8);
  specs.forEach((spec, i) => {
    assert.deepEqual(first[i], again[i], spec.name);
    if (spec.role === "bn_weight") return assert.ok(first[i].every((v) => v === 1));
    if (spec.role === "bn_bias") return assert.ok(first[i].every((v) => v === 0));
    const bound = 1 / Math.sqrt(spec.fanIn);
    assert.ok(first[i].every((v) => Math.abs(v) <= bound), spec.name);
    assert.notDeepEqual(first[i], other[i]);
    if (first[i].length > 1000) {
      // A uniform on ±b has standard deviation b/√3.
      const std = Math.sqrt(first[i].reduce((sum, v) => sum + v * v, 0) / first[i].length);
      assert.ok(Math.abs(std / (bound / Math.sqrt(3)) - 1) < 0.05, `${spec.name}: std ${std}`);
    }
  });
});

Deno.test("OIHW <-> OHWI conversion agrees with the reference and round-trips", () => {
  const random = new Random(3);
  const [o, i, k] = [5, 3, 3];
  const oihw = f32Array(o * i * k * k, () => random.uniform(-1, 1));
  const ohwi = oihwToOhwi(oihw, [o, i, k, k]);
  assert.deepEqual(Array.from(ohwi), Array.from(referenceOihwToOhwi(oihw, { cout: o, cin: i, k })));
  assert.deepEqual(Array.from(ohwiToOihw(ohwi, [o, k, k, i])), Array.from(oihw));
});
