/**
 * Adapter and device acquisition. The project stays within WebGPU's default limits (8 storage
 * buffers per stage, 16 KiB workgroup memory, 128 MiB per binding) so that the same kernels run
 * in browsers; a caller can ask for more explicitly.
 */
import { UserError } from "../errors.ts";
import { PipelineCache } from "./pipeline.ts";
import { subgroupsAsExpected } from "./subgroup_probe.ts";

/** Raised when no WebGPU adapter or device can be had; the message names the fix. */
export class GpuUnavailableError extends UserError {
  override name = "GpuUnavailableError";
}

export interface GpuOptions {
  powerPreference?: GPUPowerPreference;
  /** Limits above WebGPU's defaults, e.g. `{ maxStorageBufferBindingSize: 1 << 30 }`. */
  requiredLimits?: Record<string, number>;
  /**
   * Asks for the adapter's largest buffers and bindings instead of WebGPU's defaults (256 MiB and
   * 128 MiB): training at a large batch binds activations beyond 128 MiB (ResNet-9's first layer
   * at batch 512 holds 256 MiB in f32). The kernels themselves keep to the default limits.
   */
  largestBuffers?: boolean;
  /** Default: every feature of `OPTIONAL_FEATURES` the adapter offers. */
  requiredFeatures?: GPUFeatureName[];
  /**
   * Tells the native API under the adapter, which WebGPU does not say: Deno's side reads it
   * from the platform (src/gpu/deno_device.ts); a browser leaves it out.
   */
  identifyBackend?: (adapter: GPUAdapter) => GpuBackend | undefined;
  /** Whether kernels that use subgroups need `enable subgroups;` (PipelineCacheOptions). */
  subgroupDirective?: boolean;
}

/**
 * Features the runtime uses where the adapter has them, asked for by default: f16 activations
 * (`--precision f16`), GPU timestamps (`deno task bench --profile`) and subgroup operations
 * (`Gpu.subgroups`). `gpu.device.features` tells what the device got.
 */
export const OPTIONAL_FEATURES: readonly GPUFeatureName[] = [
  "shader-f16",
  "timestamp-query",
  "subgroups",
];

/** The native graphics API under WebGPU, as wgpu (Deno's WebGPU) names its backends. */
export type GpuBackend = "Vulkan" | "Metal" | "Direct3D 12" | "OpenGL";

/** A device with what the runtime needs beside it: the adapter's name and a pipeline cache. */
export interface Gpu {
  readonly device: GPUDevice;
  readonly adapterName: string;
  /**
   * The backend Deno runs WebGPU on (`identifyBackend`), undefined in a browser. Deno falls back
   * to OpenGL when it finds no Vulkan driver, without saying so; the commands name the backend in
   * the adapter line.
   */
  readonly backend?: GpuBackend;
  /** True for software adapters (lavapipe, SwiftShader): kernels pick their CPU-friendly variant. */
  readonly isFallbackAdapter: boolean;
  /**
   * A software adapter's worker threads where the runtime knows them (lavapipe's LP_NUM_THREADS,
   * src/gpu/deno_device.ts): its kernels' speed depends on them.
   */
  readonly cpuThreads?: number;
  readonly pipelines: PipelineCache;
  /**
   * True where the device has the `subgroups` feature and its subgroups are as the kernels that
   * share loads by broadcasts expect them (src/gpu/subgroup_probe.ts checks): the kernel policy
   * offers those kernels only then.
   */
  readonly subgroups: boolean;
  /** Resolves when the device is lost; a loss other than `destroy()` is also logged with its reason. */
  readonly lost: Promise<GPUDeviceLostInfo>;
  /** The first validation or out-of-memory error raised outside an error scope, then cleared. */
  takeUncapturedError(): GPUError | undefined;
}

const NO_ADAPTER_FIX =
  "install a GPU driver with Vulkan, Metal or D3D12 support, or on a machine " +
  "without a GPU install a software one (Debian/Ubuntu: apt-get install mesa-vulkan-drivers)";

export async function requestGpu(options: GpuOptions = {}): Promise<Gpu> {
  if (typeof navigator === "undefined" || !("gpu" in navigator) || !navigator.gpu) {
    throw new GpuUnavailableError(
      "WebGPU is not available here (navigator.gpu is missing): run under Deno 2.9+ or a " +
        "browser with WebGPU enabled",
    );
  }
  const adapter = await navigator.gpu.requestAdapter({
    powerPreference: options.powerPreference ?? "high-performance",
  });
  if (!adapter) throw new GpuUnavailableError(`No WebGPU adapter found: ${NO_ADAPTER_FIX}`);
  for (const [name, value] of Object.entries(options.requiredLimits ?? {})) {
    const supported = (adapter.limits as unknown as Record<string, number>)[name];
    if (supported === undefined) {
      throw new GpuUnavailableError(`Unknown WebGPU limit ${name}: check its spelling`);
    }
    if (value > supported) {
      throw new GpuUnavailableError(
        `Adapter limit ${name} is ${supported}, below the ${value} asked for: ask for less`,
      );
    }
  }
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({
      requiredLimits: options.largestBuffers
        ? {
          maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
          maxBufferSize: adapter.limits.maxBufferSize,
          ...options.requiredLimits,
        }
        : options.requiredLimits,
      requiredFeatures: options.requiredFeatures ??
        OPTIONAL_FEATURES.filter((feature) => adapter.features.has(feature)),
    });
  } catch (error) {
    throw new GpuUnavailableError(
      `The adapter refused a device (${String(error)}): ${NO_ADAPTER_FIX}`,
    );
  }
  const info = adapter.info;
  const backend = options.identifyBackend?.(adapter);
  const adapterName = info.description || [info.vendor, info.architecture, info.device]
    .filter(Boolean).join(" ") ||
    "unknown adapter";

  // Exiting Deno with a live device lets lavapipe's threads race the process teardown (a heap
  // corruption abort, exit code 134, about one exit in six): destroy it first.
  globalThis.addEventListener("unload", () => device.destroy());

  let uncaptured: GPUError | undefined;
  device.addEventListener("uncapturederror", (event) => {
    uncaptured ??= (event as GPUUncapturedErrorEvent).error;
  });
  const lost = device.lost.then((lostInfo) => {
    if (lostInfo.reason !== "destroyed") {
      console.error(`GPU device lost (${lostInfo.reason}): ${lostInfo.message}`);
    }
    return lostInfo;
  });
  const gpu = {
    device,
    adapterName,
    backend,
    isFallbackAdapter: info.isFallbackAdapter,
    pipelines: new PipelineCache(device, { subgroupDirective: options.subgroupDirective }),
    lost,
    takeUncapturedError() {
      const error = uncaptured;
      uncaptured = undefined;
      return error;
    },
  };
  const subgroups = device.features.has("subgroups") && await subgroupsAsExpected(gpu);
  return { ...gpu, subgroups };
}
