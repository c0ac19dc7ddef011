/**
 * Builds the program of a model's step: the forward pass (training or evaluation mode), and for
 * training the backward pass in reverse, as one list of kernel calls over tensor descriptions.
 * Every conv+BN unit records what its backward needs on a tape as the forward is built. Nothing
 * here touches a GPU: the weights are bound as tensors that already have storage, everything
 * else is transient and left to the allocator.
 *
 * Precision: the input's element type (f32 or f16) is the type of every activation and activation
 * gradient from the input to the last block's output. Global average pooling reads them and
 * writes f32 features, so the head (linear, logits, loss, their gradients) is f32, as are the
 * parameters, their gradients (the arena), batch-norm statistics and the optimizer's state.
 */
import { type DType, type TensorDesc, tensorDesc } from "../gpu/tensor.ts";
import { addForward } from "../ops/add.ts";
import {
  type BatchNormActivation,
  batchNormBackward,
  batchNormEvalForward,
  batchNormTrainForward,
} from "../ops/batchnorm.ts";
import {
  conv2dBackward,
  type Conv2dConfig,
  conv2dForward,
  conv2dOutputShape,
} from "../ops/conv2d.ts";
import { globalAvgPoolBackward, globalAvgPoolForward } from "../ops/global_avg_pool.ts";
import { globalMaxPoolBackward, globalMaxPoolForward } from "../ops/global_max_pool.ts";
import { maxPoolBackward, maxPoolForward, maxPoolOutputShape } from "../ops/max_pool.ts";
import { linearBackward, linearForward } from "../ops/linear.ts";
import type { KernelPolicy } from "../ops/policy.ts";
import { activationDtype } from "../ops/shape.ts";
import { crossEntropyEvaluate, crossEntropyTrain } from "../ops/softmax_cross_entropy.ts";
import type { ConvBn, Layer } from "../model/architecture.ts";
import type { WeightTensors } from "../model/weights.ts";
import { Staging } from "../ops/staging.ts";
import { Program } from "./program.ts";

export type Mode = "train" | "eval";

/** The mark after the forward pass and the loss (the backward's calls follow). */
export const FORWARD_END = "forward";

export interface NetworkIo {
  /** [N, 32, 32, 3] NHWC images, normalised; its element type is the activations' (f32 or f16). */
  input: TensorDesc;
  /** [N] u32 labels. */
  labels: TensorDesc;
  /** Loss and accuracy sums (softmax_cross_entropy.ts). */
  metrics: TensorDesc;
  /** Evaluation only: the [classes, classes] confusion counts. */
  confusion?: TensorDesc;
  /** Where the logits go when the caller wants them (prediction); transient otherwise. */
  logits?: TensorDesc;
  /**
   * Training with loss scaling: the loss-scale state (Optimizer.lossScale), whose scale multiplies
   * the loss gradient.
   */
  lossScale?: TensorDesc;
}

/** What a conv+BN unit's backward needs from its forward. */
interface UnitTape {
  unit: ConvBn;
  input: TensorDesc;
  conv: TensorDesc;
  output: TensorDesc;
  saved?: { mean: TensorDesc; invStd: TensorDesc };
  activation: BatchNormActivation;
  residual?: TensorDesc;
}

/** What a layer's backward needs from its forward; `output` is the layer's. */
type LayerTape =
  | { kind: "unit"; output: TensorDesc; unit: UnitTape }
  | { kind: "max_pool"; input: TensorDesc; output: TensorDesc }
  | {
    kind: "block";
    input: TensorDesc;
    output: TensorDesc;
    residual: UnitTape[];
    shortcut?: UnitTape;
  }
  | { kind: "residual"; input: TensorDesc; output: TensorDesc; units: UnitTape[] };

function convConfig(unit: ConvBn): Conv2dConfig {
  return { kernelSize: unit.conv.kernelSize, stride: unit.conv.stride, padding: unit.conv.padding };
}

/**
 * The gradient of a tensor: dy, or dy + dySecond where the tensor fed two branches (a residual
 * block's input). The sum is left to the reader: batch norm's backward takes both terms
 * (src/ops/batchnorm.ts), and `#summed` adds them for any other reader.
 */
interface Gradient {
  dy: TensorDesc;
  dySecond?: TensorDesc;
}

/** Settings of the loss that are not tensors. */
export interface LossOptions {
  /** Training: PyTorch's CrossEntropyLoss(label_smoothing); default 0. */
  labelSmoothing?: number;
  /**
   * Evaluation: views per image in the input (2 for test-time augmentation with flips: the input
   * holds the batch then its mirror, labels the batch once); the loss averages their logits.
   */
  views?: number;
}

/** The whole step: forward, loss, and (training) backward, with the FORWARD_END mark. */
export function buildNetworkProgram(
  weights: WeightTensors,
  mode: Mode,
  io: NetworkIo,
  policy: KernelPolicy,
  loss: LossOptions = {},
): Program {
  return new NetworkBuilder(weights, mode, policy, activationDtype("network", io.input)).build(
    io,
    loss,
  );
}

class NetworkBuilder {
  readonly program = new Program();
  readonly #weights: WeightTensors;
  readonly #mode: Mode;
  readonly #policy: KernelPolicy;
  readonly #dtype: DType;
  /**
   * The textures the CPU kernels read, staged once for the whole step: a layer's input and
   * weights copied for its forward pass serve its backward pass too, and a Winograd layer's
   * transformed tiles its weight gradient (src/ops/staging.ts).
   */
  readonly #staging = new Staging();

  constructor(weights: WeightTensors, mode: Mode, policy: KernelPolicy, dtype: DType) {
    this.#weights = weights;
    this.#mode = mode;
    this.#policy = policy;
    this.#dtype = dtype;
  }

  /** A transient activation or activation gradient, in the network's activation type. */
  #activation(label: string, shape: readonly number[]): TensorDesc {
    return tensorDesc(label, shape, this.#dtype);
  }

  build(io: NetworkIo, lossOptions: LossOptions): Program {
    const { architecture } = this.#weights;
    const p = this.program;

    const tapes: LayerTape[] = [];
    let x = io.input;
    for (const layer of architecture.layers) {
      const tape = this.#layer(layer, x);
      tapes.push(tape);
      x = tape.output;
    }

    const [n, , , channels] = x.shape;
    const pooled = tensorDesc("pooled", [n, channels]);
    const maxPooled = architecture.pool === "max";
    p.add(
      "global pool",
      maxPooled ? globalMaxPoolForward({ x, y: pooled }) : globalAvgPoolForward({ x, y: pooled }),
    );
    const fc = {
      x: pooled,
      weight: this.#weights.param("fc.weight"),
      bias: this.#weights.param("fc.bias"),
    };
    const scale = { scale: architecture.fc.scale };
    const logits = io.logits ?? tensorDesc("logits", [n, architecture.fc.outFeatures]);
    p.add("fc", linearForward({ ...fc, y: logits }, scale));
    const loss = { logits, labels: io.labels, metrics: io.metrics };
    if (this.#mode === "eval") {
      if (!io.confusion) throw new Error("plan: an evaluation plan needs a confusion tensor");
      p.add(
        "loss",
        crossEntropyEvaluate({ ...loss, confusion: io.confusion }, { views: lossOptions.views }),
      );
      p.mark(FORWARD_END);
      return p;
    }
    const dlogits = tensorDesc("d logits", logits.shape);
    p.add(
      "loss",
      crossEntropyTrain(
        { ...loss, dlogits, lossScale: io.lossScale },
        { labelSmoothing: lossOptions.labelSmoothing },
      ),
    );
    p.mark(FORWARD_END);

    // Backward, in reverse.
    const dpooled = tensorDesc("d pooled", pooled.shape);
    p.add(
      "fc backward",
      linearBackward({
        ...fc,
        dy: dlogits,
        dx: dpooled,
        dweight: this.#weights.grad("fc.weight"),
        dbias: this.#weights.grad("fc.bias"),
      }, scale),
    );
    const dx = this.#activation(`d ${x.label}`, x.shape);
    p.add(
      "global pool backward",
      maxPooled
        ? globalMaxPoolBackward({ x, dy: dpooled, dx })
        : globalAvgPoolBackward({ dy: dpooled, dx }),
    );
    let d: Gradient = { dy: dx };
    tapes.toReversed().forEach((tape, index) => {
      d = this.#layerBackward(tape, d, index < tapes.length - 1);
    });
    return p;
  }

  #layer(layer: Layer, input: TensorDesc): LayerTape {
    switch (layer.kind) {
      case "unit": {
        const unit = this.#convBn(layer.unit, input, "relu");
        return { kind: "unit", output: unit.output, unit };
      }
      case "max_pool": {
        const output = this.#activation(
          `${input.label} max-pooled`,
          maxPoolOutputShape(input.shape),
        );
        this.program.add(`max pool of ${input.label}`, maxPoolForward({ x: input, y: output }));
        return { kind: "max_pool", input, output };
      }
      case "block": {
        const { block } = layer;
        const residual: UnitTape[] = [];
        let t = input;
        for (const unit of block.residual.slice(0, -1)) {
          residual.push(this.#convBn(unit, t, "relu"));
          t = residual[residual.length - 1].output;
        }
        const shortcut = block.shortcut ? this.#convBn(block.shortcut, input, "none") : undefined;
        residual.push(this.#convBn(block.residual.at(-1)!, t, "relu", shortcut?.output ?? input));
        return { kind: "block", input, output: residual.at(-1)!.output, residual, shortcut };
      }
      case "residual": {
        const units: UnitTape[] = [];
        let t = input;
        for (const unit of layer.units) {
          units.push(this.#convBn(unit, t, "relu"));
          t = units[units.length - 1].output;
        }
        const output = this.#activation(layer.name, input.shape);
        this.program.add(`${layer.name} sum`, addForward({ a: input, b: t, y: output }));
        return { kind: "residual", input, output, units };
      }
    }
  }

  /**
   * Backward of a layer given the gradient of its output; returns the gradient of its input, which
   * the first layer (`inputGradient` false: the images need none) does not compute.
   */
  #layerBackward(tape: LayerTape, dOutput: Gradient, inputGradient: boolean): Gradient {
    const p = this.program;
    switch (tape.kind) {
      case "unit":
        return { dy: this.#convBnBackward(tape.unit, dOutput, undefined, inputGradient) };
      case "max_pool": {
        const dInput = this.#activation(`d ${tape.input.label}`, tape.input.shape);
        p.add(
          `max pool of ${tape.input.label} backward`,
          maxPoolBackward({ x: tape.input, dy: this.#summed(dOutput, tape.output), dx: dInput }),
        );
        return { dy: dInput };
      }
      case "block": {
        const [lastUnit, ...earlier] = tape.residual.toReversed();
        const dResidual = this.#activation(
          `d ${lastUnit.residual!.label}`,
          lastUnit.residual!.shape,
        );
        let d = this.#convBnBackward(lastUnit, dOutput, dResidual);
        for (const unit of earlier) d = this.#convBnBackward(unit, { dy: d });
        const dFromShortcut = tape.shortcut
          ? this.#convBnBackward(tape.shortcut, { dy: dResidual })
          : dResidual;
        return { dy: d, dySecond: dFromShortcut };
      }
      case "residual": {
        // The layer's output gradient has two readers here: summed once for both.
        const dSum = this.#summed(dOutput, tape.output);
        let d = dSum;
        for (const unit of tape.units.toReversed()) d = this.#convBnBackward(unit, { dy: d });
        return { dy: d, dySecond: dSum };
      }
    }
  }

  /** `gradient` (of `of`) as one tensor: its two terms added, where it has two. */
  #summed(gradient: Gradient, of: TensorDesc): TensorDesc {
    if (!gradient.dySecond) return gradient.dy;
    const sum = this.#activation(`d ${of.label}`, of.shape);
    this.program.add(
      `sum of gradients into ${of.label}`,
      addForward({ a: gradient.dy, b: gradient.dySecond, y: sum }),
    );
    return sum;
  }

  /** conv then BN (+ residual) (+ ReLU); returns the unit's tape. */
  #convBn(
    unit: ConvBn,
    input: TensorDesc,
    activation: BatchNormActivation,
    residual?: TensorDesc,
  ): UnitTape {
    const p = this.program;
    const config = convConfig(unit);
    const weight = this.#weights.param(`${unit.conv.name}.weight`);
    const conv = this.#activation(
      unit.conv.name,
      conv2dOutputShape(input.shape, unit.conv.outChannels, config),
    );
    p.add(
      unit.conv.name,
      conv2dForward({ x: input, weight, y: conv }, config, this.#policy, this.#staging),
    );

    const params = this.#weights.batchNorm(unit.bn.name);
    const output = this.#activation(unit.bn.name, conv.shape);
    if (this.#mode === "eval") {
      p.add(
        unit.bn.name,
        batchNormEvalForward(
          { x: conv, y: output, params, residual },
          { activation },
          this.#policy,
          this.#staging,
        ),
      );
      return { unit, input, conv, output, activation, residual };
    }
    const channels = [unit.bn.channels];
    const saved = {
      mean: tensorDesc(`${unit.bn.name} mean`, channels),
      invStd: tensorDesc(`${unit.bn.name} invstd`, channels),
    };
    p.add(
      unit.bn.name,
      batchNormTrainForward(
        { x: conv, y: output, params, saved, residual },
        { activation },
        this.#policy,
        this.#staging,
      ),
    );
    return { unit, input, conv, output, saved, activation, residual };
  }

  /** Backward of a unit given the gradient of its output; returns the gradient of its input. */
  #convBnBackward(
    tape: UnitTape,
    dOutput: Gradient,
    dResidual?: TensorDesc,
    inputGradient = true,
  ): TensorDesc {
    const p = this.program;
    const { unit } = tape;
    const dConv = this.#activation(`d ${tape.conv.label}`, tape.conv.shape);
    p.add(
      `${unit.bn.name} backward`,
      batchNormBackward(
        {
          x: tape.conv,
          y: tape.output,
          dy: dOutput.dy,
          dySecond: dOutput.dySecond,
          dx: dConv,
          dgamma: this.#weights.grad(`${unit.bn.name}.weight`),
          dbeta: this.#weights.grad(`${unit.bn.name}.bias`),
          params: this.#weights.batchNorm(unit.bn.name),
          saved: tape.saved!,
          dResidual,
        },
        { activation: tape.activation },
        this.#policy,
        this.#staging,
      ),
    );
    const dInput = this.#activation(`d ${tape.input.label}`, tape.input.shape);
    p.add(
      `${unit.conv.name} backward`,
      conv2dBackward(
        {
          x: tape.input,
          weight: this.#weights.param(`${unit.conv.name}.weight`),
          dy: dConv,
          dx: inputGradient ? dInput : undefined,
          dweight: this.#weights.grad(`${unit.conv.name}.weight`),
        },
        convConfig(unit),
        this.#policy,
        this.#staging,
      ),
    );
    return dInput;
  }
}
