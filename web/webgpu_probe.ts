/// <reference lib="dom" />
/**
 * Whether this browser can run the page, and if not why: no `navigator.gpu` (an old browser,
 * WebGPU turned off, or a page that is not a secure context), or no adapter (the GPU or its
 * driver is blocklisted, or Linux without the flags).
 */

export type WebGpuProbe =
  | { available: true; adapter: GPUAdapter }
  | { available: false; reason: string };

export async function probeWebGpu(): Promise<WebGpuProbe> {
  if (!("gpu" in navigator) || !navigator.gpu) {
    return {
      available: false,
      reason: globalThis.isSecureContext
        ? "navigator.gpu is missing: this browser has no WebGPU, or it is turned off."
        : `navigator.gpu is missing because ${location.origin} is not a secure context: ` +
          "browsers offer WebGPU only to https pages and to localhost.",
    };
  }
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) {
    return {
      available: false,
      reason: "navigator.gpu.requestAdapter() found no adapter: WebGPU is there but not for " +
        "this GPU or driver (on Linux, most GPUs need the flags below).",
    };
  }
  return { available: true, adapter };
}
