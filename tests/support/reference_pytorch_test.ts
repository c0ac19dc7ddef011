/**
 * Checks the CPU reference ResNet and ResNet-9 against PyTorch itself: the fixtures written by
 * tools/pytorch_fixture.py hold a model's initial weights, a batch, and what PyTorch computed for
 * one training step. Finite differences (reference_test.ts) prove each reference backward matches
 * its own forward; only this comparison proves the forward is the book's (or DAWNBench's) model.
 *
 * Tolerance: PyTorch computed in f32 and the reference in f64, so the differences are PyTorch's
 * accumulated f32 rounding (about 6e-8 per operation, amplified by train-mode batch norm's
 * division by small batch standard deviations). Errors are measured relative to the largest
 * magnitude in each tensor; 1e-4 is far above that rounding yet far below any real mistake
 * (a wrong stride, layout, statistic or missing term gives errors of order 1e-2 to 1).
 *
 * The fixtures are imported as bytes (deno.json enables raw imports), so these tests need no
 * permission and run under bare `deno test`.
 */
import assert from "node:assert/strict";
import { decodeSafetensors, type Tensor } from "../../src/io/safetensors.ts";
import basic from "./fixtures/pytorch_resnet_tiny.safetensors" with { type: "bytes" };
import bottleneck from "./fixtures/pytorch_resnet_bottleneck_tiny.safetensors" with {
  type: "bytes",
};
import resnet9 from "./fixtures/pytorch_resnet9_tiny.safetensors" with { type: "bytes" };
import { assertAllClose, relativeMaxError } from "./reference/compare.ts";
import { nchwToNhwc, oihwToOhwi } from "./reference/layout.ts";
import {
  type Mode,
  type ResNetArchitecture,
  resnetForward,
  type ResNetForwardResult,
  resnetStateDictShapes,
  resnetTrainStep,
  type ResNetTrainStepResult,
  type StateDictEntry,
} from "./reference/resnet.ts";
import {
  type ResNet9Architecture,
  resnet9Forward,
  resnet9StateDictShapes,
  resnet9TrainStep,
  resnet9TtaLogits,
} from "./reference/resnet9.ts";
import type { NhwcShape } from "./reference/shape.ts";

const PYTORCH_TOLERANCE = 1e-4;
const FIXTURES: Record<string, Uint8Array> = {
  pytorch_resnet_tiny: basic,
  pytorch_resnet_bottleneck_tiny: bottleneck,
  pytorch_resnet9_tiny: resnet9,
};

/** The reference model a fixture's `architecture` metadata names, behind one interface. */
interface ReferenceModel {
  stateDictShapes(): Map<string, StateDictEntry>;
  forward(
    weights: ReadonlyMap<string, Float64Array>,
    input: Float64Array,
    shape: NhwcShape,
    mode: Mode,
  ): ResNetForwardResult;
  trainStep(
    weights: ReadonlyMap<string, Float64Array>,
    input: Float64Array,
    shape: NhwcShape,
    labels: ArrayLike<number>,
    labelSmoothing: number,
  ): ResNetTrainStepResult;
}

interface Fixture {
  model: ReferenceModel;
  metadata: Record<string, string>;
  tensors: Map<string, Tensor>;
}

function referenceModel(architecture: ResNetArchitecture | ResNet9Architecture): ReferenceModel {
  if ("kind" in architecture) {
    assert.equal(architecture.kind, "resnet9");
    return {
      stateDictShapes: () => resnet9StateDictShapes(architecture),
      forward: (weights, input, shape, mode) =>
        resnet9Forward(architecture, weights, input, shape, mode),
      trainStep: (weights, input, shape, labels, labelSmoothing) =>
        resnet9TrainStep(architecture, weights, input, shape, labels, labelSmoothing),
    };
  }
  assert.ok(["basic", "bottleneck"].includes(architecture.block), architecture.block);
  return {
    stateDictShapes: () => resnetStateDictShapes(architecture),
    forward: (weights, input, shape, mode) =>
      resnetForward(architecture, weights, input, shape, mode),
    trainStep: (weights, input, shape, labels, labelSmoothing) => {
      // The ResNet fixtures use the plain loss; the ResNet reference has no smoothing.
      assert.equal(labelSmoothing, 0);
      return resnetTrainStep(architecture, weights, input, shape, labels);
    },
  };
}

function loadFixture(name: string): Fixture {
  const { tensors, metadata } = decodeSafetensors(FIXTURES[name], `${name}.safetensors`);
  const model = referenceModel(JSON.parse(metadata.architecture));
  return { model, metadata, tensors };
}

/** The fixture's CrossEntropyLoss label smoothing (absent: the plain loss). */
function labelSmoothingOf(fixture: Fixture): number {
  return Number(fixture.metadata.label_smoothing ?? "0");
}

function tensor(fixture: Fixture, name: string): Tensor {
  const found = fixture.tensors.get(name);
  if (!found) throw new Error(`fixture has no tensor ${name}`);
  return found;
}

/** The project-layout shape of a PyTorch shape: 4-D (conv weights) OIHW becomes OHWI. */
function projectShape(shape: number[]): number[] {
  if (shape.length !== 4) return shape;
  const [cout, cin, kh, kw] = shape;
  return [cout, kh, kw, cin];
}

/** A fixture tensor as f64 in the project layout: 4-D (conv weights and their gradients) OIHW
 * becomes OHWI; everything else keeps its row-major order. */
function projectLayout({ shape, data }: Tensor): Float64Array {
  const values = Float64Array.from(data, Number);
  if (shape.length !== 4) return values;
  const [cout, cin, k] = shape;
  return oihwToOhwi(values, { cout, cin, k });
}

/** Names under `prefix/` in the fixture, without the prefix. */
function namesUnder(fixture: Fixture, prefix: string): string[] {
  return [...fixture.tensors.keys()]
    .filter((name) => name.startsWith(`${prefix}/`))
    .map((name) => name.slice(prefix.length + 1));
}

function weightsOf(fixture: Fixture): Map<string, Float64Array> {
  return new Map(
    namesUnder(fixture, "weights").map((name) => [
      name,
      projectLayout(tensor(fixture, `weights/${name}`)),
    ]),
  );
}

/** The NCHW input converted to NHWC, with its shape. */
function inputOf(fixture: Fixture): { input: Float64Array; shape: NhwcShape } {
  const images = tensor(fixture, "input");
  const [n, c, h, w] = images.shape;
  const shape = { n, h, w, c };
  return { input: nchwToNhwc(Float64Array.from(images.data, Number), shape), shape };
}

for (const fixtureName of Object.keys(FIXTURES)) {
  Deno.test({
    name: `resnet reference matches PyTorch: ${fixtureName} state dict`,
    fn: () => {
      const fixture = loadFixture(fixtureName);
      const expected = fixture.model.stateDictShapes();
      assert.deepEqual(namesUnder(fixture, "weights"), [...expected.keys()]);
      for (const [name, { shape, trainable }] of expected) {
        assert.deepEqual(projectShape(tensor(fixture, `weights/${name}`).shape), shape, name);
        assert.equal(fixture.tensors.has(`grad/${name}`), trainable, name);
      }
    },
  });

  Deno.test({
    name: `resnet reference matches PyTorch: ${fixtureName} train step`,
    fn: () => {
      const fixture = loadFixture(fixtureName);
      const { input, shape } = inputOf(fixture);
      const labels = Array.from(tensor(fixture, "labels").data, Number);
      const step = fixture.model.trainStep(
        weightsOf(fixture),
        input,
        shape,
        labels,
        labelSmoothingOf(fixture),
      );

      assertAllClose(
        step.logits,
        projectLayout(tensor(fixture, "logits")),
        PYTORCH_TOLERANCE,
        "logits",
      );
      assertAllClose(
        [step.loss],
        projectLayout(tensor(fixture, "loss")),
        PYTORCH_TOLERANCE,
        "loss",
      );
      const gradientNames = namesUnder(fixture, "grad");
      assert.deepEqual([...step.gradients.keys()].sort(), gradientNames.toSorted());
      for (const name of gradientNames) {
        const expected = projectLayout(tensor(fixture, `grad/${name}`));
        assertAllClose(step.gradients.get(name)!, expected, PYTORCH_TOLERANCE, `grad/${name}`);
      }
      const runningNames = namesUnder(fixture, "running");
      assert.deepEqual([...step.runningStats.keys()], runningNames);
      for (const name of runningNames) {
        const expected = projectLayout(tensor(fixture, `running/${name}`));
        assertAllClose(
          step.runningStats.get(name)!,
          expected,
          PYTORCH_TOLERANCE,
          `running/${name}`,
        );
      }
    },
  });

  Deno.test({
    name: `resnet reference matches PyTorch: ${fixtureName} eval forward`,
    fn: () => {
      const fixture = loadFixture(fixtureName);
      const { input, shape } = inputOf(fixture);
      const { logits } = fixture.model.forward(weightsOf(fixture), input, shape, "eval");
      const expected = projectLayout(tensor(fixture, "eval_logits"));
      assertAllClose(logits, expected, PYTORCH_TOLERANCE, "eval logits");
    },
  });

  if (!namesUnder(loadFixture(fixtureName), "adam").length) continue;

  Deno.test({
    name: `PyTorch fixture ${fixtureName}: adam/ holds the first Adam step`,
    fn: () => {
      // Adam's first step with bias correction reduces to p − lr · g / (|g| + eps), whatever the
      // betas; checking it here documents exactly what the adam/ entries are for the optimizer's
      // own tests. The update is about lr, and f32 rounding of p is ~1e-7 · |p|, hence 1e-3.
      const fixture = loadFixture(fixtureName);
      const lr = Number(fixture.metadata.lr);
      const eps = Number(fixture.metadata.eps);
      assert.equal(fixture.metadata.weight_decay, "0");
      for (const name of namesUnder(fixture, "adam")) {
        const before = projectLayout(tensor(fixture, `weights/${name}`));
        const gradient = projectLayout(tensor(fixture, `grad/${name}`));
        const update = projectLayout(tensor(fixture, `adam/${name}`)).map((p, i) => p - before[i]);
        const expected = gradient.map((g) => -lr * g / (Math.abs(g) + eps));
        assertAllClose(update, expected, 1e-3, `adam/${name}`);
      }
    },
  });
}

Deno.test({
  name: "resnet9 reference matches PyTorch: eval forward with the flip test-time augmentation",
  fn: () => {
    const fixture = loadFixture("pytorch_resnet9_tiny");
    const { input, shape } = inputOf(fixture);
    const architecture = JSON.parse(fixture.metadata.architecture) as ResNet9Architecture;
    const logits = resnet9TtaLogits(architecture, weightsOf(fixture), input, shape);
    const expected = projectLayout(tensor(fixture, "eval_logits_tta"));
    assertAllClose(logits, expected, PYTORCH_TOLERANCE, "TTA eval logits");
    // The mirror must matter, or this case would only repeat the plain eval forward's: here the
    // plain logits are 2% (of the largest) away from the averaged ones, 200 times the tolerance.
    const plain = projectLayout(tensor(fixture, "eval_logits"));
    assert.ok(relativeMaxError(plain, expected) > 10 * PYTORCH_TOLERANCE);
  },
});

Deno.test({
  name: "PyTorch fixture pytorch_resnet9_tiny: label smoothing changes the loss",
  fn: () => {
    // Without this, a fixture written with the smoothing silently off would still pass.
    const fixture = loadFixture("pytorch_resnet9_tiny");
    assert.equal(fixture.metadata.label_smoothing, "0.2");
    const { input, shape } = inputOf(fixture);
    const labels = Array.from(tensor(fixture, "labels").data, Number);
    const plain = fixture.model.trainStep(weightsOf(fixture), input, shape, labels, 0);
    const [expected] = projectLayout(tensor(fixture, "loss"));
    assert.ok(Math.abs(plain.loss - expected) > 1e-2, `${plain.loss} vs ${expected}`);
  },
});

Deno.test({
  name: "PyTorch fixture pytorch_resnet9_tiny: sgd/ holds the first Nesterov SGD step",
  fn: () => {
    // torch.optim.SGD's first step starts its momentum buffer at d = g + wd·p (coupled weight
    // decay), and Nesterov steps along d + momentum·buffer, so p₁ = p − lr·(1 + momentum)·d.
    // The weight-decay term alone is 5e-4 of |p|, far above p's f32 rounding, hence 1e-3.
    const fixture = loadFixture("pytorch_resnet9_tiny");
    const { metadata } = fixture;
    assert.equal(metadata.optimizer, "SGD");
    assert.equal(metadata.nesterov, "true");
    assert.equal(metadata.weight_decay_mode, "coupled");
    const [lr, momentum, weightDecay] = [metadata.lr, metadata.momentum, metadata.weight_decay]
      .map(Number);
    const names = namesUnder(fixture, "sgd");
    assert.deepEqual(names, namesUnder(fixture, "grad"));
    for (const name of names) {
      const before = projectLayout(tensor(fixture, `weights/${name}`));
      const gradient = projectLayout(tensor(fixture, `grad/${name}`));
      const update = projectLayout(tensor(fixture, `sgd/${name}`)).map((p, i) => p - before[i]);
      const expected = gradient.map((g, i) => -lr * (1 + momentum) * (g + weightDecay * before[i]));
      assertAllClose(update, expected, 1e-3, `sgd/${name}`);
    }
  },
});
