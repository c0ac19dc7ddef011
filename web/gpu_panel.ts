/// <reference lib="dom" />
/**
 * The adapter panel: its name, whether it is a software one, the features the kernels can use
 * and the limits that bound the model and batch sizes.
 */
import { byId, element } from "./dom.ts";

/** f16 activations (--precision f16), subgroup operations, GPU timestamps (profiling). */
const FEATURES: readonly GPUFeatureName[] = ["shader-f16", "subgroups", "timestamp-query"];

/** The limits a training run meets first: buffer sizes and compute workgroups. */
const LIMITS = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxStorageBuffersPerShaderStage",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupsPerDimension",
] as const;

/** "Apple M2 (metal-3)", "google swiftshader (software)". */
export function adapterDescription(adapter: GPUAdapter): string {
  const info = adapter.info;
  const name = info.description ||
    [info.vendor, info.architecture, info.device].filter(Boolean).join(" ") || "unknown adapter";
  return isSoftware(adapter) ? `${name} (software)` : name;
}

function isSoftware(adapter: GPUAdapter): boolean {
  // Older browsers put the flag on the adapter, newer ones on its info.
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const legacy = adapter as GPUAdapter & { isFallbackAdapter?: boolean };
  return Boolean(info.isFallbackAdapter ?? legacy.isFallbackAdapter);
}

export function showAdapter(adapter: GPUAdapter): void {
  byId("gpu-panel").hidden = false;
  byId("adapter-name").textContent = adapterDescription(adapter);
  const info = adapter.info as GPUAdapterInfo & {
    subgroupMinSize?: number;
    subgroupMaxSize?: number;
  };
  const features = byId("adapter-features");
  features.replaceChildren(
    ...FEATURES.map((feature) =>
      element("li", {
        "data-feature": feature,
        "data-present": String(adapter.features.has(feature)),
        title: adapter.features.has(feature) ? "available" : "not available",
      }, feature)
    ),
  );
  const rows = LIMITS.map((name) => [name, formatLimit(adapter.limits[name])]);
  if (info.subgroupMinSize !== undefined && info.subgroupMaxSize !== undefined) {
    rows.push(["subgroup size", `${info.subgroupMinSize}–${info.subgroupMaxSize}`]);
  }
  byId("adapter-limits").replaceChildren(
    ...rows.map(([name, value]) =>
      element("tr", { "data-limit": name }, element("th", {}, name), element("td", {}, value))
    ),
  );
}

/** Byte counts in MiB where they are large, other counts as they are. */
function formatLimit(value: number): string {
  return value >= 1 << 20 && value % (1 << 20) === 0
    ? `${value / (1 << 20)} MiB`
    : value.toLocaleString("en-US");
}
