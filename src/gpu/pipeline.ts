/**
 * Compute pipelines, built once per (kernel, entry point, override constants) and cached. Shader
 * and pipeline validation errors surface here, at plan-build time, as exceptions naming the
 * kernel; nothing is checked per dispatch.
 */
import { UserError } from "../errors.ts";

/**
 * A WGSL source file and the name it is known by (its file name without `.wgsl`). `build` names a
 * build of the file other than the source as written: "f16" for activations stored as f16
 * (`activationKernel` in src/shaders.ts). `uses: "subgroups"` marks a source that calls subgroup
 * built-ins without the `enable subgroups;` directive (see `PipelineCacheOptions`).
 */
export interface Kernel {
  readonly name: string;
  readonly code: string;
  readonly build?: "f16";
  readonly uses?: "subgroups";
}

export interface PipelineCacheOptions {
  /**
   * Whether a kernel that uses subgroups needs `enable subgroups;` put first: browsers' WGSL
   * compiler (Tint) requires the directive, Deno's (naga, in wgpu 2.9) refuses it and takes the
   * device's `subgroups` feature alone. Default true.
   */
  subgroupDirective?: boolean;
}

/** How errors and caches name a kernel: its file, and its build where not the source as written. */
export function kernelId(kernel: Kernel): string {
  return kernel.build ? `${kernel.name}.wgsl (${kernel.build} build)` : `${kernel.name}.wgsl`;
}

export type OverrideConstants = Record<string, number>;

/** Raised when a kernel fails to compile or its pipeline fails validation. */
export class KernelError extends UserError {
  override name = "KernelError";
}

export class PipelineCache {
  readonly #device: GPUDevice;
  readonly #subgroupDirective: boolean;
  readonly #modules = new Map<string, GPUShaderModule>();
  readonly #pipelines = new Map<string, Promise<GPUComputePipeline>>();

  constructor(device: GPUDevice, options: PipelineCacheOptions = {}) {
    this.#device = device;
    this.#subgroupDirective = options.subgroupDirective ?? true;
  }

  /** Number of distinct pipelines built so far. */
  get size(): number {
    return this.#pipelines.size;
  }

  get(
    kernel: Kernel,
    entryPoint: string,
    constants: OverrideConstants = {},
  ): Promise<GPUComputePipeline> {
    const sorted = Object.keys(constants).sort().map((key) => `${key}=${constants[key]}`);
    const key = `${kernelId(kernel)}:${entryPoint}:${sorted.join(",")}`;
    let pipeline = this.#pipelines.get(key);
    if (!pipeline) {
      pipeline = this.#build(kernel, entryPoint, constants, key);
      this.#pipelines.set(key, pipeline);
    }
    return pipeline;
  }

  async #module(kernel: Kernel): Promise<GPUShaderModule> {
    const id = kernelId(kernel);
    const cached = this.#modules.get(id);
    if (cached) return cached;
    this.#device.pushErrorScope("validation");
    const code = kernel.uses === "subgroups" && this.#subgroupDirective
      ? `enable subgroups;\n${kernel.code}`
      : kernel.code;
    const module = this.#device.createShaderModule({ label: id, code });
    const error = await this.#device.popErrorScope();
    if (error) {
      throw new KernelError(`Kernel ${id} does not compile: ${oneLine(error.message)}`);
    }
    this.#modules.set(id, module);
    return module;
  }

  async #build(
    kernel: Kernel,
    entryPoint: string,
    constants: OverrideConstants,
    label: string,
  ): Promise<GPUComputePipeline> {
    const module = await this.#module(kernel);
    try {
      // The async form lets the driver compile many pipelines at once (materialize asks for all
      // of a plan's together).
      return await this.#device.createComputePipelineAsync({
        label,
        layout: "auto",
        compute: { module, entryPoint, constants },
      });
    } catch (error) {
      throw new KernelError(
        `Kernel ${kernelId(kernel)} entry point ${entryPoint} (${JSON.stringify(constants)}) ` +
          `fails validation: ${oneLine(error instanceof Error ? error.message : String(error))}`,
      );
    }
  }
}

function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, " | ").trim();
}
