/**
 * A dispatch is everything one kernel launch needs, built once at plan time: the pipeline, the
 * bind group and the workgroup counts. Encoding it later costs about a microsecond.
 */
import type { Gpu } from "./device.ts";
import type { Kernel, OverrideConstants } from "./pipeline.ts";
import { bindingOf, type Tensor } from "./tensor.ts";

export interface Dispatch {
  readonly label: string;
  readonly pipeline: GPUComputePipeline;
  readonly bindGroup: GPUBindGroup;
  readonly workgroups: readonly [number, number, number];
}

export interface DispatchRequest {
  kernel: Kernel;
  entryPoint: string;
  constants?: OverrideConstants;
  /** Bound at @group(0) @binding(i) in order: exactly the bindings the entry point uses. */
  bindings: readonly Tensor[];
  workgroups: readonly [number, number?, number?];
  label?: string;
}

export async function createDispatch(gpu: Gpu, request: DispatchRequest): Promise<Dispatch> {
  const pipeline = await gpu.pipelines.get(request.kernel, request.entryPoint, request.constants);
  const label = request.label ?? `${request.kernel.name}.${request.entryPoint}`;
  const limit = gpu.device.limits.maxComputeWorkgroupsPerDimension;
  const [x, y = 1, z = 1] = request.workgroups;
  if (x > limit || y > limit || z > limit) {
    throw new RangeError(`${label}: ${x}x${y}x${z} workgroups exceed ${limit} per dimension`);
  }
  const bindGroup = gpu.device.createBindGroup({
    label,
    layout: pipeline.getBindGroupLayout(0),
    entries: request.bindings.map((tensor, binding) => ({ binding, resource: bindingOf(tensor) })),
  });
  return { label, pipeline, bindGroup, workgroups: [x, y, z] };
}

export function encodeDispatches(
  pass: GPUComputePassEncoder,
  dispatches: readonly Dispatch[],
): void {
  for (const dispatch of dispatches) {
    pass.setPipeline(dispatch.pipeline);
    pass.setBindGroup(0, dispatch.bindGroup);
    pass.dispatchWorkgroups(...dispatch.workgroups);
  }
}

/** Encodes the dispatches in one pass and submits them in one command buffer. */
export function submitDispatches(gpu: Gpu, dispatches: readonly Dispatch[]): void {
  const encoder = gpu.device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  encodeDispatches(pass, dispatches);
  pass.end();
  gpu.device.queue.submit([encoder.finish()]);
}

/**
 * Workgroup counts covering `invocations` one-dimensional invocations. Past 65,535 workgroups the
 * grid wraps into y; kernels recover the linear index as
 * `gid.x + gid.y * num_workgroups.x * WORKGROUP_SIZE` and skip indices past the end.
 */
export function linearGrid(invocations: number, workgroupSize: number): [number, number, number] {
  const groups = Math.max(1, Math.ceil(invocations / workgroupSize));
  const maxX = 65535;
  if (groups <= maxX) return [groups, 1, 1];
  const y = Math.ceil(groups / maxX);
  return [Math.ceil(groups / y), y, 1];
}
