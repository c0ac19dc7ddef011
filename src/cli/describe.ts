/** How the commands name the adapter they run on and the model they train or load. */
import type { Gpu } from "../gpu/device.ts";
import { presetNames, presets, type ResNetConfig } from "../model/config.ts";

/** "llvmpipe (LLVM 15.0.6, 256 bits) (software)". */
export function describeAdapter(gpu: Gpu): string {
  return `${gpu.adapterName}${gpu.isFallbackAdapter ? " (software)" : ""}`;
}

/** "resnet18 width 0.25"; a config that is no preset is named by its blocks. */
export function describeModel(config: ResNetConfig): string {
  const name = presetNames.find((preset) =>
    presets[preset].block === config.block &&
    presets[preset].blocksPerStage.every((blocks, i) => blocks === config.blocksPerStage[i])
  ) ?? `ResNet of ${config.block} blocks [${config.blocksPerStage}]`;
  return `${name} width ${config.widthMultiplier}`;
}
