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
  batchNormEvalForward,
  type BatchNormParameters,
  type BatchNormRunningStats,
  batchNormTrainBackward,
  batchNormTrainForward,
} from "./batchnorm.ts";
import { conv2dBackward, conv2dForward, conv2dOutputSize, type Conv2dShape } from "./conv2d.ts";
import { linearBackward, linearForward, type LinearShape } from "./linear.ts";
import { globalAvgPoolBackward, globalAvgPoolForward } from "./pool.ts";
import { f32Array, type Random } from "./random.ts";
import { reluBackward, reluForward } from "./relu.ts";
import { checkLength, nhwcLength, type NhwcShape } from "./shape.ts";
import { softmaxCrossEntropy } from "./softmax_cross_entropy.ts";

export type BlockKind = "basic" | "bottleneck";

export interface ResNetArchitecture {
  block: BlockKind;
  /** Blocks in each of the four stages conv2_x … conv5_x, e.g. [2, 2, 2, 2] for ResNet-18. */
  blocksPerStage: readonly number[];
  /** Scales every stage width (64, 128, 256, 512); 1 is the book's model. */
  widthMultiplier: number;
  classes: number;
}

export type Mode = "train" | "eval";

/** CIFAR images are RGB; the book's stem is Conv2d(3, 64, …). */
export const INPUT_CHANNELS = 3;
const STEM_BASE_WIDTH = 64;
const STAGE_BASE_WIDTHS = [64, 128, 256, 512];
const STAGE_STRIDES = [1, 2, 2, 2];
const STAGE_NAMES = ["conv2_x", "conv3_x", "conv4_x", "conv5_x"];
/** Output channels of a block relative to its `out_channels` argument. */
const EXPANSION: Record<BlockKind, number> = { basic: 1, bottleneck: 4 };

/**
 * A stage width scaled by the multiplier: rounded half up (not Python's round-half-to-even;
 * tools/pytorch_fixture.py uses the same formula) and at least one channel.
 */
export function scaledWidth(baseWidth: number, widthMultiplier: number): number {
  return Math.max(1, Math.floor(baseWidth * widthMultiplier + 0.5));
}

// ---------------------------------------------------------------------------------------------
// Structure: the network as a list of named layers, derived once from the architecture and used
// both to enumerate the state dict and to run the model, so the two cannot disagree.

/** Conv2d (no bias) followed by BatchNorm2d and optionally ReLU: every conv in the model. */
interface ConvBnSpec {
  /** Module names, e.g. "conv2_x.0.residual_function.0" and "conv2_x.0.residual_function.1". */
  conv: string;
  bn: string;
  cin: number;
  cout: number;
  k: number;
  stride: number;
  pad: number;
  relu: boolean;
}

interface BlockSpec {
  residual: ConvBnSpec[];
  /** Empty for the identity shortcut, like the book's empty nn.Sequential. */
  shortcut: ConvBnSpec[];
}

interface ResNetSpec {
  stem: ConvBnSpec;
  blocks: BlockSpec[];
  fc: { name: string; inFeatures: number; outFeatures: number };
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

export interface StateDictEntry {
  /** Shape in the project layout: conv weights [Cout, K, K, Cin]; [] for a scalar. */
  shape: number[];
  /** Trainable parameters get gradients; buffers (running statistics) do not. */
  trainable: boolean;
}

/**
 * Every entry of the model's state dict, in PyTorch's state_dict order, with project-layout
 * shapes: conv weights, BN weight/bias/running_mean/running_var/num_batches_tracked, fc.
 */
export function resnetStateDictShapes(
  architecture: ResNetArchitecture,
): Map<string, StateDictEntry> {
  const spec = resnetSpec(architecture);
  const entries = new Map<string, StateDictEntry>();
  // PyTorch orders each block's residual_function before its shortcut; convBnSpecs does too.
  for (const layer of convBnSpecs(spec)) {
    entries.set(`${layer.conv}.weight`, {
      shape: [layer.cout, layer.k, layer.k, layer.cin],
      trainable: true,
    });
    entries.set(`${layer.bn}.weight`, { shape: [layer.cout], trainable: true });
    entries.set(`${layer.bn}.bias`, { shape: [layer.cout], trainable: true });
    entries.set(`${layer.bn}.running_mean`, { shape: [layer.cout], trainable: false });
    entries.set(`${layer.bn}.running_var`, { shape: [layer.cout], trainable: false });
    entries.set(`${layer.bn}.num_batches_tracked`, { shape: [], trainable: false });
  }
  const { name, inFeatures, outFeatures } = spec.fc;
  entries.set(`${name}.weight`, { shape: [outFeatures, inFeatures], trainable: true });
  entries.set(`${name}.bias`, { shape: [outFeatures], trainable: true });
  return entries;
}

/** How randomResnetWeights draws each element of one state-dict entry. */
function initializer(name: string, shape: number[], random: Random): () => number {
  const fanIn = shape.slice(1).reduce((product, size) => product * size, 1);
  if (shape.length === 4) return () => random.normal(0, Math.sqrt(2 / fanIn)); // He normal
  if (name === "fc.weight") return () => random.normal(0, Math.sqrt(1 / fanIn));
  switch (name.slice(name.lastIndexOf(".") + 1)) {
    case "weight": // BN gamma
      return () => random.uniform(0.5, 1.5);
    case "bias": // BN beta and fc bias
    case "running_mean":
      return () => random.normal(0, 0.1);
    case "running_var":
      return () => random.uniform(0.5, 1.5);
    case "num_batches_tracked":
      return () => 0;
    default:
      throw new Error(`no initializer for ${name}`);
  }
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
  const weights = new Map<string, Float64Array>();
  for (const [name, { shape }] of resnetStateDictShapes(architecture)) {
    const length = shape.reduce((product, size) => product * size, 1);
    weights.set(name, f32Array(length, initializer(name, shape, random)));
  }
  return weights;
}

// ---------------------------------------------------------------------------------------------
// Execution: each layer runs its forward and returns a closure for its backward.

interface Traced {
  output: Float64Array;
  shape: NhwcShape;
  /** Given d loss / d output, records parameter gradients and returns d loss / d input. */
  backward(dOutput: Float64Array): Float64Array;
}

type Layer = (input: Float64Array, shape: NhwcShape) => Traced;

/** Layers applied in order; with no layers it is the identity, like an empty nn.Sequential. */
function sequential(layers: Layer[]): Layer {
  return (input, shape) => {
    const traces: Traced[] = [];
    let output = input;
    let outputShape = shape;
    for (const layer of layers) {
      const traced = layer(output, outputShape);
      traces.push(traced);
      output = traced.output;
      outputShape = traced.shape;
    }
    return {
      output,
      shape: outputShape,
      backward: (dOutput) =>
        traces.reduceRight((gradient, traced) => traced.backward(gradient), dOutput),
    };
  };
}

const relu: Layer = (input, shape) => ({
  output: reluForward(input),
  shape,
  backward: (dOutput) => reluBackward(input, dOutput),
});

/** [N, H, W, C] -> [N, 1, 1, C]: an NHWC tensor with 1x1 extent is already the flattened [N, C]. */
const globalAvgPool: Layer = (input, shape) => ({
  output: globalAvgPoolForward(input, shape),
  shape: { n: shape.n, h: 1, w: 1, c: shape.c },
  backward: (dOutput) => globalAvgPoolBackward(dOutput, shape),
});

/** Holds the weights, and collects the gradients and running statistics of one pass. */
class ReferenceNetwork {
  readonly gradients = new Map<string, Float64Array>();
  readonly runningStats = new Map<string, Float64Array>();
  readonly model: Layer;

  constructor(
    architecture: ResNetArchitecture,
    private readonly weights: ReadonlyMap<string, Float64Array>,
    private readonly mode: Mode,
  ) {
    const spec = resnetSpec(architecture);
    this.model = sequential([
      this.convBn(spec.stem),
      ...spec.blocks.map((block) => this.residualBlock(block)),
      globalAvgPool,
      this.linear(spec.fc.name, spec.fc.inFeatures, spec.fc.outFeatures),
    ]);
  }

  private tensor(name: string, length: number): Float64Array {
    const tensor = this.weights.get(name);
    if (!tensor) throw new Error(`missing weight ${name}`);
    checkLength(tensor, length, name);
    return tensor;
  }

  private setGradient(name: string, gradient: Float64Array): void {
    // Every parameter is used exactly once, so a second gradient would mean a wiring bug.
    if (this.gradients.has(name)) throw new Error(`gradient of ${name} set twice`);
    this.gradients.set(name, gradient);
  }

  private conv(layer: ConvBnSpec): Layer {
    const name = layer.conv;
    return (input, inputShape) => {
      const { cin, cout, k, stride, pad } = layer;
      if (inputShape.c !== cin) throw new RangeError(`${name}: input has ${inputShape.c} channels`);
      const shape: Conv2dShape = {
        n: inputShape.n,
        h: inputShape.h,
        w: inputShape.w,
        cin,
        cout,
        k,
        stride,
        pad,
      };
      const weight = this.tensor(`${name}.weight`, layer.cout * layer.k * layer.k * layer.cin);
      const { oh, ow } = conv2dOutputSize(shape);
      return {
        output: conv2dForward(input, weight, shape),
        shape: { n: inputShape.n, h: oh, w: ow, c: layer.cout },
        backward: (dOutput) => {
          const { dx, dweight } = conv2dBackward(input, weight, dOutput, shape);
          this.setGradient(`${name}.weight`, dweight);
          return dx;
        },
      };
    };
  }

  private batchNorm(name: string): Layer {
    return (input, shape) => {
      const parameters: BatchNormParameters = {
        gamma: this.tensor(`${name}.weight`, shape.c),
        beta: this.tensor(`${name}.bias`, shape.c),
      };
      const running: BatchNormRunningStats = {
        runningMean: this.tensor(`${name}.running_mean`, shape.c),
        runningVar: this.tensor(`${name}.running_var`, shape.c),
      };
      if (this.mode === "eval") {
        return {
          output: batchNormEvalForward(input, parameters, running, shape),
          shape,
          backward: () => {
            throw new Error("the reference ResNet backpropagates in train mode only");
          },
        };
      }
      const result = batchNormTrainForward(input, parameters, running, shape);
      this.runningStats.set(`${name}.running_mean`, result.runningMean);
      this.runningStats.set(`${name}.running_var`, result.runningVar);
      const batchesTracked = this.weights.get(`${name}.num_batches_tracked`)?.[0] ?? 0;
      this.runningStats.set(`${name}.num_batches_tracked`, Float64Array.of(batchesTracked + 1));
      return {
        output: result.y,
        shape,
        backward: (dOutput) => {
          const { dx, dgamma, dbeta } = batchNormTrainBackward(
            input,
            dOutput,
            parameters,
            result,
            shape,
          );
          this.setGradient(`${name}.weight`, dgamma);
          this.setGradient(`${name}.bias`, dbeta);
          return dx;
        },
      };
    };
  }

  private convBn(layer: ConvBnSpec): Layer {
    return sequential([
      this.conv(layer),
      this.batchNorm(layer.bn),
      ...(layer.relu ? [relu] : []),
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

  private linear(name: string, inFeatures: number, outFeatures: number): Layer {
    return (input, inputShape) => {
      const shape: LinearShape = { n: inputShape.n, inFeatures, outFeatures };
      const weight = this.tensor(`${name}.weight`, outFeatures * inFeatures);
      const bias = this.tensor(`${name}.bias`, outFeatures);
      return {
        output: linearForward(input, weight, bias, shape),
        shape: { n: inputShape.n, h: 1, w: 1, c: outFeatures },
        backward: (dOutput) => {
          const { dx, dweight, dbias } = linearBackward(input, weight, dOutput, shape);
          this.setGradient(`${name}.weight`, dweight);
          this.setGradient(`${name}.bias`, dbias);
          return dx;
        },
      };
    };
  }
}

export interface ResNetForwardResult {
  /** [N, classes]. */
  logits: Float64Array;
  /** Train mode only: running_mean, running_var and num_batches_tracked of every BN after the
   * forward, keyed like the state dict. Empty in eval mode, which leaves them unchanged. */
  runningStats: Map<string, Float64Array>;
}

export interface ResNetTrainStepResult extends ResNetForwardResult {
  /** Mean softmax cross-entropy over the batch. */
  loss: number;
  /** Rows whose argmax is the label. */
  correct: number;
  /** d loss / d parameter for every trainable entry of the state dict, in project layout. */
  gradients: Map<string, Float64Array>;
  /** d loss / d input, NHWC. */
  dinput: Float64Array;
}

function checkInput(input: Float64Array, inputShape: NhwcShape): void {
  checkLength(input, nhwcLength(inputShape), "resnet input");
  if (inputShape.c !== INPUT_CHANNELS) {
    throw new RangeError(`resnet input needs ${INPUT_CHANNELS} channels, got ${inputShape.c}`);
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
  checkInput(input, inputShape);
  const network = new ReferenceNetwork(architecture, weights, mode);
  const { output } = network.model(input, inputShape);
  return { logits: output, runningStats: network.runningStats };
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
  checkInput(input, inputShape);
  const network = new ReferenceNetwork(architecture, weights, "train");
  const traced = network.model(input, inputShape);
  const { loss, dlogits, correct } = softmaxCrossEntropy(traced.output, labels, {
    n: inputShape.n,
    classes: architecture.classes,
  });
  const dinput = traced.backward(dlogits);
  return {
    logits: traced.output,
    loss,
    correct,
    gradients: network.gradients,
    runningStats: network.runningStats,
    dinput,
  };
}
