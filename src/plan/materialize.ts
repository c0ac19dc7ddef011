/**
 * The one step from kernel calls to GPU work: allocate the transient tensors (src/plan/
 * allocator.ts), create their buffers and textures, compile every pipeline at once through the
 * async pipeline API, and create each call's bind group. Plans, the trainer's input and
 * optimizer, the tests and the benchmarks all run their calls through it.
 */
import { checkBindingSize, createBuffer } from "../gpu/buffer.ts";
import type { Gpu } from "../gpu/device.ts";
import { type Dispatch, submitDispatches } from "../gpu/dispatch.ts";
import type { KernelCall } from "../gpu/kernel_call.ts";
import { bindingOf, byteSize, hasStorage, type Tensor, type TensorDesc } from "../gpu/tensor.ts";
import { allocate, type Allocation, PlanError, type Slot } from "./allocator.ts";

export interface Materialized {
  readonly dispatches: readonly Dispatch[];
  readonly allocation: Allocation;
  /**
   * The tensor a call's binding resolved to (its own, or a view of its slot's buffer); texture
   * tensors have no buffer to resolve to.
   */
  resolve(tensor: TensorDesc): Tensor;
  /** Frees the buffers and textures created for transient tensors. */
  destroy(): void;
}

export interface MaterializeOptions {
  /** Leads the labels of the buffers created, e.g. "train". */
  label: string;
  /** The fix to name when a tensor is over the device's binding limit. */
  limitHint?: string;
}

export async function materialize(
  gpu: Gpu,
  calls: readonly KernelCall[],
  options: MaterializeOptions,
): Promise<Materialized> {
  const allocation = allocate(calls);
  for (const tensor of allocation.transients.keys()) {
    if (tensor.texture) continue;
    checkBindingSize(gpu, `${options.label} ${tensor.label}`, byteSize(tensor), options.limitHint);
  }
  const buffers = new Map<Slot, GPUBuffer>();
  const textures = new Map<Slot, GPUTexture>();
  for (const slot of allocation.slots) {
    const label = `${options.label} ${slot.label}`;
    if (slot.texture) {
      textures.set(
        slot,
        gpu.device.createTexture({
          label,
          size: [...slot.texture],
          format: "rgba32float",
          usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.STORAGE_BINDING,
        }),
      );
    } else {
      buffers.set(slot, createBuffer(gpu, { label, size: slot.bytes }));
    }
  }
  const slotOf = (tensor: TensorDesc): Slot => {
    const placed = allocation.transients.get(tensor);
    if (!placed) throw new PlanError(`plan: ${tensor.label} is bound by no call`);
    return placed.slot;
  };
  const resolve = (tensor: TensorDesc): Tensor => {
    if (hasStorage(tensor)) return tensor;
    const buffer = buffers.get(slotOf(tensor));
    if (!buffer) throw new PlanError(`plan: ${tensor.label} is a texture, not a buffer range`);
    return { ...tensor, buffer, offset: 0 };
  };
  const resource = (tensor: TensorDesc): GPUBindingResource =>
    tensor.texture ? textures.get(slotOf(tensor))!.createView() : bindingOf(resolve(tensor));
  const limit = gpu.device.limits.maxComputeWorkgroupsPerDimension;
  const pipelines = await Promise.all(
    calls.map((call) => gpu.pipelines.get(call.kernel, call.entryPoint, call.constants)),
  );
  const dispatches = calls.map((call, index): Dispatch => {
    if (call.grid.some((count) => count > limit)) {
      throw new RangeError(`${call.label}: ${call.grid.join("x")} workgroups exceed ${limit}`);
    }
    const pipeline = pipelines[index];
    const bindGroup = gpu.device.createBindGroup({
      label: call.label,
      layout: pipeline.getBindGroupLayout(0),
      entries: call.bindings.map(({ tensor }, binding) => ({
        binding,
        resource: resource(tensor),
      })),
    });
    return { label: call.label, pipeline, bindGroup, workgroups: call.grid };
  });
  return {
    dispatches,
    allocation,
    resolve,
    destroy() {
      for (const buffer of buffers.values()) buffer.destroy();
      for (const texture of textures.values()) texture.destroy();
    },
  };
}

/**
 * Runs `calls` once, in one pass of one submit: for tests and one-off work. Their transient
 * tensors (an op's workspace) live only for this submit.
 */
export async function submitCalls(gpu: Gpu, calls: readonly KernelCall[]): Promise<void> {
  const materialized = await materialize(gpu, calls, { label: "calls" });
  submitDispatches(gpu, materialized.dispatches);
  // Buffers still used by submitted work are freed once that work is done.
  materialized.destroy();
}
