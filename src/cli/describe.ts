/** How the commands name the adapter they run on and the model they train or load. */
import { type Gpu, OPTIONAL_FEATURES } from "../gpu/device.ts";
import { isResNet9, type ModelConfig, presetNames, presets } from "../model/config.ts";

/**
 * "llvmpipe (LLVM 15.0.6, 256 bits) (software, Vulkan, 4 worker threads)": the adapter, whether it
 * runs on the CPU, the backend, so that Deno's silent fallback to OpenGL shows, and a software
 * adapter's worker threads where known.
 */
export function describeAdapter(
  gpu: Pick<Gpu, "adapterName" | "isFallbackAdapter" | "backend" | "cpuThreads">,
): string {
  const notes = [
    gpu.isFallbackAdapter ? "software" : undefined,
    gpu.backend,
    gpu.cpuThreads === undefined ? undefined : `${gpu.cpuThreads} worker threads`,
  ].filter(Boolean);
  return notes.length > 0 ? `${gpu.adapterName} (${notes.join(", ")})` : gpu.adapterName;
}

/**
 * "shader-f16, timestamp-query, no subgroups": which of the features the runtime uses the device
 * got; subgroups also say whether the kernels that share loads by broadcasts run (the probe,
 * src/gpu/subgroup_probe.ts): "subgroups (used)" or "subgroups (unused: not as the kernels need)".
 */
export function describeFeatures(gpu: {
  device: { features: ReadonlySetLike<string> };
  subgroups: boolean;
}): string {
  return OPTIONAL_FEATURES.map((feature) => {
    if (!gpu.device.features.has(feature)) return `no ${feature}`;
    if (feature !== "subgroups") return feature;
    return gpu.subgroups ? "subgroups (used)" : "subgroups (unused: not as the kernels need)";
  }).join(", ");
}

/** "resnet18 width 0.25"; a ResNet config that is no preset is named by its blocks. */
export function describeModel(config: ModelConfig): string {
  if (isResNet9(config)) return `resnet9 width ${config.widthMultiplier}`;
  const name = presetNames.find((preset) =>
    presets[preset].block === config.block &&
    presets[preset].blocksPerStage.every((blocks, i) => blocks === config.blocksPerStage[i])
  ) ?? `ResNet of ${config.block} blocks [${config.blocksPerStage}]`;
  return `${name} width ${config.widthMultiplier}`;
}
