/**
 * The check behind `Gpu.subgroups`: a device with the `subgroups` feature runs
 * shaders/subgroup_probe.wgsl once, in workgroups of the CPU kernels' 8 invocations, and may run
 * kernels that share loads by subgroup broadcasts (conv2d's blocked_texture_subgroup) only where
 * every invocation found its subgroup as they expect it.
 */
import { readBuffer } from "./buffer.ts";
import type { Gpu } from "./device.ts";
import { KernelError } from "./pipeline.ts";
import { kernels } from "../shaders.ts";

const WORKGROUP_SIZE = 8;
const WORKGROUPS = 2;

/**
 * False also where the probe does not compile or run (a device without the feature, a compiler
 * that refuses the built-ins): the kernels that need subgroups are then left alone, the rest run.
 */
export async function subgroupsAsExpected(
  gpu: Pick<Gpu, "device" | "pipelines">,
): Promise<boolean> {
  const { device } = gpu;
  const invocations = WORKGROUP_SIZE * WORKGROUPS;
  let pipeline: GPUComputePipeline;
  try {
    pipeline = await gpu.pipelines.get(kernels.subgroupProbe, "probe", { WORKGROUP_SIZE });
  } catch (error) {
    if (error instanceof KernelError) return false;
    throw error;
  }
  device.pushErrorScope("validation");
  const holds = device.createBuffer({
    label: "subgroup probe",
    size: invocations * 4,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  try {
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(
      0,
      device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [{ binding: 0, resource: { buffer: holds } }],
      }),
    );
    pass.dispatchWorkgroups(WORKGROUPS);
    pass.end();
    device.queue.submit([encoder.finish()]);
    if (await device.popErrorScope()) return false;
    const values = new Uint32Array(await readBuffer(gpu, holds));
    return values.every((value) => value === 1);
  } finally {
    holds.destroy();
  }
}
