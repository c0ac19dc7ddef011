/**
 * The layer graph of a model as plain data: every convolution, batch norm, pooling and the
 * classifier, in forward order, with PyTorch's state-dict names (the book's ResNet: `conv`,
 * `conv2_x` .. `conv5_x` with `residual_function.i` and `shortcut.i` per block, `fc`; ResNet-9:
 * `prep`, `layer1`, `res1`, `layer2`, `layer3`, `res3`, `fc`). The scheduler, the parameter arena
 * and checkpoints all walk this one description.
 */
import {
  expansion,
  isResNet9,
  type ModelConfig,
  type ResNet9Config,
  type ResNetConfig,
  scaledWidth,
  STAGE_STRIDES,
  STAGE_WIDTHS,
} from "./config.ts";

export interface ConvSpec {
  /** State-dict prefix, e.g. `conv2_x.0.residual_function.0`. */
  name: string;
  inChannels: number;
  outChannels: number;
  kernelSize: 1 | 3;
  stride: 1 | 2;
  padding: 0 | 1;
}

export interface BatchNormSpec {
  name: string;
  channels: number;
}

/** A convolution followed by its batch norm: the unit every ResNet layer is made of. */
export interface ConvBn {
  conv: ConvSpec;
  bn: BatchNormSpec;
}

/** A ResNet block: ReLU(residual(x) + shortcut(x)). */
export interface BlockSpec {
  /** e.g. `conv3_x.0` */
  name: string;
  inChannels: number;
  outChannels: number;
  stride: 1 | 2;
  /** The residual branch: ReLU after every unit but the last, whose output joins the shortcut. */
  residual: ConvBn[];
  /** 1x1 conv + BN when the shape changes, else the identity. */
  shortcut?: ConvBn;
}

/**
 * The network body, in forward order:
 * - `unit`: conv, BN, ReLU;
 * - `max_pool`: 2x2 max pooling, stride 2;
 * - `block`: a ResNet block, whose last BN adds the shortcut before its ReLU;
 * - `residual`: ResNet-9's x + units(x), every unit with its ReLU, the sum after the last ReLU.
 */
export type Layer =
  | { kind: "unit"; unit: ConvBn }
  | { kind: "max_pool" }
  | { kind: "block"; block: BlockSpec }
  | { kind: "residual"; name: string; units: ConvBn[] };

export interface Architecture {
  config: ModelConfig;
  layers: Layer[];
  /** How the last feature map becomes one vector per image. */
  pool: "avg" | "max";
  /** The classifier; its output is multiplied by `scale`. */
  fc: { name: "fc"; inFeatures: number; outFeatures: number; scale: number };
}

function convBn(
  prefix: string,
  convIndex: number,
  inChannels: number,
  outChannels: number,
  kernelSize: 1 | 3,
  stride: 1 | 2,
): ConvBn {
  return {
    conv: {
      name: `${prefix}.${convIndex}`,
      inChannels,
      outChannels,
      kernelSize,
      stride,
      padding: kernelSize === 3 ? 1 : 0,
    },
    bn: { name: `${prefix}.${convIndex + 1}`, channels: outChannels },
  };
}

function residualBranch(
  name: string,
  config: ResNetConfig,
  inChannels: number,
  width: number,
  stride: 1 | 2,
) {
  const prefix = `${name}.residual_function`;
  // Sequential indices skip the ReLU modules: basic = conv0 bn1 relu2 conv3 bn4,
  // bottleneck = conv0 bn1 relu2 conv3 bn4 relu5 conv6 bn7.
  if (config.block === "basic") {
    return [
      convBn(prefix, 0, inChannels, width, 3, stride),
      convBn(prefix, 3, width, width, 3, 1),
    ];
  }
  return [
    convBn(prefix, 0, inChannels, width, 1, 1),
    convBn(prefix, 3, width, width, 3, stride),
    convBn(prefix, 6, width, width * 4, 1, 1),
  ];
}

export function buildArchitecture(config: ModelConfig): Architecture {
  return isResNet9(config) ? resNet9(config) : resNet(config);
}

function resNet(config: ResNetConfig): Architecture {
  const stemWidth = scaledWidth(STAGE_WIDTHS[0], config.widthMultiplier);
  const layers: Layer[] = [{ kind: "unit", unit: convBn("conv", 0, 3, stemWidth, 3, 1) }];
  let channels = stemWidth;
  STAGE_WIDTHS.forEach((stageWidth, stage) => {
    const width = scaledWidth(stageWidth, config.widthMultiplier);
    const outChannels = width * expansion(config.block);
    for (let index = 0; index < config.blocksPerStage[stage]; index++) {
      const name = `conv${stage + 2}_x.${index}`;
      const stride = index === 0 ? STAGE_STRIDES[stage] : 1;
      const needsProjection = stride !== 1 || channels !== outChannels;
      layers.push({
        kind: "block",
        block: {
          name,
          inChannels: channels,
          outChannels,
          stride,
          residual: residualBranch(name, config, channels, width, stride),
          shortcut: needsProjection
            ? convBn(`${name}.shortcut`, 0, channels, outChannels, 1, stride)
            : undefined,
        },
      });
      channels = outChannels;
    }
  });
  return {
    config,
    layers,
    pool: "avg",
    fc: { name: "fc", inFeatures: channels, outFeatures: config.classes, scale: 1 },
  };
}

/** ResNet-9's classifier output is multiplied by this (the DAWNBench entries' Mul(0.125)). */
export const RESNET9_LOGIT_SCALE = 0.125;

/**
 * ResNet-9 as a PyTorch module would hold it (README, "ResNet-9"): `prep`, then `layer1` (conv,
 * BN, ReLU, max-pool) with the residual `res1` (two conv-BN-ReLU: indices 0, 1 and 3, 4),
 * `layer2`, `layer3` with `res3`, a global max pool and `fc` scaled by 0.125.
 */
function resNet9(config: ResNet9Config): Architecture {
  const width = (base: number) => scaledWidth(base, config.widthMultiplier);
  const [prep, c1, c2, c3] = [64, 128, 256, 512].map(width);
  const unit = (name: string, inChannels: number, outChannels: number): Layer => ({
    kind: "unit",
    unit: convBn(name, 0, inChannels, outChannels, 3, 1),
  });
  const residual = (name: string, channels: number): Layer => ({
    kind: "residual",
    name,
    units: [convBn(name, 0, channels, channels, 3, 1), convBn(name, 3, channels, channels, 3, 1)],
  });
  const pool: Layer = { kind: "max_pool" };
  return {
    config,
    layers: [
      unit("prep", 3, prep),
      unit("layer1", prep, c1),
      pool,
      residual("res1", c1),
      unit("layer2", c1, c2),
      pool,
      unit("layer3", c2, c3),
      pool,
      residual("res3", c3),
    ],
    pool: "max",
    fc: { name: "fc", inFeatures: c3, outFeatures: config.classes, scale: RESNET9_LOGIT_SCALE },
  };
}

/** Every conv+BN unit in forward order (PyTorch's state-dict order). */
export function convBnUnits(architecture: Architecture): ConvBn[] {
  return architecture.layers.flatMap((layer) => {
    switch (layer.kind) {
      case "unit":
        return [layer.unit];
      case "max_pool":
        return [];
      case "block":
        return [...layer.block.residual, ...(layer.block.shortcut ? [layer.block.shortcut] : [])];
      case "residual":
        return layer.units;
    }
  });
}
