/** `deno task adapter`: which WebGPU adapter this machine gives, and its limits. */
import { requestGpu } from "../gpu/device.ts";
import { runCli } from "./run.ts";

if (import.meta.main) {
  await runCli(async () => {
    const gpu = await requestGpu();
    const limits = gpu.device.limits;
    console.log(`adapter: ${gpu.adapterName}${gpu.isFallbackAdapter ? " (software)" : ""}`);
    for (
      const name of [
        "maxStorageBufferBindingSize",
        "maxBufferSize",
        "maxStorageBuffersPerShaderStage",
        "maxComputeWorkgroupStorageSize",
        "maxComputeInvocationsPerWorkgroup",
        "maxComputeWorkgroupsPerDimension",
      ] as const
    ) {
      console.log(`${name}: ${limits[name]}`);
    }
    gpu.device.destroy();
  });
}
