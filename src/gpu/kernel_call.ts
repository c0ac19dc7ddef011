/**
 * A kernel call is one kernel launch as data: the kernel, its entry point, its override constants,
 * its grid, and its bindings, each tagged with how the entry point accesses it. Ops return lists of
 * calls and touch no GPU; a plan derives tensor lifetimes, buffer reuse and the aliasing check from
 * the access tags, then `materialize` (src/plan/materialize.ts) turns the calls into commands.
 * A call is either a kernel call or a texture copy (`textureCopy`): a copy command that fills a
 * texture from a buffer with no kernel, bound like a kernel that reads one and writes the other.
 */
import type { Kernel, OverrideConstants } from "./pipeline.ts";
import type { TensorDesc } from "./tensor.ts";

/**
 * How an entry point uses a binding. `read` is `var<storage, read>`; `write` and `read_write` are
 * `var<storage, read_write>`, `write` when the call never reads what was there before (so a
 * transient tensor's first call must write it); `uniform` is `var<uniform>`. A texture tensor
 * (`TensorDesc.texture`) is bound `texture`, read with `textureLoad` (declared `texture_2d<f32>` or
 * `texture_storage_2d<rgba32float, read>`: shaders/README.md, "Bindings"), or
 * `storage_texture`, a `texture_storage_2d<rgba32float, write>` (a write, like `write`).
 */
export type Access = "read" | "write" | "read_write" | "uniform" | "texture" | "storage_texture";

export interface Binding {
  readonly tensor: TensorDesc;
  readonly access: Access;
}

export type Dimensions = readonly [number, number, number];

export interface KernelCall {
  readonly label: string;
  readonly kernel: Kernel;
  readonly entryPoint: string;
  /** The entry point's `@workgroup_size`, also among `constants` (see `kernelCall`). */
  readonly workgroupSize: Dimensions;
  readonly constants: Readonly<OverrideConstants>;
  /** Workgroups to dispatch in x, y and z. */
  readonly grid: Dimensions;
  /** Bound at @group(0) @binding(i) in order: exactly the bindings the entry point uses. */
  readonly bindings: readonly Binding[];
  /**
   * Floating-point operations of the call's useful work (2 per multiply-add), for the ops whose
   * speed is arithmetic (convolutions, matrix products); absent for memory-bound kernels, whose
   * speed the profile states in bytes from the bindings.
   */
  readonly flops?: number;
}

/**
 * A copy of an f32 tensor into a texture tensor of the same elements (`textureDesc`, a last
 * dimension that is a multiple of 4): copyBufferToTexture. Its bindings are `read(source)` and
 * `storageTexture(texture)`, so lifetimes and aliasing treat it as a kernel writing the texture.
 */
export interface TextureCopy {
  readonly label: string;
  readonly copy: "buffer_to_texture";
  readonly bindings: readonly [Binding, Binding];
}

/** One step of a program: a kernel launch or a copy into a texture. */
export type Call = KernelCall | TextureCopy;

export function isKernelCall(call: Call): call is KernelCall {
  return !("copy" in call);
}

/** `call` with each bound tensor replaced by `tensorOf`'s (e.g. scratch copies to time it on). */
export function rebound<C extends Call>(call: C, tensorOf: (tensor: TensorDesc) => TensorDesc): C {
  const bindings = call.bindings.map((binding) => ({
    ...binding,
    tensor: tensorOf(binding.tensor),
  }));
  return { ...call, bindings } as C;
}

/** What a call runs, for profiles: `kernel.entry_point`, or `copy.buffer_to_texture`. */
export function callOp(call: Call): string {
  return isKernelCall(call) ? `${call.kernel.name}.${call.entryPoint}` : `copy.${call.copy}`;
}

/** The copy of `source` into `texture`, which must hold its elements as they lie (not padded). */
export function textureCopy(source: TensorDesc, texture: TensorDesc): TextureCopy {
  const label = "copy_to_texture";
  if (source.dtype !== "f32") {
    throw new TypeError(`${label}: ${source.label} is ${source.dtype}; a copy keeps only f32`);
  }
  if (texture.texture === undefined || texture.shape.join() !== source.shape.join()) {
    throw new TypeError(`${label}: ${texture.label} is no texture of ${source.label}'s shape`);
  }
  return { label, copy: "buffer_to_texture", bindings: [read(source), storageTexture(texture)] };
}

export interface KernelCallRequest {
  kernel: Kernel;
  entryPoint: string;
  /**
   * Invocations per workgroup. The kernel declares `@workgroup_size(WORKGROUP_SIZE)` for a number,
   * `@workgroup_size(WORKGROUP_SIZE_X, WORKGROUP_SIZE_Y)` for a pair, as overrides without
   * defaults: the call sets them from this one value, so the grid TypeScript computes and the
   * workgroup WGSL runs cannot disagree (a kernel missing one fails at pipeline creation).
   */
  workgroupSize: number | readonly [number, number];
  constants?: OverrideConstants;
  grid: readonly [number, number?, number?];
  bindings: readonly Binding[];
  label?: string;
  flops?: number;
}

const WORKGROUP_CONSTANTS = ["WORKGROUP_SIZE", "WORKGROUP_SIZE_X", "WORKGROUP_SIZE_Y"];

export function kernelCall(request: KernelCallRequest): KernelCall {
  const constants = { ...request.constants };
  const label = request.label ?? `${request.kernel.name}.${request.entryPoint}`;
  for (const name of WORKGROUP_CONSTANTS) {
    if (name in constants) {
      throw new Error(`${label}: ${name} comes from workgroupSize, not from the constants`);
    }
  }
  const size = request.workgroupSize;
  let workgroupSize: Dimensions;
  if (typeof size === "number") {
    workgroupSize = [size, 1, 1];
    constants.WORKGROUP_SIZE = size;
  } else {
    workgroupSize = [size[0], size[1], 1];
    constants.WORKGROUP_SIZE_X = size[0];
    constants.WORKGROUP_SIZE_Y = size[1];
  }
  for (const { tensor, access } of request.bindings) {
    const textureAccess = access === "texture" || access === "storage_texture";
    if (textureAccess !== (tensor.texture !== undefined)) {
      throw new TypeError(
        `${label}: ${tensor.label} is ${tensor.texture ? "a texture" : "a buffer range"}, ` +
          `bound ${access}`,
      );
    }
  }
  const [x, y = 1, z = 1] = request.grid;
  const grid: Dimensions = [x, y, z];
  if (!grid.every((count) => Number.isInteger(count) && count >= 1)) {
    throw new RangeError(`${label}: grid [${grid}] is not positive whole workgroup counts`);
  }
  return {
    label,
    kernel: request.kernel,
    entryPoint: request.entryPoint,
    workgroupSize,
    constants,
    grid,
    bindings: request.bindings,
    ...(request.flops === undefined ? {} : { flops: request.flops }),
  };
}

export const read = (tensor: TensorDesc): Binding => ({ tensor, access: "read" });
export const write = (tensor: TensorDesc): Binding => ({ tensor, access: "write" });
export const readWrite = (tensor: TensorDesc): Binding => ({ tensor, access: "read_write" });
export const uniform = (tensor: TensorDesc): Binding => ({ tensor, access: "uniform" });
export const sampled = (tensor: TensorDesc): Binding => ({ tensor, access: "texture" });
export const storageTexture = (tensor: TensorDesc): Binding => ({
  tensor,
  access: "storage_texture",
});

/** Whether the call may write the binding. */
export function isWritable(access: Access): boolean {
  return access === "write" || access === "read_write" || access === "storage_texture";
}

/** Whether the call writes the whole binding without reading it: a transient tensor's first. */
export function overwrites(access: Access): boolean {
  return access === "write" || access === "storage_texture";
}

/** The largest workgroup count per grid dimension WebGPU guarantees. */
export const MAX_WORKGROUPS_PER_DIMENSION = 65535;

/**
 * Workgroup counts covering `invocations` one-dimensional invocations. Past 65,535 workgroups the
 * grid wraps into y; kernels recover the linear index as
 * `gid.x + gid.y * num_workgroups.x * WORKGROUP_SIZE` and skip indices past the end.
 */
export function linearGrid(invocations: number, workgroupSize: number): [number, number, number] {
  const groups = Math.max(1, Math.ceil(invocations / workgroupSize));
  if (groups <= MAX_WORKGROUPS_PER_DIMENSION) return [groups, 1, 1];
  const y = Math.ceil(groups / MAX_WORKGROUPS_PER_DIMENSION);
  return [Math.ceil(groups / y), y, 1];
}
