/**
 * What the CPU reference networks (resnet.ts, resnet9.ts) share: their state-dict entries and
 * random test weights, and the layers they are built of, each running its forward in f64 and
 * returning a closure for its backward.
 */
import {
  batchNormEvalForward,
  type BatchNormParameters,
  type BatchNormRunningStats,
  batchNormTrainBackward,
  batchNormTrainForward,
} from "./batchnorm.ts";
import { conv2dBackward, conv2dForward, conv2dOutputSize, type Conv2dShape } from "./conv2d.ts";
import { linearBackward, linearForward, type LinearShape } from "./linear.ts";
import { f32Array, type Random } from "./random.ts";
import { reluBackward, reluForward } from "./relu.ts";
import { checkLength, nhwcLength, type NhwcShape } from "./shape.ts";
import { softmaxCrossEntropy } from "./softmax_cross_entropy.ts";

export type Mode = "train" | "eval";

/** CIFAR images are RGB; both networks' stems are Conv2d(3, 64w, …). */
export const INPUT_CHANNELS = 3;

/**
 * A stage width scaled by the multiplier: rounded half up (not Python's round-half-to-even;
 * tools/pytorch_fixture.py uses the same formula) and at least one channel.
 */
export function scaledWidth(baseWidth: number, widthMultiplier: number): number {
  return Math.max(1, Math.floor(baseWidth * widthMultiplier + 0.5));
}

// ---------------------------------------------------------------------------------------------
// State dict.

/** Conv2d (no bias) followed by BatchNorm2d and optionally ReLU: every conv in both models. */
export interface ConvBnSpec {
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

export interface LinearSpec {
  name: string;
  inFeatures: number;
  outFeatures: number;
}

export interface StateDictEntry {
  /** Shape in the project layout: conv weights [Cout, K, K, Cin]; [] for a scalar. */
  shape: number[];
  /** Trainable parameters get gradients; buffers (running statistics) do not. */
  trainable: boolean;
}

/**
 * The state dict of the conv-BNs and the fc layer, in PyTorch's state_dict order when `layers`
 * are in module order, with project-layout shapes: conv weights, BN
 * weight/bias/running_mean/running_var/num_batches_tracked, then fc.
 */
export function stateDictShapes(
  layers: readonly ConvBnSpec[],
  fc: LinearSpec,
): Map<string, StateDictEntry> {
  const entries = new Map<string, StateDictEntry>();
  for (const layer of layers) {
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
  const { name, inFeatures, outFeatures } = fc;
  entries.set(`${name}.weight`, { shape: [outFeatures, inFeatures], trainable: true });
  entries.set(`${name}.bias`, { shape: [outFeatures], trainable: true });
  return entries;
}

/** How randomWeights draws each element of one state-dict entry. */
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
 * Random f32-representable weights for tests, drawn entry by entry in state-dict order:
 * He-normal convs, 1/sqrt(fan-in) fc, and BN parameters and running statistics away from their
 * 1/0 defaults so that every term of the BN gradients is exercised.
 */
export function randomWeights(
  stateDict: ReadonlyMap<string, StateDictEntry>,
  random: Random,
): Map<string, Float64Array> {
  const weights = new Map<string, Float64Array>();
  for (const [name, { shape }] of stateDict) {
    const length = shape.reduce((product, size) => product * size, 1);
    weights.set(name, f32Array(length, initializer(name, shape, random)));
  }
  return weights;
}

// ---------------------------------------------------------------------------------------------
// Execution: each layer runs its forward and returns a closure for its backward.

export interface Traced {
  output: Float64Array;
  shape: NhwcShape;
  /** Given d loss / d output, records parameter gradients and returns d loss / d input. */
  backward(dOutput: Float64Array): Float64Array;
}

export type Layer = (input: Float64Array, shape: NhwcShape) => Traced;

/** Layers applied in order; with no layers it is the identity, like an empty nn.Sequential. */
export function sequential(layers: Layer[]): Layer {
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

export const relu: Layer = (input, shape) => ({
  output: reluForward(input),
  shape,
  backward: (dOutput) => reluBackward(input, dOutput),
});

export interface ForwardResult {
  /** [N, classes]. */
  logits: Float64Array;
  /** Train mode only: running_mean, running_var and num_batches_tracked of every BN after the
   * forward, keyed like the state dict. Empty in eval mode, which leaves them unchanged. */
  runningStats: Map<string, Float64Array>;
}

export interface TrainStepResult extends ForwardResult {
  /** Mean softmax cross-entropy over the batch. */
  loss: number;
  /** Rows whose argmax is the label. */
  correct: number;
  /** d loss / d parameter for every trainable entry of the state dict, in project layout. */
  gradients: Map<string, Float64Array>;
  /** d loss / d input, NHWC. */
  dinput: Float64Array;
}

/** Throws unless `input` is an NHWC batch of `inputShape` with RGB channels. */
export function checkInput(input: Float64Array, inputShape: NhwcShape, network: string): void {
  checkLength(input, nhwcLength(inputShape), `${network} input`);
  if (inputShape.c !== INPUT_CHANNELS) {
    throw new RangeError(`${network} input needs ${INPUT_CHANNELS} channels, got ${inputShape.c}`);
  }
}

/**
 * Holds the weights, and collects the gradients and running statistics of one pass; a network
 * builds its `model` from the layers made here.
 */
export abstract class ReferenceModel {
  readonly gradients = new Map<string, Float64Array>();
  readonly runningStats = new Map<string, Float64Array>();
  abstract readonly model: Layer;

  constructor(
    /** Names the network in errors, e.g. "resnet9". */
    private readonly network: string,
    private readonly weights: ReadonlyMap<string, Float64Array>,
    private readonly mode: Mode,
  ) {}

  /** The logits of `model` for an NHWC batch of RGB images. */
  forward(input: Float64Array, inputShape: NhwcShape): ForwardResult {
    checkInput(input, inputShape, this.network);
    const { output } = this.model(input, inputShape);
    return { logits: output, runningStats: this.runningStats };
  }

  /**
   * One training step without the optimizer: forward, mean cross-entropy against `labels` with
   * label smoothing `labelSmoothing` (PyTorch's CrossEntropyLoss(label_smoothing)), and the full
   * backward pass.
   */
  trainStep(
    input: Float64Array,
    inputShape: NhwcShape,
    labels: ArrayLike<number>,
    classes: number,
    labelSmoothing = 0,
  ): TrainStepResult {
    checkInput(input, inputShape, this.network);
    const traced = this.model(input, inputShape);
    const { loss, dlogits, correct } = softmaxCrossEntropy(
      traced.output,
      labels,
      { n: inputShape.n, classes },
      labelSmoothing,
    );
    const dinput = traced.backward(dlogits);
    return {
      logits: traced.output,
      loss,
      correct,
      gradients: this.gradients,
      runningStats: this.runningStats,
      dinput,
    };
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
    const { conv: name, cin, cout, k, stride, pad } = layer;
    return (input, inputShape) => {
      if (inputShape.c !== cin) throw new RangeError(`${name}: input has ${inputShape.c} channels`);
      const { n, h, w } = inputShape;
      const shape: Conv2dShape = { n, h, w, cin, cout, k, stride, pad };
      const weight = this.tensor(`${name}.weight`, cout * k * k * cin);
      const { oh, ow } = conv2dOutputSize(shape);
      return {
        output: conv2dForward(input, weight, shape),
        shape: { n, h: oh, w: ow, c: cout },
        backward: (dOutput) => {
          const { dx, dweight } = conv2dBackward(input, weight, dOutput, shape);
          this.setGradient(`${name}.weight`, dweight);
          return dx;
        },
      };
    };
  }

  /** Train mode normalizes with the batch statistics and records the updated running ones. */
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
            throw new Error(`the reference ${this.network} backpropagates in train mode only`);
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

  protected convBn(layer: ConvBnSpec): Layer {
    return sequential([
      this.conv(layer),
      this.batchNorm(layer.bn),
      ...(layer.relu ? [relu] : []),
    ]);
  }

  /** nn.Linear, its output (and so its gradients) times `scale`. */
  protected linear({ name, inFeatures, outFeatures }: LinearSpec, scale = 1): Layer {
    return (input, inputShape) => {
      const shape: LinearShape = { n: inputShape.n, inFeatures, outFeatures };
      const weight = this.tensor(`${name}.weight`, outFeatures * inFeatures);
      const bias = this.tensor(`${name}.bias`, outFeatures);
      return {
        output: linearForward(input, weight, bias, shape, scale),
        shape: { n: inputShape.n, h: 1, w: 1, c: outFeatures },
        backward: (dOutput) => {
          const { dx, dweight, dbias } = linearBackward(input, weight, dOutput, shape, scale);
          this.setGradient(`${name}.weight`, dweight);
          this.setGradient(`${name}.bias`, dbias);
          return dx;
        },
      };
    };
  }
}
