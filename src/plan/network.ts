/**
 * Builds the program of a ResNet step: the forward pass (training or evaluation mode), and for
 * training the backward pass in reverse, over virtual tensors. Every conv+BN unit records what
 * its backward needs on a tape as the forward is built.
 */
import type { Gpu } from "../gpu/device.ts";
import type { Dispatch } from "../gpu/dispatch.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { addForward } from "../ops/add.ts";
import {
  type BatchNormActivation,
  batchNormBackward,
  batchNormEvalForward,
  batchNormTrainForward,
  batchNormWorkspaceSize,
} from "../ops/batchnorm.ts";
import {
  conv2dBackward,
  type Conv2dConfig,
  conv2dForward,
  conv2dOutputShape,
  conv2dWorkspaceSize,
} from "../ops/conv2d.ts";
import { globalAvgPoolBackward, globalAvgPoolForward } from "../ops/global_avg_pool.ts";
import { linearBackward, linearForward } from "../ops/linear.ts";
import { crossEntropyEvaluate, crossEntropyTrain } from "../ops/softmax_cross_entropy.ts";
import type { ConvBn } from "../model/architecture.ts";
import type { ModelWeights } from "../model/weights.ts";
import { Program, type Resolve, type VirtualTensor } from "./program.ts";

export type Mode = "train" | "eval";

export interface NetworkIo {
  /** [N, 32, 32, 3] NHWC images, normalised. */
  input: Tensor;
  /** [N] u32 labels. */
  labels: Tensor;
  /** Loss and accuracy sums (softmax_cross_entropy.ts). */
  metrics: Tensor;
  /** Evaluation only: the [classes, classes] confusion counts. */
  confusion?: Tensor;
  /** Where the logits go when the caller wants them (prediction); transient otherwise. */
  logits?: Tensor;
}

/** What a conv+BN unit's backward needs from its forward. */
interface UnitTape {
  unit: ConvBn;
  input: VirtualTensor;
  conv: VirtualTensor;
  output: VirtualTensor;
  saved?: { mean: VirtualTensor; invStd: VirtualTensor };
  activation: BatchNormActivation;
  residual?: VirtualTensor;
}

function convConfig(unit: ConvBn): Conv2dConfig {
  return { kernelSize: unit.conv.kernelSize, stride: unit.conv.stride, padding: unit.conv.padding };
}

export class NetworkProgram {
  readonly program = new Program();
  /** Steps of the forward pass and loss; the backward's follow. */
  forwardSteps = 0;
  readonly #gpu: Gpu;
  readonly #weights: ModelWeights;
  readonly #mode: Mode;
  #convWorkspaceBytes = 4;
  #bnWorkspaceBytes = 4;
  // Workspaces are shared by every layer (dispatches run in order); sized once the program is known.
  readonly #convWorkspace: VirtualTensor;
  readonly #bnWorkspace: VirtualTensor;
  #workspaces?: { conv: Tensor; bn: Tensor };

  constructor(gpu: Gpu, weights: ModelWeights, mode: Mode) {
    this.#gpu = gpu;
    this.#weights = weights;
    this.#mode = mode;
    this.#convWorkspace = { id: -1, label: "conv workspace", shape: [1] };
    this.#bnWorkspace = { id: -2, label: "batch-norm workspace", shape: [1] };
  }

  /** Creates the shared workspaces at their final sizes; call after the program is built. */
  createWorkspaces(create: (label: string, bytes: number) => Tensor): { conv: Tensor; bn: Tensor } {
    this.#workspaces = {
      conv: create("conv workspace", this.#convWorkspaceBytes),
      bn: create("batch-norm workspace", this.#bnWorkspaceBytes),
    };
    return this.#workspaces;
  }

  #workspace(kind: "conv" | "bn"): Tensor {
    if (!this.#workspaces) throw new Error("plan: workspaces used before they were created");
    return this.#workspaces[kind];
  }

  /** Adds the whole step: forward, loss, and (training) backward. */
  build(io: NetworkIo): void {
    const { architecture } = this.#weights;
    const p = this.program;
    const input = p.fixed(io.input);

    const stem = this.#convBn(architecture.stem, input, "relu");
    let x = stem.output;
    const blocks: { input: VirtualTensor; residual: UnitTape[]; shortcut?: UnitTape }[] = [];
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
    const pooled = p.tensor("pooled", [n, channels]);
    this.#step(
      "global_avg_pool",
      [x],
      [pooled],
      (r) => globalAvgPoolForward(this.#gpu, r(x), r(pooled)).then((d) => [d]),
    );
    const fc = architecture.fc;
    const weight = p.fixed(this.#weights.param("fc.weight"));
    const bias = p.fixed(this.#weights.param("fc.bias"));
    const logits = io.logits ? p.fixed(io.logits) : p.tensor("logits", [n, fc.outFeatures]);
    this.#step("fc", [pooled], [logits], async (r) => [
      await linearForward(this.#gpu, {
        x: r(pooled),
        weight: r(weight),
        bias: r(bias),
        y: r(logits),
      }),
    ]);
    const labels = p.fixed(io.labels);
    const metrics = p.fixed(io.metrics);
    if (this.#mode === "eval") {
      if (!io.confusion) throw new Error("plan: an evaluation plan needs a confusion tensor");
      const confusion = p.fixed(io.confusion);
      this.#step("cross entropy", [logits], [], async (r) => [
        await crossEntropyEvaluate(this.#gpu, {
          logits: r(logits),
          labels: r(labels),
          metrics: r(metrics),
          confusion: r(confusion),
        }),
      ]);
      this.forwardSteps = p.steps.length;
      return;
    }
    const dlogits = p.tensor("dlogits", logits.shape);
    this.forwardSteps = p.steps.length + 1;
    this.#step("cross entropy", [logits], [dlogits], async (r) => [
      await crossEntropyTrain(this.#gpu, {
        logits: r(logits),
        labels: r(labels),
        metrics: r(metrics),
        dlogits: r(dlogits),
      }),
    ]);

    // Backward, in reverse.
    const dpooled = p.tensor("d pooled", pooled.shape);
    const dweight = p.fixed(this.#weights.grad("fc.weight"));
    const dbias = p.fixed(this.#weights.grad("fc.bias"));
    this.#step("fc backward", [pooled, dlogits], [dpooled], (r) =>
      linearBackward(this.#gpu, {
        x: r(pooled),
        weight: r(weight),
        bias: r(bias),
        dy: r(dlogits),
        dx: r(dpooled),
        dweight: r(dweight),
        dbias: r(dbias),
      }));
    let dx = p.tensor(`d ${x.label}`, x.shape);
    const dLast = dx;
    this.#step(
      "global_avg_pool backward",
      [dpooled],
      [dLast],
      (r) => globalAvgPoolBackward(this.#gpu, r(dpooled), r(dLast)).then((d) => [d]),
    );

    for (const block of blocks.toReversed()) {
      const [lastUnit, ...earlier] = block.residual.toReversed();
      const dResidual = p.tensor(`d ${lastUnit.residual!.label}`, lastUnit.residual!.shape);
      let d = this.#convBnBackward(lastUnit, dx, dResidual);
      for (const unit of earlier) d = this.#convBnBackward(unit, d);
      const dFromShortcut = block.shortcut
        ? this.#convBnBackward(block.shortcut, dResidual)
        : dResidual;
      const dInput = p.tensor(`d ${block.input.label}`, block.input.shape);
      const dResidualBranch = d;
      this.#step(`sum of gradients into ${block.input.label}`, [dResidualBranch, dFromShortcut], [
        dInput,
      ], async (r) => [
        await addForward(this.#gpu, r(dResidualBranch), r(dFromShortcut), r(dInput)),
      ]);
      dx = dInput;
    }
    this.#convBnBackward(stem, dx, undefined, false);
  }

  #step(
    label: string,
    reads: VirtualTensor[],
    writes: VirtualTensor[],
    build: (resolve: Resolve) => Promise<Dispatch[]>,
  ): void {
    this.program.add({ label, reads, writes, build });
  }

  /** conv then BN (+ residual) (+ ReLU); returns the unit's tape. */
  #convBn(
    unit: ConvBn,
    input: VirtualTensor,
    activation: BatchNormActivation,
    residual?: VirtualTensor,
  ): UnitTape {
    const p = this.program;
    const config = convConfig(unit);
    const weight = p.fixed(this.#weights.param(`${unit.conv.name}.weight`));
    const conv = p.tensor(
      unit.conv.name,
      conv2dOutputShape(input.shape, unit.conv.outChannels, config),
    );
    this.#convWorkspaceBytes = Math.max(
      this.#convWorkspaceBytes,
      conv2dWorkspaceSize(this.#gpu, input.shape, unit.conv.outChannels, config),
    );
    this.#step(
      `${unit.conv.name} conv`,
      [input],
      [conv],
      (r) => conv2dForward(this.#gpu, { x: r(input), weight: r(weight), y: r(conv), config }),
    );

    const bn = this.#weights.batchNorm(unit.bn.name);
    const output = p.tensor(unit.bn.name, conv.shape);
    const reads = residual ? [conv, residual] : [conv];
    if (this.#mode === "eval") {
      this.#step(
        `${unit.bn.name} batch norm`,
        reads,
        [output],
        (r) =>
          batchNormEvalForward(this.#gpu, {
            x: r(conv),
            y: r(output),
            params: bn,
            residual: residual && r(residual),
            activation,
          }),
      );
      return { unit, input, conv, output, activation, residual };
    }
    this.#bnWorkspaceBytes = Math.max(
      this.#bnWorkspaceBytes,
      batchNormWorkspaceSize(this.#gpu, conv.shape),
    );
    const channels = [unit.bn.channels];
    const saved = {
      mean: p.tensor(`${unit.bn.name} mean`, channels),
      invStd: p.tensor(`${unit.bn.name} invstd`, channels),
    };
    this.#step(
      `${unit.bn.name} batch norm`,
      reads,
      [output, saved.mean, saved.invStd],
      (r) =>
        batchNormTrainForward(this.#gpu, {
          x: r(conv),
          y: r(output),
          params: bn,
          saved: { mean: r(saved.mean), invStd: r(saved.invStd) },
          workspace: this.#workspace("bn"),
          residual: residual && r(residual),
          activation,
        }),
    );
    return { unit, input, conv, output, saved, activation, residual };
  }

  /** Backward of a unit given the gradient of its output; returns the gradient of its input. */
  #convBnBackward(
    tape: UnitTape,
    dOutput: VirtualTensor,
    dResidual?: VirtualTensor,
    inputGradient = true,
  ): VirtualTensor {
    const p = this.program;
    const { unit } = tape;
    const bn = this.#weights.batchNorm(unit.bn.name);
    const saved = tape.saved!;
    const dConv = p.tensor(`d ${tape.conv.label}`, tape.conv.shape);
    const dgamma = p.fixed(this.#weights.grad(`${unit.bn.name}.weight`));
    const dbeta = p.fixed(this.#weights.grad(`${unit.bn.name}.bias`));
    this.#step(
      `${unit.bn.name} batch norm backward`,
      [tape.conv, tape.output, dOutput, saved.mean, saved.invStd],
      dResidual ? [dConv, dResidual] : [dConv],
      (r) =>
        batchNormBackward(this.#gpu, {
          x: r(tape.conv),
          y: r(tape.output),
          dy: r(dOutput),
          dx: r(dConv),
          dgamma: r(dgamma),
          dbeta: r(dbeta),
          params: bn,
          saved: { mean: r(saved.mean), invStd: r(saved.invStd) },
          workspace: this.#workspace("bn"),
          activation: tape.activation,
          dResidual: dResidual && r(dResidual),
        }),
    );
    const weight = p.fixed(this.#weights.param(`${unit.conv.name}.weight`));
    const dweight = p.fixed(this.#weights.grad(`${unit.conv.name}.weight`));
    const dInput = p.tensor(`d ${tape.input.label}`, tape.input.shape);
    const config = convConfig(unit);
    this.#step(
      `${unit.conv.name} conv backward`,
      [tape.input, dConv],
      inputGradient ? [dInput] : [],
      (r) =>
        conv2dBackward(this.#gpu, {
          x: r(tape.input),
          weight: r(weight),
          dy: r(dConv),
          dx: inputGradient ? r(dInput) : undefined,
          dweight: r(dweight),
          workspace: this.#workspace("conv"),
          config,
        }),
    );
    return dInput;
  }
}
