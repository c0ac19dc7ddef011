/**
 * The one step from kernel calls to GPU work: allocate the transient tensors (src/plan/
 * allocator.ts), create their buffers and textures, compile every pipeline at once through the
 * async pipeline API, and create each call's bind group. Plans, the trainer's input and
 * optimizer, the tests and the benchmarks all run their calls through it.
 */
import { checkBindingSize, createBuffer } from "../gpu/buffer.ts";
import type { Gpu } from "../gpu/device.ts";
import { type Command, submitCommands } from "../gpu/dispatch.ts";
import { type Call, isKernelCall } from "../gpu/kernel_call.ts";
import { bindingOf, byteSize, hasStorage, type Tensor, type TensorDesc } from "../gpu/tensor.ts";
import { elementCount } from "../util/shape.ts";
import { allocate, type Allocation, PlanError, type Slot } from "./allocator.ts";

export interface Materialized {
  /** One command per call, in order. */
  readonly commands: readonly Command[];
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
  calls: readonly Call[],
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
          usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.STORAGE_BINDING |
            GPUTextureUsage.COPY_DST,
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
  const textureOf = (tensor: TensorDesc): GPUTexture => textures.get(slotOf(tensor))!;
  const resource = (tensor: TensorDesc): GPUBindingResource =>
    tensor.texture ? textureOf(tensor).createView() : bindingOf(resolve(tensor));
  const limit = gpu.device.limits.maxComputeWorkgroupsPerDimension;
  const pipelines = await Promise.all(
    calls.map((call) =>
      isKernelCall(call) ? gpu.pipelines.get(call.kernel, call.entryPoint, call.constants) : null
    ),
  );
  const commands = calls.map((call, index): Command => {
    if (!isKernelCall(call)) {
      const [source, texture] = call.bindings.map((binding) => binding.tensor);
      const { buffer, offset } = resolve(source);
      return {
        label: call.label,
        buffer,
        offset,
        texture: textureOf(texture),
        texels: elementCount(source.shape) / 4,
      };
    }
    if (call.grid.some((count) => count > limit)) {
      throw new RangeError(`${call.label}: ${call.grid.join("x")} workgroups exceed ${limit}`);
    }
    const pipeline = pipelines[index]!;
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
    commands,
    allocation,
    resolve,
    destroy() {
      for (const buffer of buffers.values()) buffer.destroy();
      for (const texture of textures.values()) texture.destroy();
    },
  };
}

/**
 * Runs `calls` once, in one submit: for tests and one-off work. Their transient
 * tensors (an op's workspace) live only for this submit.
 */
export async function submitCalls(gpu: Gpu, calls: readonly Call[]): Promise<void> {
  const materialized = await materialize(gpu, calls, { label: "calls" });
  submitCommands(gpu, materialized.commands);
  // Buffers still used by submitted work are freed once that work is done.
  materialized.destroy();
}
