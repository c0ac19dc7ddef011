/**
 * Deno's side of device acquisition: `requestGpu` that also names the native backend under
 * WebGPU, which Deno's adapter info does not say. Browsers neither can nor need to.
 */
import {
  type Gpu,
  type GpuBackend,
  type GpuOptions,
  requestGpu as requestAnyGpu,
} from "./device.ts";

/**
 * A device, as src/gpu/device.ts's requestGpu, with `backend` read from the platform, and kernels
 * that use subgroups compiled without `enable subgroups;` (naga refuses the directive).
 */
export async function requestGpu(options: GpuOptions = {}): Promise<Gpu> {
  const cpuThreads = lavapipeThreads();
  const gpu = await requestAnyGpu({
    identifyBackend: (adapter) =>
      inferBackend(Deno.build.os, adapter.limits.maxBindingsPerBindGroup, requestedBackends()),
    subgroupDirective: false,
    ...options,
  });
  return gpu.isFallbackAdapter && cpuThreads !== undefined ? { ...gpu, cpuThreads } : gpu;
}

/** llvmpipe's most worker threads (LP_MAX_THREADS in Mesa 22-24's lp_limits.h). */
const LAVAPIPE_MAX_THREADS = 16;

/**
 * The worker threads lavapipe runs compute dispatches on: LP_NUM_THREADS as the user set it, or
 * else set here to two per core (at most 16) before the adapter exists, which is when Mesa reads
 * it. Mesa's default, one per core, hands each thread one fixed share of a dispatch's workgroups,
 * so a core slowed by anything else (the queue thread's texture copies, the host) holds up the
 * dispatch while the others wait; with two threads per core the kernel's scheduler moves the
 * late shares to the idle cores. On a 2-vCPU Zen 5 that took the idle part of a ResNet-18
 * training step from about 20% to 10%, 1.15x faster (bench/README.md, "Worker threads"); four
 * per core did no better. Without --allow-env it changes nothing and says it does not know.
 */
function lavapipeThreads(): number | undefined {
  const variable = "LP_NUM_THREADS";
  const permission = Deno.permissions.querySync({ name: "env", variable }).state;
  if (permission !== "granted") return undefined;
  const set = Deno.env.get(variable);
  if (set !== undefined) {
    const threads = Number(set);
    return Number.isInteger(threads) && threads > 0 ? threads : undefined;
  }
  const threads = Math.min(2 * navigator.hardwareConcurrency, LAVAPIPE_MAX_THREADS);
  Deno.env.set(variable, String(threads));
  return threads;
}

/** wgpu's names for its backends in DENO_WEBGPU_BACKEND (wgpu_types::Backends::from_comma_list). */
const BACKEND_NAMES: Record<string, GpuBackend> = {
  vulkan: "Vulkan",
  vk: "Vulkan",
  metal: "Metal",
  mtl: "Metal",
  dx12: "Direct3D 12",
  d3d12: "Direct3D 12",
  gl: "OpenGL",
  gles: "OpenGL",
  opengl: "OpenGL",
};

/** What Deno's wgpu reports as maxBindingsPerBindGroup where the native API sets no limit. */
const UNLIMITED = 2 ** 32 - 1;

/**
 * The backend an adapter runs on. Deno's GPUAdapterInfo does not say (Deno 2.9 exposes vendor,
 * device, description, subgroup sizes and isFallbackAdapter only), so it is read from a limit the
 * backends report differently: wgpu's OpenGL, Metal and Direct3D 12 backends report
 * maxBindingsPerBindGroup as unlimited (2^32 - 1), its Vulkan backend as WebGPU's default. Linux
 * has Vulkan and OpenGL; macOS Metal (and Vulkan through MoltenVK); Windows all three, where
 * Direct3D 12 and OpenGL are told apart only by DENO_WEBGPU_BACKEND (`requested`, the backends
 * it names; OpenGL is Windows' last resort, taken only without a Direct3D 12 driver).
 */
export function inferBackend(
  os: string,
  maxBindingsPerBindGroup: number,
  requested: readonly GpuBackend[] = [],
): GpuBackend | undefined {
  if (requested.length === 1) return requested[0];
  const allowed = (backend: GpuBackend) => requested.length === 0 || requested.includes(backend);
  if (maxBindingsPerBindGroup !== UNLIMITED) return "Vulkan";
  if (os === "darwin") return "Metal";
  if (os === "windows" && allowed("Direct3D 12")) return "Direct3D 12";
  return allowed("OpenGL") ? "OpenGL" : undefined;
}

/** The backends DENO_WEBGPU_BACKEND restricts Deno to: none when unset or not readable. */
function requestedBackends(): GpuBackend[] {
  const variable = "DENO_WEBGPU_BACKEND";
  // Asked first, so that a command without --allow-env neither fails nor prompts.
  if (Deno.permissions.querySync({ name: "env", variable }).state !== "granted") return [];
  const value = Deno.env.get(variable);
  return [
    ...new Set(
      (value ?? "").split(",").map((name) => BACKEND_NAMES[name.trim().toLowerCase()])
        .filter((backend) => backend !== undefined),
    ),
  ];
}
