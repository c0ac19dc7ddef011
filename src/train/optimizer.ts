/**
 * Optimizers over the flat parameter arena (shaders/optimizer.wgsl), with torch.optim's
 * semantics: Adam, AdamW, and SGD with momentum, Nesterov and weight decay. SGD's weight decay is
 * torch.optim.SGD's by default (`weightDecayMode: "coupled"`: wd·p added to the gradient, so it
 * runs through the momentum buffer); `"decoupled"` applies it as AdamW does instead
 * (p ← p·(1 − lr·wd) before the update, the gradient and momentum buffer untouched), which
 * torch.optim.SGD does not offer. Without momentum the two are the same update in exact
 * arithmetic; with it, the coupled penalty runs through the buffer (amplified by up to 1/(1 − μ)).
 * The state is the same momentum buffer either way, so the checkpoint state format is unchanged.
 *
 * The arena's params, grads and optimizer state share one layout, so one kernel updates every
 * parameter tensor at once. An arena may exceed the largest storage binding (128 MiB by default;
 * ResNet-152 has 232 MB of parameters), so the update runs one dispatch per chunk of at most that
 * size, each binding sub-ranges of the buffers. Everything is built once: per step the host only
 * writes a small uniform (the scheduled lr and Adam's bias corrections).
 *
 * With loss scaling (f16 training, ./loss_scale.ts) the optimizer also owns the loss-scale state:
 * its dispatches check the gradients for overflow, skip or apply the update on the GPU, and update
 * the scale. Whether a step was skipped is known only on the GPU, so Adam's step count for its bias
 * corrections is the state's applied-step count there; `step` stays the count of steps prepared,
 * which the learning-rate schedule follows (as PyTorch's schedulers step on skipped steps too).
 */
import { UserError } from "../errors.ts";
import {
  bufferChunks,
  largestChunk,
  readBuffer,
  readFloat32,
  STORAGE_ALIGNMENT,
  STORAGE_USAGE,
  writeBuffer,
} from "../gpu/buffer.ts";
import type { Gpu } from "../gpu/device.ts";
import type { Command } from "../gpu/dispatch.ts";
import { kernelCall, linearGrid, read, readWrite, uniform } from "../gpu/kernel_call.ts";
import type { OverrideConstants } from "../gpu/pipeline.ts";
import { byteSize, createTensor, f32View, type Tensor } from "../gpu/tensor.ts";
import type { OptimizerState } from "../model/checkpoint.ts";
import { LOSS_SCALE_SHAPE } from "../ops/softmax_cross_entropy.ts";
import { materialize } from "../plan/materialize.ts";
import { kernels } from "../shaders.ts";
import {
  decodeLossScaleState,
  encodeLossScaleState,
  initialLossScaleState,
  type LossScaleConfig,
  type LossScaleState,
  lossScaleStateSchema,
  resolveLossScaleConfig,
} from "./loss_scale.ts";

const WORKGROUP_SIZE = 256;
/** Each invocation updates one vec4 (16 bytes). */
const BYTES_PER_INVOCATION = 16;
/** The largest per-step uniform (Adam's four f32). */
const STEP_UNIFORM_BYTES = 16;

interface AdamFamilyConfig {
  lr: number;
  /** Default [0.9, 0.999]. */
  betas?: [number, number];
  /** Default 1e-8. */
  eps?: number;
  /** Adam: L2 penalty added to the gradient, default 0. AdamW: decoupled decay, default 0.01. */
  weightDecay?: number;
}

/** An optimizer and its hyper-parameters; omitted ones take torch.optim's defaults. */
export type OptimizerConfig =
  | ({ kind: "adam" } & AdamFamilyConfig)
  | ({ kind: "adamw" } & AdamFamilyConfig)
  | {
    kind: "sgd";
    lr: number;
    /** Default 0 (plain SGD, no state). */
    momentum?: number;
    /** Default false; needs momentum > 0. */
    nesterov?: boolean;
    /** Default 0: with the default mode, the L2 penalty torch.optim.SGD adds to the gradient. */
    weightDecay?: number;
    /**
     * How weightDecay applies. "coupled" (default): as torch.optim.SGD's weight_decay, g ← g + wd·p
     * before the momentum. "decoupled": as AdamW, p ← p·(1 − lr·wd) before the momentum/Nesterov
     * update, the gradient untouched.
     */
    weightDecayMode?: WeightDecayMode;
  };

/** How SGD applies its weight decay (see OptimizerConfig). */
export type WeightDecayMode = "coupled" | "decoupled";

/** An OptimizerConfig with every default filled in. */
export type ResolvedOptimizerConfig =
  | {
    kind: "adam" | "adamw";
    lr: number;
    betas: [number, number];
    eps: number;
    weightDecay: number;
  }
  | {
    kind: "sgd";
    lr: number;
    momentum: number;
    nesterov: boolean;
    weightDecay: number;
    weightDecayMode: WeightDecayMode;
  };

/** Raised for a hyper-parameter torch.optim would also reject; the message names it. */
export class OptimizerConfigError extends UserError {
  override name = "OptimizerConfigError";
}

function requireInRange(
  kind: string,
  name: string,
  value: number,
  low: number,
  high: number,
  highInclusive: boolean,
): void {
  const inRange = value >= low && (highInclusive ? value <= high : value < high);
  if (!Number.isFinite(value) || !inRange) {
    const interval = highInclusive ? `[${low}, ${high}]` : `[${low}, ${high})`;
    throw new OptimizerConfigError(`${kind}: ${name} must be in ${interval}, got ${value}`);
  }
}

/** Validates a config as torch.optim does and fills in its defaults. */
export function resolveOptimizerConfig(config: OptimizerConfig): ResolvedOptimizerConfig {
  const { kind } = config;
  requireInRange(kind, "lr", config.lr, 0, Infinity, false);
  if (kind === "sgd") {
    const resolved = {
      kind,
      lr: config.lr,
      momentum: config.momentum ?? 0,
      nesterov: config.nesterov ?? false,
      weightDecay: config.weightDecay ?? 0,
      weightDecayMode: config.weightDecayMode ?? "coupled",
    };
    requireInRange(kind, "momentum", resolved.momentum, 0, Infinity, false);
    requireInRange(kind, "weightDecay", resolved.weightDecay, 0, Infinity, false);
    if (resolved.weightDecayMode !== "coupled" && resolved.weightDecayMode !== "decoupled") {
      throw new OptimizerConfigError(
        `sgd: weightDecayMode must be coupled or decoupled, got ${resolved.weightDecayMode}`,
      );
    }
    if (resolved.nesterov && resolved.momentum === 0) {
      throw new OptimizerConfigError("sgd: nesterov needs a momentum above 0");
    }
    return resolved;
  }
  if (kind !== "adam" && kind !== "adamw") {
    throw new OptimizerConfigError(`unknown optimizer kind ${kind}: use adam, adamw or sgd`);
  }
  const resolved = {
    kind,
    lr: config.lr,
    betas: [...config.betas ?? [0.9, 0.999]] as [number, number],
    eps: config.eps ?? 1e-8,
    weightDecay: config.weightDecay ?? (kind === "adamw" ? 0.01 : 0),
  };
  if (resolved.betas.length !== 2) {
    throw new OptimizerConfigError(`${kind}: betas must be two numbers, got [${resolved.betas}]`);
  }
  resolved.betas.forEach((beta, index) =>
    requireInRange(kind, `betas[${index}]`, beta, 0, 1, false)
  );
  requireInRange(kind, "eps", resolved.eps, 0, Infinity, false);
  requireInRange(kind, "weightDecay", resolved.weightDecay, 0, Infinity, false);
  return resolved;
}

/** What sets the optimizer kinds apart: their entry point, state and per-step uniform. */
interface UpdateRule {
  entryPoint: "adam" | "sgd" | "sgd_momentum";
  constants: OverrideConstants;
  /** torch.optim's state keys, bound after the params in this order. */
  stateNames: readonly string[];
  /**
   * The uniform for step `step` (1 for the first, as torch's state["step"]) at rate `lr`. With
   * loss scaling the kernel takes Adam's bias corrections from the GPU's count instead.
   */
  stepUniform(step: number, lr: number): ArrayBufferView<ArrayBuffer>;
}

function updateRule(config: ResolvedOptimizerConfig): UpdateRule {
  const { weightDecay } = config;
  if (config.kind === "sgd") {
    const decoupled = config.weightDecayMode === "decoupled";
    // 1 − lr·wd folded in f64 and rounded once, as for AdamW.
    const stepUniform = (_step: number, lr: number) =>
      Float32Array.of(lr, decoupled ? 1 - lr * weightDecay : 1);
    const decay = { WEIGHT_DECAY: weightDecay, DECOUPLED_WEIGHT_DECAY: decoupled ? 1 : 0 };
    if (config.momentum === 0) {
      return { entryPoint: "sgd", constants: decay, stateNames: [], stepUniform };
    }
    return {
      entryPoint: "sgd_momentum",
      constants: {
        ...decay,
        MOMENTUM: config.momentum,
        NESTEROV: config.nesterov ? 1 : 0,
      },
      stateNames: ["momentum_buffer"],
      stepUniform,
    };
  }
  const [beta1, beta2] = config.betas;
  const decoupled = config.kind === "adamw";
  return {
    entryPoint: "adam",
    constants: {
      WEIGHT_DECAY: weightDecay,
      DECOUPLED_WEIGHT_DECAY: decoupled ? 1 : 0,
      BETA2: beta2,
      ONE_MINUS_BETA1: 1 - beta1,
      ONE_MINUS_BETA2: 1 - beta2,
      EPS: config.eps,
      LN_BETA1: Math.log(beta1),
      LN_BETA2: Math.log(beta2),
    },
    stateNames: ["exp_avg", "exp_avg_sq"],
    // Folded in f64, then rounded once, as PyTorch passes these to its kernels as Python floats.
    stepUniform: (step, lr) =>
      Float32Array.of(
        lr / (1 - beta1 ** step),
        Math.sqrt(1 - beta2 ** step),
        decoupled ? 1 - lr * weightDecay : 1,
        lr,
      ),
  };
}

/** Parameters and their gradients in the flat arena layout (shaders/README.md). */
export interface ParameterArena {
  /** f32 parameters, at least `size` bytes. */
  params: GPUBuffer;
  /** f32 gradients in the params' layout, at least `size` bytes. */
  grads: GPUBuffer;
  /** Bytes of the arena to update, a multiple of 256. */
  size: number;
}

export interface OptimizerOptions {
  /**
   * Bytes each dispatch updates, a multiple of 256; default the largest storage binding the
   * device allows. Tests force it small to exercise the chunking.
   */
  chunkBytes?: number;
  /** Dynamic loss scaling (f16 training); omitted settings take GradScaler's defaults. */
  lossScaling?: LossScaleConfig;
}

function checkArena(arena: ParameterArena): void {
  const { size } = arena;
  if (!Number.isInteger(size) || size <= 0 || size % STORAGE_ALIGNMENT !== 0) {
    throw new RangeError(`optimizer: arena size ${size} is not a positive multiple of 256 bytes`);
  }
  for (const [name, buffer] of [["params", arena.params], ["grads", arena.grads]] as const) {
    if (buffer.size < size) {
      throw new RangeError(`optimizer: arena ${name} has ${buffer.size} bytes, under ${size}`);
    }
  }
  if (arena.params === arena.grads) {
    throw new RangeError("optimizer: params and grads must be separate buffers");
  }
}

function chunkBytesFor(gpu: Gpu, options: OptimizerOptions): number {
  const largest = largestChunk(gpu);
  const chunkBytes = options.chunkBytes ?? largest;
  if (
    !Number.isInteger(chunkBytes) || chunkBytes <= 0 || chunkBytes % STORAGE_ALIGNMENT !== 0 ||
    chunkBytes > largest
  ) {
    throw new RangeError(
      `optimizer: chunkBytes ${chunkBytes} must be a positive multiple of 256 up to ${largest}`,
    );
  }
  return chunkBytes;
}

export class Optimizer {
  readonly config: ResolvedOptimizerConfig;
  readonly arena: ParameterArena;
  /** The update, one dispatch per chunk; encode after the backward pass of the step. */
  readonly commands: readonly Command[];
  /** The state (m and v for Adam, the momentum buffer for SGD), in the arena's layout. */
  readonly stateBuffers: readonly { name: string; buffer: GPUBuffer }[];
  /**
   * With loss scaling: the loss-scale state (LOSS_SCALE_SHAPE), which the loss kernel reads its
   * scale from (crossEntropyTrain's `lossScale`) and these dispatches update.
   */
  readonly lossScale?: Tensor;
  /** `lossScale`, or without loss scaling the stand-in the kernels bind in its place. */
  readonly #lossScaleBinding: Tensor;
  readonly #gpu: Gpu;
  readonly #rule: UpdateRule;
  readonly #uniform: GPUBuffer;
  #step = 0;

  private constructor(
    gpu: Gpu,
    arena: ParameterArena,
    config: ResolvedOptimizerConfig,
    rule: UpdateRule,
    uniform: GPUBuffer,
    stateBuffers: { name: string; buffer: GPUBuffer }[],
    commands: readonly Command[],
    lossScale: { binding: Tensor; scaling: boolean },
  ) {
    this.#gpu = gpu;
    this.#lossScaleBinding = lossScale.binding;
    if (lossScale.scaling) this.lossScale = lossScale.binding;
    this.arena = arena;
    this.config = config;
    this.#rule = rule;
    this.#uniform = uniform;
    this.stateBuffers = stateBuffers;
    this.commands = commands;
  }

  /** Builds the pipelines, state buffers (zeroed, as torch's fresh state) and dispatches. */
  static async create(
    gpu: Gpu,
    arena: ParameterArena,
    config: OptimizerConfig,
    options: OptimizerOptions = {},
  ): Promise<Optimizer> {
    const resolved = resolveOptimizerConfig(config);
    checkArena(arena);
    const chunkBytes = chunkBytesFor(gpu, options);
    const rule = updateRule(resolved);
    const scaling = options.lossScaling && resolveLossScaleConfig(options.lossScaling);
    // Without loss scaling the kernels never read it, but it fills their binding.
    const lossScale = createTensor(gpu, "loss scale", LOSS_SCALE_SHAPE, "u32");
    if (scaling) {
      writeBuffer(gpu, lossScale.buffer, encodeLossScaleState(initialLossScaleState(scaling)));
    }
    const scalingConstants: OverrideConstants = scaling
      ? {
        LOSS_SCALING: 1,
        GROWTH_FACTOR: scaling.growthFactor,
        BACKOFF_FACTOR: scaling.backoffFactor,
        GROWTH_INTERVAL: scaling.growthInterval,
      }
      : {};
    const stepBuffer = gpu.device.createBuffer({
      label: `${resolved.kind} step values`,
      size: STEP_UNIFORM_BYTES,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    // Not createBuffer, which caps a buffer at one binding: the arena may be larger. The params
    // buffer already has the arena's size, so the device's maxBufferSize allows it.
    const stateBuffers = rule.stateNames.map((name) => ({
      name,
      buffer: gpu.device.createBuffer({ label: name, size: arena.size, usage: STORAGE_USAGE }),
    }));
    // Bound at its kind's struct size (Adam's and SGD's step values differ).
    const uniformBytes = rule.stepUniform(1, 0).byteLength;
    const stepValues = f32View(stepBuffer.label, stepBuffer, 0, uniformBytes);
    const chunks = bufferChunks(arena.size, chunkBytes);
    const grid = (bytes: number) => linearGrid(bytes / BYTES_PER_INVOCATION, WORKGROUP_SIZE);
    const checks = scaling
      ? chunks.map(({ offset, bytes, label }) =>
        kernelCall({
          kernel: kernels.optimizer,
          entryPoint: "find_non_finite",
          workgroupSize: WORKGROUP_SIZE,
          grid: grid(bytes),
          bindings: [
            read(f32View(`${arena.grads.label} ${label}`, arena.grads, offset, bytes)),
            readWrite(lossScale),
          ],
          label: `overflow check ${label}`,
        })
      )
      : [];
    const updates = chunks.map(({ offset, bytes, label }) => {
      const views = (buffer: GPUBuffer) =>
        f32View(`${buffer.label} ${label}`, buffer, offset, bytes);
      return kernelCall({
        kernel: kernels.optimizer,
        entryPoint: rule.entryPoint,
        workgroupSize: WORKGROUP_SIZE,
        constants: { ...rule.constants, ...scalingConstants },
        grid: grid(bytes),
        bindings: [
          read(views(arena.grads)),
          uniform(stepValues),
          read(lossScale),
          readWrite(views(arena.params)),
          ...stateBuffers.map(({ buffer }) => readWrite(views(buffer))),
        ],
        label: `${resolved.kind} ${label}`,
      });
    });
    const scaleUpdate = scaling
      ? [kernelCall({
        kernel: kernels.optimizer,
        entryPoint: "update_scale",
        workgroupSize: 1,
        constants: scalingConstants,
        grid: [1],
        bindings: [readWrite(lossScale)],
        label: "loss scale update",
      })]
      : [];
    const { commands } = await materialize(gpu, [...checks, ...updates, ...scaleUpdate], {
      label: resolved.kind,
    });
    return new Optimizer(
      gpu,
      arena,
      resolved,
      rule,
      stepBuffer,
      stateBuffers,
      commands,
      { binding: lossScale, scaling: scaling !== undefined },
    );
  }

  /** Steps taken so far, counting the one prepared: torch's state["step"]. */
  get step(): number {
    return this.#step;
  }

  /**
   * Counts a step and writes its uniforms (learning rate `lr`, Adam's bias corrections). Call
   * once per step, before the submit that holds `commands`: queue writes are ordered with
   * submits, so the next step's write cannot overtake this step's update.
   */
  prepareStep(lr: number): void {
    if (!Number.isFinite(lr) || lr < 0) {
      throw new RangeError(`optimizer: learning rate must be finite and >= 0, got ${lr}`);
    }
    this.#step++;
    writeBuffer(this.#gpu, this.#uniform, this.#rule.stepUniform(this.#step, lr));
  }

  /** Bytes of GPU memory the optimizer state takes. */
  stateBytes(): number {
    return this.stateBuffers.length * this.arena.size;
  }

  /** Reads the loss-scale state back after the steps submitted so far (with loss scaling). */
  async readLossScale(): Promise<LossScaleState | undefined> {
    if (!this.lossScale) return undefined;
    const { buffer, offset } = this.lossScale;
    return decodeLossScaleState(
      await readBuffer(this.#gpu, buffer, offset, byteSize(this.lossScale)),
    );
  }

  /** Reads the state back after the steps submitted so far. */
  async exportState(): Promise<OptimizerState> {
    const buffers: Record<string, Float32Array> = {};
    for (const { name, buffer } of this.stateBuffers) {
      buffers[name] = await readFloat32(this.#gpu, buffer, 0, this.arena.size / 4);
    }
    const lossScale = await this.readLossScale();
    return { step: this.#step, buffers, ...lossScale && { lossScale } };
  }

  /** Replaces the state with one exported from an optimizer of the same kind and arena size. */
  importState(state: OptimizerState): void {
    if (!Number.isInteger(state.step) || state.step < 0) {
      throw new RangeError(`optimizer: step must be an integer >= 0, got ${state.step}`);
    }
    const expected = this.stateBuffers.map(({ name }) => name);
    const given = Object.keys(state.buffers);
    if (given.length !== expected.length || !expected.every((name) => name in state.buffers)) {
      throw new RangeError(
        `optimizer: ${this.config.kind} state needs buffers [${expected}], got [${given}]`,
      );
    }
    const length = this.arena.size / 4;
    for (const { name, buffer } of this.stateBuffers) {
      const values = state.buffers[name];
      if (values.length !== length) {
        throw new RangeError(`optimizer: state ${name} has ${values.length} values, not ${length}`);
      }
      writeBuffer(this.#gpu, buffer, values);
    }
    if (this.lossScale) {
      if (!state.lossScale) {
        throw new RangeError(
          "optimizer: the state has no loss-scale state, which loss scaling needs",
        );
      }
      const lossScale = lossScaleStateSchema.parse(state.lossScale);
      writeBuffer(
        this.#gpu,
        this.lossScale.buffer,
        encodeLossScaleState(lossScale),
        this.lossScale.offset,
      );
    }
    this.#step = state.step;
  }

  /** Frees the state and uniform buffers (the arena belongs to the caller). */
  destroy(): void {
    for (const { buffer } of this.stateBuffers) buffer.destroy();
    this.#uniform.destroy();
    this.#lossScaleBinding.buffer.destroy();
  }
}
