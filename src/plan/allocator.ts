/**
 * Storage for a program's transient tensors, decided without a GPU. A tensor lives from the first
 * call that binds it to the last; the first must write it. Tensors share a buffer ("slot") only
 * when their lives do not overlap: each takes the smallest free slot of its role that holds it,
 * else grows the largest free one, else opens a new one (greedy, in order of first use).
 * Activations and kernel workspaces keep slots of their own so that memory reports them apart.
 * A texture tensor (`TensorDesc.texture`) takes a texture slot, shared only by textures of the
 * same width and height (a texture cannot grow, and a buffer is no texture).
 *
 * `checkPlacement` then proves the result, and any other placement, safe call by call: no tensor
 * a call writes overlaps another of its bindings, and no buffer is bound both read-only and
 * writable in one call (WebGPU refuses that even for disjoint ranges). Two writable bindings of
 * disjoint ranges of one buffer are fine (a layer's dweight and dbias in the gradient arena).
 */
import { type Call, isWritable, overwrites } from "../gpu/kernel_call.ts";
import { byteSize, hasStorage, type TensorDesc } from "../gpu/tensor.ts";

/** A program that cannot run as written: a tensor read before it is written, or aliasing. */
export class PlanError extends Error {
  override name = "PlanError";
}

export type Role = "activation" | "workspace";

/** One buffer to be, serving tensors whose lives do not overlap. */
export interface Slot {
  readonly role: Role;
  /** The largest tensor's size: what the buffer needs. */
  bytes: number;
  /** The largest tensor's label, to name the buffer. */
  label: string;
  /** Set for a texture of [width, height] texels instead of a buffer. */
  readonly texture?: readonly [number, number];
}

export interface Lifetime {
  /** Index of the first call that binds the tensor. */
  first: number;
  /** Index of the last. */
  last: number;
}

export interface Allocation {
  readonly slots: readonly Slot[];
  readonly transients: ReadonlyMap<TensorDesc, Lifetime & { slot: Slot }>;
  /** Bytes of the slots, by role. */
  readonly bytes: Readonly<Record<Role, number>>;
  /** What the transient tensors would take with a buffer each, by role. */
  readonly bytesWithoutReuse: Readonly<Record<Role, number>>;
}

function roleOf(tensor: TensorDesc): Role {
  return tensor.role ?? "activation";
}

/** The lifetime of every transient tensor (every bound tensor without storage). */
export function lifetimes(calls: readonly Call[]): Map<TensorDesc, Lifetime> {
  const lives = new Map<TensorDesc, Lifetime>();
  calls.forEach((call, index) => {
    for (const { tensor, access } of call.bindings) {
      if (hasStorage(tensor)) continue;
      const life = lives.get(tensor);
      if (life) {
        life.last = index;
        continue;
      }
      if (!overwrites(access)) {
        throw new PlanError(
          `plan: ${tensor.label} is bound ${access} by ${call.label} before any call writes it`,
        );
      }
      lives.set(tensor, { first: index, last: index });
    }
  });
  return lives;
}

/** Whether a slot can serve the tensor: both buffers, or textures of the same size. */
function sameKind(slot: Slot, tensor: TensorDesc): boolean {
  return slot.texture?.join("x") === tensor.texture?.join("x");
}

/**
 * Throws a PlanError where a tensor is written again while a texture filled from it (a copy or a
 * to_texture call: the tensors it reads) is still to be read by a later call: that call would read
 * a stale texture. A plan
 * shares its textures among its ops (src/ops/staging.ts), so a texture may be read long after it
 * was filled.
 */
export function checkTextureSources(
  calls: readonly Call[],
  lives: ReadonlyMap<TensorDesc, Lifetime>,
): void {
  calls.forEach((call, index) => {
    const filled = call.bindings.filter(({ tensor, access }) =>
      access === "storage_texture" && tensor.texture
    );
    const sources = call.bindings.filter(({ access }) => access === "read").map((b) => b.tensor);
    for (const { tensor: texture } of filled) {
      const last = lives.get(texture)?.last ?? index;
      // A call may read the texture and write the source: its reads see the texture as filled.
      for (let later = index + 1; later < last; later++) {
        const rewritten = calls[later].bindings.find(({ tensor, access }) =>
          isWritable(access) && sources.some((source) => sameBytes(source, tensor))
        );
        if (rewritten) {
          throw new PlanError(
            `plan: ${calls[later].label} writes ${rewritten.tensor.label} while ` +
              `${texture.label}, filled from it, is still to be read: stage it again after the write`,
          );
        }
      }
    }
  });
}

/** Whether two tensors share bytes: the same transient, or overlapping ranges of one buffer. */
function sameBytes(a: TensorDesc, b: TensorDesc): boolean {
  if (a === b) return true;
  if (!hasStorage(a) || !hasStorage(b) || a.buffer !== b.buffer) return false;
  return a.offset < b.offset + byteSize(b) && b.offset < a.offset + byteSize(a);
}

export function allocate(calls: readonly Call[]): Allocation {
  const lives = lifetimes(calls);
  checkTextureSources(calls, lives);
  const slots: (Slot & { freeAfter: number })[] = [];
  const transients = new Map<TensorDesc, Lifetime & { slot: Slot }>();
  const bytes = { activation: 0, workspace: 0 };
  const bytesWithoutReuse = { activation: 0, workspace: 0 };
  const order = [...lives].sort(([a, lifeA], [b, lifeB]) =>
    lifeA.first - lifeB.first || byteSize(b) - byteSize(a)
  );
  for (const [tensor, life] of order) {
    const size = byteSize(tensor);
    const role = roleOf(tensor);
    bytesWithoutReuse[role] += size;
    const free = slots.filter((slot) =>
      slot.role === role && slot.freeAfter < life.first && sameKind(slot, tensor)
    );
    const fits = free.filter((slot) => slot.bytes >= size);
    let slot = fits.length > 0
      ? fits.reduce((best, slot) => slot.bytes < best.bytes ? slot : best)
      : free.reduce<typeof slots[number] | undefined>(
        (best, slot) => !best || slot.bytes > best.bytes ? slot : best,
        undefined,
      );
    if (!slot) {
      slot = {
        role,
        bytes: 0,
        label: tensor.label,
        freeAfter: -1,
        ...(tensor.texture ? { texture: tensor.texture } : {}),
      };
      slots.push(slot);
    }
    if (size > slot.bytes) {
      slot.bytes = size;
      slot.label = tensor.label;
    }
    slot.freeAfter = life.last;
    transients.set(tensor, { ...life, slot });
  }
  for (const slot of slots) bytes[slot.role] += slot.bytes;
  checkPlacement(calls, (tensor) => {
    const placed = transients.get(tensor);
    if (placed) return { storage: placed.slot, offset: 0 };
    if (hasStorage(tensor)) return { storage: tensor.buffer, offset: tensor.offset };
    throw new PlanError(`plan: ${tensor.label} has no storage`);
  });
  return { slots, transients, bytes, bytesWithoutReuse };
}

/** Where a tensor's bytes are: a buffer (or a slot to be one) and a byte offset into it. */
export type Placement = (tensor: TensorDesc) => { storage: object; offset: number };

/** Throws a PlanError naming the call and the tensors where a placement would alias. */
export function checkPlacement(calls: readonly Call[], placement: Placement): void {
  for (const call of calls) {
    const ranges = call.bindings.map((binding) => {
      const { storage, offset } = placement(binding.tensor);
      return { ...binding, storage, start: offset, end: offset + byteSize(binding.tensor) };
    });
    for (const [i, a] of ranges.entries()) {
      for (const b of ranges.slice(i + 1)) {
        if (a.storage !== b.storage) continue;
        if (!isWritable(a.access) && !isWritable(b.access)) continue;
        const [written, other] = isWritable(a.access) ? [a, b] : [b, a];
        const overlap = a.start < b.end && b.start < a.end;
        if (overlap || !isWritable(other.access)) {
          const relation = overlap
            ? "overlaps"
            : "shares a buffer with (WebGPU refuses a buffer bound read-only and writable at once)";
          throw new PlanError(
            `plan: in ${call.label}, ${written.tensor.label} is written and ${relation} ` +
              `${other.tensor.label}`,
          );
        }
      }
    }
  }
}
