/**
 * The one place kernel variants are chosen. An op with variants asks the policy once per call site,
 * naming the site by a key that holds its shape; the policy answers, in this order:
 *   1. a variant forced for the op (tests and benchmarks compare variants this way);
 *   2. a variant pinned for the key: the choices a run was started with, stored in its checkpoints,
 *      so that `--resume` computes with the same kernels and stays bit-exact; the autotune
 *      (src/plan/autotune.ts) pins the variants it measured fastest the same way;
 *   3. the rules: per (op, family) a preference order, the first variant that can run the shape
 *      and that the op does not mark slower there (`VariantRequest.slower`).
 * The family is "cpu" on software adapters (lavapipe, SwiftShader) and "gpu" elsewhere, unless
 * forced (`--kernels cpu|gpu`). Every choice is recorded, for the headers and the checkpoints.
 */
import { UserError } from "../errors.ts";
import type { Call } from "../gpu/kernel_call.ts";

export type KernelFamily = "cpu" | "gpu";

export const KERNEL_FAMILIES: readonly KernelFamily[] = ["cpu", "gpu"];

/** A preference order of an op's variants on one family, and why. */
export interface KernelRule {
  op: string;
  family: KernelFamily;
  prefer: readonly string[];
  reason: string;
}

/** Today's rules (measurements in bench/README.md). */
export const DEFAULT_RULES: readonly KernelRule[] = [
  {
    op: "conv2d",
    family: "cpu",
    prefer: ["winograd", "blocked_texture_subgroup", "blocked_texture", "blocked", "tiled"],
    reason:
      "3x3 stride-1 layers of 32 channels or more as Winograd F(4x4, 3x3) products, 1.1-2.5x " +
      "the direct kernels on lavapipe; otherwise operands read from textures (llvmpipe's cheap " +
      "load path), 16 pixels x 16 channels per invocation: 1.3-1.7x blocked with AVX-512, 4-7x " +
      "without, the whole step 1.5-1.6x; where the adapter has subgroups, each weight row loaded " +
      "once per 4 lanes",
  },
  {
    op: "conv2d",
    family: "gpu",
    prefer: ["tiled", "pipelined64", "pipelined128", "blocked"],
    reason: "64x64 workgroup-memory tiles: 1.1-2.4x blocked on an H100; pipelined64/128 (vec4 " +
      "loads, double buffering) not yet timed on a GPU: the autotune chooses",
  },
  {
    op: "batchnorm",
    family: "cpu",
    prefer: ["serial_texture", "serial", "tree"],
    reason: "long lanes over whole cache lines, no barrier, activations read from textures " +
      "(llvmpipe's cheap load path): fastest on lavapipe",
  },
  {
    op: "batchnorm",
    family: "gpu",
    prefer: ["tree", "serial", "serial_texture"],
    reason: "neighbouring invocations on neighbouring addresses, workgroup-memory combine",
  },
];

/** One call site's question: which of `variants` runs the call named `key`. */
export interface VariantRequest<V extends string> {
  op: string;
  /** Names the call site by its shape and configuration, e.g. "conv2d [128,32,32,64]->64 k3 s1 p1". */
  key: string;
  variants: readonly V[];
  /** Variants that cannot run this shape, each with the reason. */
  unsupported?: Partial<Record<V, string>>;
  /**
   * Variants that can run this shape but measured slower on it than the next in the rules' order,
   * each with the reason: the rules pass over them; forcing, pinning and the autotune do not.
   */
  slower?: Partial<Record<V, string>>;
  /**
   * This call site's calls in `variant`, for the autotune to time. Every pass of one site asks
   * under the same key (a conv's forward and its backward), so the key's time is their sum.
   */
  plan?: (variant: V) => readonly Call[];
}

/** A policy that cannot honour what it was asked (a forced or pinned variant that cannot run). */
export class KernelPolicyError extends UserError {
  override name = "KernelPolicyError";
}

/**
 * Where a policy's family (and its pinned choices) came from, for the headers: "tuned" when the
 * autotune measured them now, "tune cache" when it took them from its cache for this adapter.
 */
export type KernelFamilySource = "adapter" | "flag" | "checkpoint" | "tuned" | "tune cache";

export interface KernelPolicyOptions {
  family: KernelFamily;
  /** Whether the device runs the kernels that use subgroups (`Gpu.subgroups`). Default false. */
  subgroups?: boolean;
  /** Default "adapter". */
  source?: KernelFamilySource;
  /** A variant per op, whatever the shape. */
  force?: Readonly<Record<string, string>>;
  /** A variant per call key, e.g. the choices stored in a checkpoint. */
  pinned?: Readonly<Record<string, string>>;
  rules?: readonly KernelRule[];
}

/** What is stored in a checkpoint to make the same choices again. */
export interface KernelChoices {
  family: KernelFamily;
  choices: Record<string, string>;
}

/** What the policy needs to know of a device: its family's default, and its subgroups. */
export interface PolicyAdapter {
  isFallbackAdapter: boolean;
  subgroups?: boolean;
}

export class KernelPolicy {
  readonly family: KernelFamily;
  readonly source: KernelFamilySource;
  /** Whether variants that use subgroups can run here; ops mark them unsupported otherwise. */
  readonly subgroups: boolean;
  readonly #force: Readonly<Record<string, string>>;
  readonly #pinned: Readonly<Record<string, string>>;
  readonly #rules: readonly KernelRule[];
  readonly #choices = new Map<string, { op: string; variant: string }>();

  constructor(options: KernelPolicyOptions) {
    this.family = options.family;
    this.subgroups = options.subgroups ?? false;
    this.source = options.source ?? "adapter";
    this.#force = options.force ?? {};
    this.#pinned = options.pinned ?? {};
    this.#rules = options.rules ?? DEFAULT_RULES;
  }

  /** The policy for an adapter: its own family ("cpu" for software adapters), or the one asked. */
  static forAdapter(
    adapter: PolicyAdapter,
    family: KernelFamily | "auto" = "auto",
  ): KernelPolicy {
    const subgroups = adapter.subgroups ?? false;
    return family === "auto"
      ? new KernelPolicy({ family: adapter.isFallbackAdapter ? "cpu" : "gpu", subgroups })
      : new KernelPolicy({ family, source: "flag", subgroups });
  }

  /**
   * The policy that makes the stored choices again (and the rules of their family elsewhere) on a
   * device with or without subgroups: a stored variant it cannot run fails to plan, naming it.
   */
  static restoring(stored: KernelChoices, device: { subgroups?: boolean } = {}): KernelPolicy {
    return new KernelPolicy({
      family: stored.family,
      source: "checkpoint",
      pinned: stored.choices,
      subgroups: device.subgroups,
    });
  }

  /**
   * A policy that runs `variant` for every call of `op` (and the rules elsewhere); `subgroups` as
   * in KernelPolicyOptions.
   */
  static forcing(
    op: string,
    variant: string,
    family: KernelFamily = "cpu",
    subgroups = false,
  ): KernelPolicy {
    return new KernelPolicy({ family, force: { [op]: variant }, subgroups });
  }

  choose<V extends string>(request: VariantRequest<V>): V {
    const { op, key, variants } = request;
    const unsupported: Partial<Record<string, string>> = request.unsupported ?? {};
    const check = (variant: string, why: string): V => {
      if (!(variants as readonly string[]).includes(variant)) {
        throw new KernelPolicyError(
          `${key}: ${why} variant "${variant}" is not one of ${op}'s (${variants.join(", ")})`,
        );
      }
      const reason = unsupported[variant];
      if (reason !== undefined) {
        throw new KernelPolicyError(`${key}: the ${why} ${variant} variant ${reason}`);
      }
      return variant as V;
    };
    let variant: V;
    if (this.#force[op] !== undefined) {
      variant = check(this.#force[op], "forced");
    } else if (this.#pinned[key] !== undefined) {
      variant = check(this.#pinned[key], "pinned");
    } else {
      const slower: Partial<Record<string, string>> = request.slower ?? {};
      const runnable = this.runnable(request);
      const preferred = runnable.find((v) => slower[v] === undefined) ?? runnable[0];
      if (preferred === undefined) {
        throw new KernelPolicyError(`${key}: no ${op} variant can run this shape`);
      }
      variant = preferred;
    }
    this.#choices.set(key, { op, variant });
    return variant;
  }

  /** The variants that can run the request's shape, in the order of the family's rule. */
  runnable<V extends string>(request: VariantRequest<V>): V[] {
    const { op, variants } = request;
    const unsupported: Partial<Record<string, string>> = request.unsupported ?? {};
    const rule = this.#rules.find((rule) => rule.op === op && rule.family === this.family);
    const order = [...rule?.prefer ?? [], ...variants] as V[];
    return [...new Set(order)].filter((v) => variants.includes(v) && unsupported[v] === undefined);
  }

  /** Every choice made so far, to store (KernelPolicyOptions.pinned takes them back). */
  choices(): KernelChoices {
    const choices: Record<string, string> = {};
    for (const [key, { variant }] of this.#choices) choices[key] = variant;
    return { family: this.family, choices };
  }

  /**
   * One line for the headers: "cpu family (the adapter's): conv2d blocked, batchnorm serial"; an op
   * whose call sites differ lists each variant with its count of call sites.
   */
  describe(): string {
    const byOp = new Map<string, Map<string, number>>();
    for (const { op, variant } of this.#choices.values()) {
      const counts = byOp.get(op) ?? new Map<string, number>();
      counts.set(variant, (counts.get(variant) ?? 0) + 1);
      byOp.set(op, counts);
    }
    const ops = [...byOp].map(([op, counts]) =>
      counts.size === 1
        ? `${op} ${[...counts.keys()][0]}`
        : `${op} ${[...counts].map(([variant, count]) => `${variant} x${count}`).join(" / ")}`
    );
    const source = {
      adapter: "the adapter's",
      flag: "forced by --kernels",
      checkpoint: "as the checkpoint stored them",
      tuned: "tuned on this adapter",
      "tune cache": "tuned on this adapter, from the cache",
    }[this.source];
    return `${this.family} family (${source})${ops.length ? `: ${ops.join(", ")}` : ""}`;
  }
}
