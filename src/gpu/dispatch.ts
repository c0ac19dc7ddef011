/**
 * A dispatch is everything one kernel launch needs, built once at plan time from a kernel call
 * (src/plan/materialize.ts): the pipeline, the bind group and the workgroup counts. Encoding it
 * later costs about a microsecond.
 */
import type { Gpu } from "./device.ts";
import type { Dimensions } from "./kernel_call.ts";

export interface Dispatch {
  readonly label: string;
  readonly pipeline: GPUComputePipeline;
  readonly bindGroup: GPUBindGroup;
  readonly workgroups: Dimensions;
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
