/**
 * CPU reference of the whole CIFAR ResNet in f64, composed from the reference ops, with
 * parameter names matching the PyTorch model of weiaicunzai/pytorch-cifar100 `models/resnet.py`
 * (stem renamed `conv`) so that gradients can be compared name by name with PyTorch:
 *
 *   conv      = Sequential(Conv2d(3, 64w, 3, padding 1), BatchNorm2d, ReLU)
 *   conv2_x … conv5_x: stages of widths 64w, 128w, 256w, 512w and strides 1, 2, 2, 2
 *   avg_pool  = AdaptiveAvgPool2d(1), then flatten
 *   fc        = Linear(512w · expansion, classes)
 *
 * Weights are given in the project layout (conv weights OHWI) and gradients are returned in it.
 */
import { addBackward, addForward } from "./add.ts";
import {
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
import { globalAvgPoolBackward, globalAvgPoolForward } from "./pool.ts";
import type { Random } from "./random.ts";
import { reluBackward, reluForward } from "./relu.ts";
import { nhwcLength, type NhwcShape } from "./shape.ts";

export type { Mode, StateDictEntry };
export type ResNetForwardResult = ForwardResult;
export type ResNetTrainStepResult = TrainStepResult;

export type BlockKind = "basic" | "bottleneck";

export interface ResNetArchitecture {
  block: BlockKind;
  /** Blocks in each of the four stages conv2_x … conv5_x, e.g. [2, 2, 2, 2] for ResNet-18. */
  blocksPerStage: readonly number[];
  /** Scales every stage width (64, 128, 256, 512); 1 is the book's model. */
  widthMultiplier: number;
  classes: number;
}

const STEM_BASE_WIDTH = 64;
const STAGE_BASE_WIDTHS = [64, 128, 256, 512];
const STAGE_STRIDES = [1, 2, 2, 2];
const STAGE_NAMES = ["conv2_x", "conv3_x", "conv4_x", "conv5_x"];
/** Output channels of a block relative to its `out_channels` argument. */
const EXPANSION: Record<BlockKind, number> = { basic: 1, bottleneck: 4 };

// ---------------------------------------------------------------------------------------------
// Structure: the network as a list of named layers, derived once from the architecture and used
// both to enumerate the state dict and to run the model, so the two cannot disagree.

interface BlockSpec {
  residual: ConvBnSpec[];
  /** Empty for the identity shortcut, like the book's empty nn.Sequential. */
  shortcut: ConvBnSpec[];
}

interface ResNetSpec {
  stem: ConvBnSpec;
  blocks: BlockSpec[];
  fc: LinearSpec;
}

/** The residual_function of one block; Sequential index 3j holds the j-th conv, 3j+1 its BN and
 * 3j+2 the ReLU (absent after the last BN, whose ReLU comes after the shortcut is added). */
function residualSpecs(
  prefix: string,
  block: BlockKind,
  cin: number,
  width: number,
  stride: number,
): ConvBnSpec[] {
  const layers = block === "basic"
    ? [
      { cin, cout: width, k: 3, stride, pad: 1 },
      { cin: width, cout: width, k: 3, stride: 1, pad: 1 },
    ]
    : [
      { cin, cout: width, k: 1, stride: 1, pad: 0 },
      // The book's Bottleneck strides in its 3x3 conv, not in the first 1x1.
      { cin: width, cout: width, k: 3, stride, pad: 1 },
      { cin: width, cout: width * EXPANSION.bottleneck, k: 1, stride: 1, pad: 0 },
    ];
  return layers.map((layer, index) => ({
    ...layer,
    conv: `${prefix}.residual_function.${3 * index}`,
    bn: `${prefix}.residual_function.${3 * index + 1}`,
    relu: index < layers.length - 1,
  }));
}

function resnetSpec(architecture: ResNetArchitecture): ResNetSpec {
  const { block, blocksPerStage, widthMultiplier, classes } = architecture;
  if (blocksPerStage.length !== STAGE_BASE_WIDTHS.length) {
    throw new RangeError(`blocksPerStage needs ${STAGE_BASE_WIDTHS.length} stages`);
  }
  const stemWidth = scaledWidth(STEM_BASE_WIDTH, widthMultiplier);
  const stem = {
    conv: "conv.0",
    bn: "conv.1",
    cin: INPUT_CHANNELS,
    cout: stemWidth,
    k: 3,
    stride: 1,
    pad: 1,
    relu: true,
  };
  const blocks: BlockSpec[] = [];
  let channels = stemWidth;
  STAGE_NAMES.forEach((stageName, stage) => {
    const width = scaledWidth(STAGE_BASE_WIDTHS[stage], widthMultiplier);
    const cout = width * EXPANSION[block];
    for (let index = 0; index < blocksPerStage[stage]; index++) {
      const prefix = `${stageName}.${index}`;
      const stride = index === 0 ? STAGE_STRIDES[stage] : 1;
      const projects = stride !== 1 || channels !== cout;
      const shortcut = projects
        ? [{
          conv: `${prefix}.shortcut.0`,
          bn: `${prefix}.shortcut.1`,
          cin: channels,
          cout,
          k: 1,
          stride,
          pad: 0,
          relu: false,
        }]
        : [];
      blocks.push({ residual: residualSpecs(prefix, block, channels, width, stride), shortcut });
      channels = cout;
    }
  });
  return { stem, blocks, fc: { name: "fc", inFeatures: channels, outFeatures: classes } };
}

function convBnSpecs(spec: ResNetSpec): ConvBnSpec[] {
  return [spec.stem, ...spec.blocks.flatMap((block) => [...block.residual, ...block.shortcut])];
}

/**
 * Every entry of the model's state dict, in PyTorch's state_dict order, with project-layout
 * shapes: conv weights, BN weight/bias/running_mean/running_var/num_batches_tracked, fc.
 */
export function resnetStateDictShapes(
  architecture: ResNetArchitecture,
): Map<string, StateDictEntry> {
  const spec = resnetSpec(architecture);
  // PyTorch orders each block's residual_function before its shortcut; convBnSpecs does too.
  return stateDictShapes(convBnSpecs(spec), spec.fc);
}

/**
 * Random f32-representable weights for tests: He-normal convs, 1/sqrt(fan-in) fc, and BN
 * parameters and running statistics away from their 1/0 defaults so that every term of the BN
 * gradients is exercised.
 */
export function randomResnetWeights(
  architecture: ResNetArchitecture,
  random: Random,
): Map<string, Float64Array> {
  return randomWeights(resnetStateDictShapes(architecture), random);
}

// ---------------------------------------------------------------------------------------------
// Execution: layers.ts's layers, each running its forward and returning its backward.

/** [N, H, W, C] -> [N, 1, 1, C]: an NHWC tensor with 1x1 extent is already the flattened [N, C]. */
const globalAvgPool: Layer = (input, shape) => ({
  output: globalAvgPoolForward(input, shape),
  shape: { n: shape.n, h: 1, w: 1, c: shape.c },
  backward: (dOutput) => globalAvgPoolBackward(dOutput, shape),
});

/** The model of the architecture, built from the layers of one pass. */
class ReferenceNetwork extends ReferenceModel {
  readonly model: Layer;

  constructor(
    architecture: ResNetArchitecture,
    weights: ReadonlyMap<string, Float64Array>,
    mode: Mode,
  ) {
    super("resnet", weights, mode);
    const spec = resnetSpec(architecture);
    this.model = sequential([
      this.convBn(spec.stem),
      ...spec.blocks.map((block) => this.residualBlock(block)),
      globalAvgPool,
      this.linear(spec.fc),
    ]);
  }

  /** ReLU(residual_function(x) + shortcut(x)); the input's gradient is the sum of both paths. */
  private residualBlock(block: BlockSpec): Layer {
    const residualFunction = sequential(block.residual.map((layer) => this.convBn(layer)));
    const shortcut = sequential(block.shortcut.map((layer) => this.convBn(layer)));
    return (input, shape) => {
      const residual = residualFunction(input, shape);
      const skip = shortcut(input, shape);
      if (nhwcLength(residual.shape) !== nhwcLength(skip.shape)) {
        throw new RangeError("residual and shortcut shapes differ");
      }
      const sum = addForward(residual.output, skip.output);
      return {
        output: reluForward(sum),
        shape: residual.shape,
        backward: (dOutput) => {
          const { da, db } = addBackward(reluBackward(sum, dOutput));
          return addForward(residual.backward(da), skip.backward(db));
        },
      };
    };
  }
}

/** Logits for an NHWC batch; train mode uses batch statistics and updates running ones. */
export function resnetForward(
  architecture: ResNetArchitecture,
  weights: ReadonlyMap<string, Float64Array>,
  input: Float64Array,
  inputShape: NhwcShape,
  mode: Mode,
): ResNetForwardResult {
  return new ReferenceNetwork(architecture, weights, mode).forward(input, inputShape);
}

/**
 * One training step without the optimizer: train-mode forward, mean cross-entropy against
 * `labels`, and the full backward pass.
 */
export function resnetTrainStep(
  architecture: ResNetArchitecture,
  weights: ReadonlyMap<string, Float64Array>,
  input: Float64Array,
  inputShape: NhwcShape,
  labels: ArrayLike<number>,
): ResNetTrainStepResult {
  return new ReferenceNetwork(architecture, weights, "train").trainStep(
    input,
    inputShape,
    labels,
    architecture.classes,
  );
}
