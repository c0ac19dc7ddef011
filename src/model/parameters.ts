/**
 * Every state-dict entry of a ResNet with its shape in the project's layout and in PyTorch's,
 * how it is initialised, and where it lives in the flat parameter arena.
 *
 * Trainable parameters (conv and fc weights, BN weight and bias) share one arena buffer, so an
 * optimizer is one dispatch over all of them; gradients use the same layout in a second buffer.
 * BN running statistics live in a state arena of the same kind; num_batches_tracked counters in a
 * small u32 buffer.
 */
import { STORAGE_ALIGNMENT } from "../gpu/buffer.ts";
import { elementCount } from "../util/shape.ts";
import { type Architecture, convBnUnits } from "./architecture.ts";

export type ParameterRole = "conv_weight" | "bn_weight" | "bn_bias" | "fc_weight" | "fc_bias";
export type StateRole = "running_mean" | "running_var";

export interface TensorSpec<Role> {
  /** PyTorch state-dict name, e.g. `conv2_x.0.residual_function.1.weight`. */
  name: string;
  role: Role;
  /** Shape on the GPU: OHWI for conv weights, as PyTorch otherwise. */
  shape: number[];
  /** Shape in a PyTorch state dict: OIHW for conv weights. */
  torchShape: number[];
  /** Fan-in of the layer, for PyTorch's default initialisation. */
  fanIn: number;
}

export type ParameterSpec = TensorSpec<ParameterRole>;
export type StateSpec = TensorSpec<StateRole>;

export function parameterSpecs(architecture: Architecture): ParameterSpec[] {
  const specs: ParameterSpec[] = [];
  for (const { conv, bn } of convBnUnits(architecture)) {
    const k = conv.kernelSize;
    specs.push({
      name: `${conv.name}.weight`,
      role: "conv_weight",
      shape: [conv.outChannels, k, k, conv.inChannels],
      torchShape: [conv.outChannels, conv.inChannels, k, k],
      fanIn: conv.inChannels * k * k,
    });
    for (const role of ["bn_weight", "bn_bias"] as const) {
      specs.push({
        name: `${bn.name}.${role === "bn_weight" ? "weight" : "bias"}`,
        role,
        shape: [bn.channels],
        torchShape: [bn.channels],
        fanIn: bn.channels,
      });
    }
  }
  const { fc } = architecture;
  specs.push(
    {
      name: "fc.weight",
      role: "fc_weight",
      shape: [fc.outFeatures, fc.inFeatures],
      torchShape: [fc.outFeatures, fc.inFeatures],
      fanIn: fc.inFeatures,
    },
    {
      name: "fc.bias",
      role: "fc_bias",
      shape: [fc.outFeatures],
      torchShape: [fc.outFeatures],
      fanIn: fc.inFeatures,
    },
  );
  return specs;
}

/** running_mean and running_var of every BN (num_batches_tracked is counted apart). */
export function stateSpecs(architecture: Architecture): StateSpec[] {
  return convBnUnits(architecture).flatMap(({ bn }) =>
    (["running_mean", "running_var"] as const).map((role) => ({
      name: `${bn.name}.${role}`,
      role,
      shape: [bn.channels],
      torchShape: [bn.channels],
      fanIn: bn.channels,
    }))
  );
}

/** The number of trainable parameters, as PyTorch's `sum(p.numel() for p in model.parameters())`. */
export function countParameters(architecture: Architecture): number {
  return parameterSpecs(architecture).reduce((sum, spec) => sum + elementCount(spec.shape), 0);
}

export interface ArenaEntry<Spec> {
  spec: Spec;
  /** Byte offset in the arena, a multiple of the alignment. */
  offset: number;
}

export interface ArenaLayout<Spec> {
  entries: ArenaEntry<Spec>[];
  /** Total bytes, a multiple of the alignment. */
  size: number;
}

/**
 * Packs f32 tensors one after another, each at an offset aligned for binding as its own storage
 * range (STORAGE_ALIGNMENT).
 */
export function layoutArena<Spec extends { shape: number[] }>(
  specs: readonly Spec[],
): ArenaLayout<Spec> {
  const alignment = STORAGE_ALIGNMENT;
  let offset = 0;
  const entries = specs.map((spec) => {
    const entry = { spec, offset };
    offset += Math.ceil((elementCount(spec.shape) * 4) / alignment) * alignment;
    return entry;
  });
  return { entries, size: Math.max(offset, alignment) };
}
