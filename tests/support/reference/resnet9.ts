/**
 * CPU reference of ResNet-9 (the DAWNBench network of the fast94 preset) in f64, composed from
 * the reference ops, with the state-dict names of the PyTorch model in tools/pytorch_fixture.py
 * so that gradients can be compared name by name with PyTorch:
 *
 *   prep   = Sequential(Conv2d(3, 64w, 3, padding 1, no bias), BatchNorm2d, ReLU)
 *   layer1 = Sequential(Conv2d(64w, 128w), BatchNorm2d, ReLU, MaxPool2d(2))
 *   res1   = Sequential(Conv2d(128w, 128w), BN, ReLU, Conv2d(128w, 128w), BN, ReLU)
 *   layer2 = Sequential(Conv2d(128w, 256w), BN, ReLU, MaxPool2d(2))
 *   layer3 = Sequential(Conv2d(256w, 512w), BN, ReLU, MaxPool2d(2))
 *   res3   = Sequential(Conv2d(512w, 512w), BN, ReLU, Conv2d(512w, 512w), BN, ReLU)
 *   fc     = Linear(512w, classes)
 *
 *   x = prep(x); x = layer1(x); x = x + res1(x); x = layer2(x); x = layer3(x); x = x + res3(x)
 *   logits = 0.125 · fc(AdaptiveMaxPool2d(1)(x).flatten(1))
 *
 * Unlike the ResNet's blocks, nothing follows the residual addition: each residual branch ends
 * in its own ReLU. Weights are given in the project layout (conv weights OHWI) and gradients are
 * returned in it.
 */
import { addForward } from "./add.ts";
import {
  checkInput,
  type ConvBnSpec,
  type ForwardResult,
  INPUT_CHANNELS,
  type Layer,
  type LinearSpec,
  type Mode,
  randomWeights,
  ReferenceModel,
  scaledWidth,
  sequential,
  type StateDictEntry,
  stateDictShapes,
  type TrainStepResult,
} from "./layers.ts";
import {
  globalMaxPoolBackward,
  globalMaxPoolForward,
  maxPool2dBackward,
  maxPool2dForward,
} from "./pool.ts";
import type { Random } from "./random.ts";
import { checkLength, nhwcLength, type NhwcShape } from "./shape.ts";
import { meanOverViews } from "./softmax_cross_entropy.ts";

export interface ResNet9Architecture {
  kind: "resnet9";
  /** Scales every width (64, 128, 256, 512); 1 is the DAWNBench network. */
  widthMultiplier: number;
  classes: number;
}

/** The head's output scale: logits = 0.125 · fc(x), as the DAWNBench network's `Mul(0.125)`. */
export const RESNET9_LOGIT_SCALE = 0.125;

// ---------------------------------------------------------------------------------------------
// Structure: the network as a list of named stages, derived once from the architecture and used
// both to enumerate the state dict and to run the model, so the two cannot disagree.

/** One top-level module: its conv-BN-ReLUs (3x3, stride 1, padding 1, no bias, at Sequential
 * indices i, i+1 and i+2), then a max pool (layer1..3) or, for res1 and res3, the residual
 * addition x + module(x). */
interface StageSpec {
  layers: ConvBnSpec[];
  pool: boolean;
  residual: boolean;
}

interface ResNet9Spec {
  stages: StageSpec[];
  fc: LinearSpec;
}

function resnet9Spec({ widthMultiplier, classes }: ResNet9Architecture): ResNet9Spec {
  const [w64, w128, w256, w512] = [64, 128, 256, 512].map((base) =>
    scaledWidth(base, widthMultiplier)
  );
  const convBn = (module: string, index: number, cin: number, cout: number): ConvBnSpec => ({
    conv: `${module}.${index}`,
    bn: `${module}.${index + 1}`,
    cin,
    cout,
    k: 3,
    stride: 1,
    pad: 1,
    relu: true,
  });
  const stage = (module: string, cin: number, cout: number, pool: boolean): StageSpec => ({
    layers: [convBn(module, 0, cin, cout)],
    pool,
    residual: false,
  });
  const residual = (module: string, width: number): StageSpec => ({
    layers: [convBn(module, 0, width, width), convBn(module, 3, width, width)],
    pool: false,
    residual: true,
  });
  return {
    stages: [
      stage("prep", INPUT_CHANNELS, w64, false),
      stage("layer1", w64, w128, true),
      residual("res1", w128),
      stage("layer2", w128, w256, true),
      stage("layer3", w256, w512, true),
      residual("res3", w512),
    ],
    fc: { name: "fc", inFeatures: w512, outFeatures: classes },
  };
}

/**
 * Every entry of the model's state dict, in PyTorch's state_dict order, with project-layout
 * shapes: conv weights, BN weight/bias/running_mean/running_var/num_batches_tracked, fc.
 */
export function resnet9StateDictShapes(
  architecture: ResNet9Architecture,
): Map<string, StateDictEntry> {
  const spec = resnet9Spec(architecture);
  return stateDictShapes(spec.stages.flatMap((stage) => stage.layers), spec.fc);
}

/**
 * Random f32-representable weights for tests, drawn as randomResnetWeights draws the ResNet's:
 * He-normal convs, 1/sqrt(fan-in) fc, and BN parameters and running statistics away from their
 * 1/0 defaults so that every term of the BN gradients is exercised.
 */
export function randomResnet9Weights(
  architecture: ResNet9Architecture,
  random: Random,
): Map<string, Float64Array> {
  return randomWeights(resnet9StateDictShapes(architecture), random);
}

// ---------------------------------------------------------------------------------------------
// Execution: layers.ts's layers, each running its forward and returning its backward.

/** MaxPool2d(2): [N, H, W, C] -> [N, H/2, W/2, C], floor mode. */
const maxPool: Layer = (input, shape) => ({
  output: maxPool2dForward(input, shape),
  shape: { n: shape.n, h: Math.floor(shape.h / 2), w: Math.floor(shape.w / 2), c: shape.c },
  backward: (dOutput) => maxPool2dBackward(input, dOutput, shape),
});

/** AdaptiveMaxPool2d(1) and flatten: [N, H, W, C] -> [N, 1, 1, C], which is [N, C] in NHWC. */
const globalMaxPool: Layer = (input, shape) => ({
  output: globalMaxPoolForward(input, shape),
  shape: { n: shape.n, h: 1, w: 1, c: shape.c },
  backward: (dOutput) => globalMaxPoolBackward(input, dOutput, shape),
});

/** x + branch(x); the input's gradient is the sum of the identity's and the branch's. */
function residual(branch: Layer): Layer {
  return (input, shape) => {
    const traced = branch(input, shape);
    if (nhwcLength(traced.shape) !== nhwcLength(shape)) {
      throw new RangeError("residual branch changes the shape");
    }
    return {
      output: addForward(input, traced.output),
      shape,
      backward: (dOutput) => addForward(dOutput, traced.backward(dOutput)),
    };
  };
}

/** The model of the architecture, built from the layers of one pass. */
class ReferenceResNet9 extends ReferenceModel {
  readonly model: Layer;

  constructor(
    architecture: ResNet9Architecture,
    weights: ReadonlyMap<string, Float64Array>,
    mode: Mode,
  ) {
    super("resnet9", weights, mode);
    const spec = resnet9Spec(architecture);
    this.model = sequential([
      ...spec.stages.map((stage) => {
        const body = sequential([
          ...stage.layers.map((layer) => this.convBn(layer)),
          ...(stage.pool ? [maxPool] : []),
        ]);
        return stage.residual ? residual(body) : body;
      }),
      globalMaxPool,
      this.linear(spec.fc, RESNET9_LOGIT_SCALE),
    ]);
  }
}

/** Logits for an NHWC batch; train mode uses batch statistics and updates running ones. */
export function resnet9Forward(
  architecture: ResNet9Architecture,
  weights: ReadonlyMap<string, Float64Array>,
  input: Float64Array,
  inputShape: NhwcShape,
  mode: Mode,
): ForwardResult {
  return new ReferenceResNet9(architecture, weights, mode).forward(input, inputShape);
}

/** The horizontal mirror of an NHWC batch (PyTorch's x.flip(3) on NCHW). */
export function flipHorizontal(input: Float64Array, shape: NhwcShape): Float64Array {
  checkLength(input, nhwcLength(shape), "flip input");
  const { n, h, w, c } = shape;
  const flipped = new Float64Array(input.length);
  for (let row = 0; row < n * h; row++) {
    for (let column = 0; column < w; column++) {
      const from = (row * w + column) * c;
      flipped.set(input.subarray(from, from + c), (row * w + (w - 1 - column)) * c);
    }
  }
  return flipped;
}

/**
 * Evaluation with test-time augmentation: the eval-mode logits of each image and of its mirror,
 * averaged ([N, classes]). Eval-mode batch norm treats every sample alone, so running both views
 * as one batch of 2N (view 0, then view 1, as the evaluator lays them out) changes nothing.
 */
export function resnet9TtaLogits(
  architecture: ResNet9Architecture,
  weights: ReadonlyMap<string, Float64Array>,
  input: Float64Array,
  inputShape: NhwcShape,
): Float64Array {
  checkInput(input, inputShape, "resnet9");
  const views = new Float64Array(2 * input.length);
  views.set(input);
  views.set(flipHorizontal(input, inputShape), input.length);
  const { logits } = resnet9Forward(
    architecture,
    weights,
    views,
    { ...inputShape, n: 2 * inputShape.n },
    "eval",
  );
  return meanOverViews(logits, { n: inputShape.n, classes: architecture.classes, views: 2 });
}

/**
 * One training step without the optimizer: train-mode forward, mean cross-entropy against
 * `labels` with label smoothing `labelSmoothing` (PyTorch's CrossEntropyLoss(label_smoothing)),
 * and the full backward pass.
 */
export function resnet9TrainStep(
  architecture: ResNet9Architecture,
  weights: ReadonlyMap<string, Float64Array>,
  input: Float64Array,
  inputShape: NhwcShape,
  labels: ArrayLike<number>,
  labelSmoothing = 0,
): TrainStepResult {
  return new ReferenceResNet9(architecture, weights, "train").trainStep(
    input,
    inputShape,
    labels,
    architecture.classes,
    labelSmoothing,
  );
}
