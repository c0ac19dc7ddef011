/**
 * `deno task adapter`: which WebGPU adapter this machine gives, on which backend, the features the
 * runtime uses that it has, and its limits.
 */
import type { GpuBackend } from "../gpu/device.ts";
import { requestGpu } from "../gpu/deno_device.ts";
import { describeAdapter, describeFeatures } from "./describe.ts";
import { runCli } from "./run.ts";

/** What the backend line adds to the backend's name. */
const BACKEND_NOTES: Partial<Record<GpuBackend, string>> = {
  OpenGL: "Deno's fallback when it finds no Vulkan driver: install one (Debian/Ubuntu: " +
    "apt-get install mesa-vulkan-drivers) or check VK_ICD_FILENAMES and VK_DRIVER_FILES; " +
    "DENO_WEBGPU_BACKEND=vulkan refuses the fallback",
};

if (import.meta.main) {
  await runCli(async () => {
    const gpu = await requestGpu();
    const limits = gpu.device.limits;
    console.log(`adapter: ${describeAdapter(gpu)}`);
    const note = gpu.backend && BACKEND_NOTES[gpu.backend];
    console.log(`backend: ${gpu.backend ?? "unknown"}${note ? `, ${note}` : ""}`);
    console.log(`features: ${describeFeatures(gpu)}`);
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
