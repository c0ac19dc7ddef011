/**
 * Builds the program of a ResNet step: the forward pass (training or evaluation mode), and for
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
import { linearBackward, linearForward } from "../ops/linear.ts";
import type { KernelPolicy } from "../ops/policy.ts";
import { activationDtype } from "../ops/shape.ts";
import { crossEntropyEvaluate, crossEntropyTrain } from "../ops/softmax_cross_entropy.ts";
import type { ConvBn } from "../model/architecture.ts";
import type { WeightTensors } from "../model/weights.ts";
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

function convConfig(unit: ConvBn): Conv2dConfig {
  return { kernelSize: unit.conv.kernelSize, stride: unit.conv.stride, padding: unit.conv.padding };
}

/** The whole step: forward, loss, and (training) backward, with the FORWARD_END mark. */
export function buildNetworkProgram(
  weights: WeightTensors,
  mode: Mode,
  io: NetworkIo,
  policy: KernelPolicy,
): Program {
  return new NetworkBuilder(weights, mode, policy, activationDtype("network", io.input)).build(io);
}

class NetworkBuilder {
  readonly program = new Program();
  readonly #weights: WeightTensors;
  readonly #mode: Mode;
  readonly #policy: KernelPolicy;
  readonly #dtype: DType;

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

  build(io: NetworkIo): Program {
    const { architecture } = this.#weights;
    const p = this.program;

    const stem = this.#convBn(architecture.stem, io.input, "relu");
    let x = stem.output;
    const blocks: { input: TensorDesc; residual: UnitTape[]; shortcut?: UnitTape }[] = [];
    for (const block of architecture.blocks) {
      const blockInput = x;
      const residual: UnitTape[] = [];
      let t = blockInput;
      block.residual.forEach((unit, index) => {
        const last = index === block.residual.length - 1;
        if (!last) {
          residual.push(this.#convBn(unit, t, "relu"));
          t = residual[residual.length - 1].output;
          return;
        }
        const shortcut = block.shortcut
          ? this.#convBn(block.shortcut, blockInput, "none")
          : undefined;
        residual.push(this.#convBn(unit, t, "relu", shortcut?.output ?? blockInput));
        blocks.push({ input: blockInput, residual, shortcut });
      });
      x = residual[residual.length - 1].output;
    }

    const [n, , , channels] = x.shape;
    const pooled = tensorDesc("pooled", [n, channels]);
    p.add("global_avg_pool", globalAvgPoolForward({ x, y: pooled }));
    const fc = {
      x: pooled,
      weight: this.#weights.param("fc.weight"),
      bias: this.#weights.param("fc.bias"),
    };
    const logits = io.logits ?? tensorDesc("logits", [n, architecture.fc.outFeatures]);
    p.add("fc", linearForward({ ...fc, y: logits }));
    const loss = { logits, labels: io.labels, metrics: io.metrics };
    if (this.#mode === "eval") {
      if (!io.confusion) throw new Error("plan: an evaluation plan needs a confusion tensor");
      p.add("loss", crossEntropyEvaluate({ ...loss, confusion: io.confusion }));
      p.mark(FORWARD_END);
      return p;
    }
    const dlogits = tensorDesc("d logits", logits.shape);
    p.add("loss", crossEntropyTrain({ ...loss, dlogits, lossScale: io.lossScale }));
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
      }),
    );
    let dx = this.#activation(`d ${x.label}`, x.shape);
    p.add("global_avg_pool backward", globalAvgPoolBackward({ dy: dpooled, dx }));

    for (const block of blocks.toReversed()) {
      const [lastUnit, ...earlier] = block.residual.toReversed();
      const dResidual = this.#activation(
        `d ${lastUnit.residual!.label}`,
        lastUnit.residual!.shape,
      );
      let d = this.#convBnBackward(lastUnit, dx, dResidual);
      for (const unit of earlier) d = this.#convBnBackward(unit, d);
      const dFromShortcut = block.shortcut
        ? this.#convBnBackward(block.shortcut, dResidual)
        : dResidual;
      const dInput = this.#activation(`d ${block.input.label}`, block.input.shape);
      p.add(
        `sum of gradients into ${block.input.label}`,
        addForward({ a: d, b: dFromShortcut, y: dInput }),
      );
      dx = dInput;
    }
    this.#convBnBackward(stem, dx, undefined, false);
    return p;
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
    p.add(unit.conv.name, conv2dForward({ x: input, weight, y: conv }, config, this.#policy));

    const params = this.#weights.batchNorm(unit.bn.name);
    const output = this.#activation(unit.bn.name, conv.shape);
    if (this.#mode === "eval") {
      p.add(
        unit.bn.name,
        batchNormEvalForward(
          { x: conv, y: output, params, residual },
          { activation },
          this.#policy,
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
      ),
    );
    return { unit, input, conv, output, saved, activation, residual };
  }

  /** Backward of a unit given the gradient of its output; returns the gradient of its input. */
  #convBnBackward(
    tape: UnitTape,
    dOutput: TensorDesc,
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
          dy: dOutput,
          dx: dConv,
          dgamma: this.#weights.grad(`${unit.bn.name}.weight`),
          dbeta: this.#weights.grad(`${unit.bn.name}.bias`),
          params: this.#weights.batchNorm(unit.bn.name),
          saved: tape.saved!,
          dResidual,
        },
        { activation: tape.activation },
        this.#policy,
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
      ),
    );
    return dInput;
  }
}
