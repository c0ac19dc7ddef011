/**
 * The layer graph of a ResNet as plain data: every convolution, batch norm and the classifier,
 * in forward order, with PyTorch's state-dict names (the book's model: `conv`, `conv2_x` ..
 * `conv5_x` with `residual_function.i` and `shortcut.i` per block, `fc`). The scheduler, the
 * parameter arena, checkpoints and the CPU reference all walk this one description.
 */
import {
  expansion,
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

export interface Architecture {
  config: ResNetConfig;
  stem: ConvBn;
  blocks: BlockSpec[];
  fc: { name: "fc"; inFeatures: number; outFeatures: number };
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

export function buildArchitecture(config: ResNetConfig): Architecture {
  const stemWidth = scaledWidth(STAGE_WIDTHS[0], config.widthMultiplier);
  const stem = convBn("conv", 0, 3, stemWidth, 3, 1);
  const blocks: BlockSpec[] = [];
  let channels = stemWidth;
  STAGE_WIDTHS.forEach((stageWidth, stage) => {
    const width = scaledWidth(stageWidth, config.widthMultiplier);
    const outChannels = width * expansion(config.block);
    for (let index = 0; index < config.blocksPerStage[stage]; index++) {
      const name = `conv${stage + 2}_x.${index}`;
      const stride = index === 0 ? STAGE_STRIDES[stage] : 1;
      const needsProjection = stride !== 1 || channels !== outChannels;
      blocks.push({
        name,
        inChannels: channels,
        outChannels,
        stride,
        residual: residualBranch(name, config, channels, width, stride),
        shortcut: needsProjection
          ? convBn(`${name}.shortcut`, 0, channels, outChannels, 1, stride)
          : undefined,
      });
      channels = outChannels;
    }
  });
  return {
    config,
    stem,
    blocks,
    fc: { name: "fc", inFeatures: channels, outFeatures: config.classes },
  };
}

/** Every conv+BN unit in forward order (stem, then each block's residual branch and shortcut). */
export function convBnUnits(architecture: Architecture): ConvBn[] {
  return [
    architecture.stem,
    ...architecture.blocks.flatMap((
      block,
    ) => [...block.residual, ...(block.shortcut ? [block.shortcut] : [])]),
  ];
}
