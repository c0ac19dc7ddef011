/**
 * The models: the CIFAR variant of ResNet (a 3x3 stem convolution without max-pool, four stages
 * of widths 64/128/256/512 times a width multiplier with strides 1, 2, 2, 2, global average
 * pooling and a linear classifier; BasicBlock for ResNet-18/34, Bottleneck (expansion 4) for
 * 50/101/152), and ResNet-9, the residual network of the DAWNBench CIFAR-10 entries
 * (src/model/architecture.ts has its layers).
 */
import * as z from "zod/mini";

export const STAGE_WIDTHS = [64, 128, 256, 512] as const;
export const STAGE_STRIDES = [1, 2, 2, 2] as const;

/**
 * The fewest channels a stage of a network the commands train may have: below it the network is
 * too narrow to learn anything (--width 1e-9 once built, and trained, a network of 1-channel
 * stages, 234 parameters).
 */
export const MIN_STAGE_CHANNELS = 4;
export const MAX_WIDTH_MULTIPLIER = 16;
/**
 * The smallest width multiplier that leaves the narrowest stages (the stem and the first stage,
 * 64 channels at width 1) MIN_STAGE_CHANNELS after rounding: 3.5 / 64 = 0.0546875, at which their
 * 3.5 channels round to 4.
 */
export const MIN_WIDTH_MULTIPLIER = (MIN_STAGE_CHANNELS - 0.5) / STAGE_WIDTHS[0];

export const blockKinds = ["basic", "bottleneck"] as const;
export type BlockKind = typeof blockKinds[number];

const blockCount = z.number().check(z.int(), z.minimum(1));

export const resNetConfigSchema = z.object({
  block: z.enum(blockKinds),
  blocksPerStage: z.tuple([blockCount, blockCount, blockCount, blockCount]),
  // Any positive width builds (the tests and the PyTorch fixtures use narrower ones); the
  // commands' --width holds to MIN_WIDTH_MULTIPLIER.
  widthMultiplier: z.number().check(z.positive(), z.maximum(MAX_WIDTH_MULTIPLIER)),
  classes: z.number().check(z.int(), z.minimum(2)),
});
export type ResNetConfig = z.infer<typeof resNetConfigSchema>;

export const resNet9ConfigSchema = z.object({
  kind: z.literal("resnet9"),
  widthMultiplier: z.number().check(z.positive(), z.maximum(MAX_WIDTH_MULTIPLIER)),
  classes: z.number().check(z.int(), z.minimum(2)),
});
export type ResNet9Config = z.infer<typeof resNet9ConfigSchema>;

/**
 * Any model. A ResNet's config has no `kind` (checkpoints written before ResNet-9 existed stored
 * it so); ResNet-9's is marked by its `kind`.
 */
export const modelConfigSchema = z.union([resNet9ConfigSchema, resNetConfigSchema]);
export type ModelConfig = ResNetConfig | ResNet9Config;

export function isResNet9(config: ModelConfig): config is ResNet9Config {
  return "kind" in config && config.kind === "resnet9";
}

export const presets = {
  resnet18: { block: "basic", blocksPerStage: [2, 2, 2, 2] },
  resnet34: { block: "basic", blocksPerStage: [3, 4, 6, 3] },
  resnet50: { block: "bottleneck", blocksPerStage: [3, 4, 6, 3] },
  resnet101: { block: "bottleneck", blocksPerStage: [3, 4, 23, 3] },
  resnet152: { block: "bottleneck", blocksPerStage: [3, 8, 36, 3] },
} as const satisfies Record<string, Pick<ResNetConfig, "block" | "blocksPerStage">>;
export type PresetName = keyof typeof presets;
export const presetNames = Object.keys(presets) as PresetName[];

/** What --model accepts: the ResNets and ResNet-9. */
export const modelNames = [...presetNames, "resnet9"] as const;
export type ModelName = PresetName | "resnet9";

export function modelConfig(name: ModelName, widthMultiplier = 1, classes = 10): ModelConfig {
  return name === "resnet9"
    ? { kind: "resnet9", widthMultiplier, classes }
    : resnetConfig(name, widthMultiplier, classes);
}

export function resnetConfig(preset: PresetName, widthMultiplier = 1, classes = 10): ResNetConfig {
  const { block, blocksPerStage } = presets[preset];
  return { block, blocksPerStage: [...blocksPerStage], widthMultiplier, classes };
}

export function expansion(block: BlockKind): number {
  return block === "basic" ? 1 : 4;
}

/** A stage's (or the stem's) channel count after the width multiplier: rounded, at least 1. */
export function scaledWidth(width: number, multiplier: number): number {
  return Math.max(1, Math.round(width * multiplier));
}
