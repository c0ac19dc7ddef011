/**
 * A model's tensors on the GPU: the parameter arena, the gradient arena of the same layout, the
 * BN running statistics and num_batches_tracked counters. Training and evaluation plans share
 * one ModelWeights.
 */
import { elementCount } from "../util/shape.ts";
import { readBuffer, STORAGE_ALIGNMENT, writeBuffer } from "../gpu/buffer.ts";
import type { Gpu } from "../gpu/device.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { type Architecture, buildArchitecture, convBnUnits } from "./architecture.ts";
import type { ModelConfig } from "./config.ts";
import { initialParameters, initialState } from "./init.ts";
import {
  type ArenaLayout,
  layoutArena,
  type ParameterSpec,
  parameterSpecs,
  type StateSpec,
  stateSpecs,
} from "./parameters.ts";

/** Each counter gets its own aligned slot so it binds as a range of its own. */
const COUNTER_STRIDE = STORAGE_ALIGNMENT;

export interface BatchNormTensors {
  gamma: Tensor;
  beta: Tensor;
  runningMean: Tensor;
  runningVar: Tensor;
  /** [1] u32 */
  numBatchesTracked: Tensor;
}

/** What a plan binds of a model: its architecture and its tensors by PyTorch name. */
export interface WeightTensors {
  readonly architecture: Architecture;
  param(name: string): Tensor;
  grad(name: string): Tensor;
  batchNorm(name: string): BatchNormTensors;
}

/** A model's four buffers: parameters, gradients, running statistics and counters. */
export interface WeightBuffers {
  readonly params: GPUBuffer;
  readonly grads: GPUBuffer;
  readonly state: GPUBuffer;
  readonly counters: GPUBuffer;
}

/** Where each of a model's tensors lies in its buffers; a function of the architecture alone. */
export class WeightLayout {
  readonly parameterLayout: ArenaLayout<ParameterSpec>;
  readonly stateLayout: ArenaLayout<StateSpec>;
  readonly batchNormNames: readonly string[];

  constructor(architecture: Architecture) {
    this.parameterLayout = layoutArena(parameterSpecs(architecture));
    this.stateLayout = layoutArena(stateSpecs(architecture));
    this.batchNormNames = convBnUnits(architecture).map(({ bn }) => bn.name);
  }

  /** Bytes of each buffer. */
  get sizes(): Record<keyof WeightBuffers, number> {
    return {
      params: this.parameterLayout.size,
      grads: this.parameterLayout.size,
      state: this.stateLayout.size,
      counters: this.batchNormNames.length * COUNTER_STRIDE,
    };
  }
}

/**
 * A model's tensors as views of its buffers. Making them touches no GPU, so a plan can be built
 * and checked over any buffers, stand-ins included (tests/plan/plan_test.ts).
 */
export class WeightViews extends WeightLayout implements WeightTensors, WeightBuffers {
  readonly architecture: Architecture;
  readonly params: GPUBuffer;
  readonly grads: GPUBuffer;
  readonly state: GPUBuffer;
  readonly counters: GPUBuffer;
  readonly #tensors = new Map<string, { param: Tensor; grad: Tensor }>();
  readonly #stateTensors = new Map<string, Tensor>();

  constructor(architecture: Architecture, buffers: WeightBuffers) {
    super(architecture);
    this.architecture = architecture;
    ({
      params: this.params,
      grads: this.grads,
      state: this.state,
      counters: this.counters,
    } = buffers);
    const view = (label: string, buffer: GPUBuffer, offset: number, shape: number[]): Tensor => ({
      label,
      buffer,
      offset,
      shape,
      dtype: "f32",
    });
    for (const { spec, offset } of this.parameterLayout.entries) {
      this.#tensors.set(spec.name, {
        param: view(spec.name, this.params, offset, spec.shape),
        grad: view(`grad ${spec.name}`, this.grads, offset, spec.shape),
      });
    }
    for (const { spec, offset } of this.stateLayout.entries) {
      this.#stateTensors.set(spec.name, view(spec.name, this.state, offset, spec.shape));
    }
  }

  param(name: string): Tensor {
    return this.#entry(name).param;
  }

  grad(name: string): Tensor {
    return this.#entry(name).grad;
  }

  #entry(name: string) {
    const entry = this.#tensors.get(name);
    if (!entry) throw new Error(`model has no parameter ${name}`);
    return entry;
  }

  batchNorm(name: string): BatchNormTensors {
    const index = this.batchNormNames.indexOf(name);
    if (index < 0) throw new Error(`model has no batch norm ${name}`);
    return {
      gamma: this.param(`${name}.weight`),
      beta: this.param(`${name}.bias`),
      runningMean: this.#stateTensors.get(`${name}.running_mean`)!,
      runningVar: this.#stateTensors.get(`${name}.running_var`)!,
      numBatchesTracked: {
        label: `${name}.num_batches_tracked`,
        buffer: this.counters,
        offset: index * COUNTER_STRIDE,
        shape: [1],
        dtype: "u32",
      },
    };
  }
}

/** A model's buffers on a GPU, with their upload, download and initialisation. */
export class ModelWeights extends WeightViews {
  readonly #gpu: Gpu;

  constructor(gpu: Gpu, config: ModelConfig) {
    const architecture = buildArchitecture(config);
    const sizes = new WeightLayout(architecture).sizes;
    // The arenas are bound per tensor (each under the binding limit); the optimizer binds them
    // in chunks, so only the buffer size limit applies to the whole.
    super(architecture, {
      params: createArena(gpu, "parameters", sizes.params),
      grads: createArena(gpu, "gradients", sizes.grads),
      state: createArena(gpu, "batch-norm running statistics", sizes.state),
      counters: createArena(gpu, "num_batches_tracked", sizes.counters),
    });
    this.#gpu = gpu;
  }

  /** PyTorch's default initialisation from `seed`; running statistics and counters reset. */
  initialize(seed: number): void {
    const specs = this.parameterLayout.entries.map(({ spec }) => spec);
    const values = initialParameters(specs, seed);
    this.uploadParameters(new Map(specs.map((spec, i) => [spec.name, values[i]])));
    const stateSpecList = this.stateLayout.entries.map(({ spec }) => spec);
    const state = initialState(stateSpecList);
    this.uploadState(
      new Map(stateSpecList.map((spec, i) => [spec.name, state[i]])),
      new Uint32Array(this.batchNormNames.length),
    );
  }

  /** Writes parameters (project layout) into the arena; every parameter must be given. */
  uploadParameters(values: ReadonlyMap<string, Float32Array>): void {
    this.#upload(this.params, this.parameterLayout, values);
    // Gradients of the padding between tensors are never written: start them at zero once.
    writeBuffer(this.#gpu, this.grads, new Uint8Array(this.parameterLayout.size));
  }

  uploadState(values: ReadonlyMap<string, Float32Array>, numBatchesTracked: Uint32Array): void {
    this.#upload(this.state, this.stateLayout, values);
    const counters = new Uint32Array(this.batchNormNames.length * COUNTER_STRIDE / 4);
    numBatchesTracked.forEach((count, i) => counters[i * COUNTER_STRIDE / 4] = count);
    writeBuffer(this.#gpu, this.counters, counters);
  }

  #upload<Spec extends { name: string; shape: number[] }>(
    buffer: GPUBuffer,
    layout: ArenaLayout<Spec>,
    values: ReadonlyMap<string, Float32Array>,
  ): void {
    const arena = new Float32Array(layout.size / 4);
    for (const { spec, offset } of layout.entries) {
      const value = values.get(spec.name);
      if (!value) throw new Error(`missing value for ${spec.name}`);
      arena.set(value, offset / 4);
    }
    writeBuffer(this.#gpu, buffer, arena);
  }

  downloadParameters(): Promise<Map<string, Float32Array>> {
    return this.#download(this.params, this.parameterLayout);
  }

  downloadGradients(): Promise<Map<string, Float32Array>> {
    return this.#download(this.grads, this.parameterLayout);
  }

  async downloadState(): Promise<
    { values: Map<string, Float32Array>; numBatchesTracked: Uint32Array }
  > {
    const values = await this.#download(this.state, this.stateLayout);
    const counters = new Uint32Array(await readBuffer(this.#gpu, this.counters));
    const numBatchesTracked = Uint32Array.from(
      this.batchNormNames,
      (_, i) => counters[i * COUNTER_STRIDE / 4],
    );
    return { values, numBatchesTracked };
  }

  async #download<Spec extends { name: string; shape: number[] }>(
    buffer: GPUBuffer,
    layout: ArenaLayout<Spec>,
  ) {
    const arena = new Float32Array(await readBuffer(this.#gpu, buffer));
    return new Map(layout.entries.map(({ spec, offset }) => {
      return [spec.name, arena.slice(offset / 4, offset / 4 + elementCount(spec.shape))] as const;
    }));
  }

  destroy(): void {
    for (const buffer of [this.params, this.grads, this.state, this.counters]) buffer.destroy();
  }
}

function createArena(gpu: Gpu, label: string, size: number): GPUBuffer {
  if (size > gpu.device.limits.maxBufferSize) {
    throw new RangeError(
      `${label} need ${size} bytes, over this device's maxBufferSize ` +
        `${gpu.device.limits.maxBufferSize}: use a smaller model or width multiplier`,
    );
  }
  return gpu.device.createBuffer({
    label,
    size,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
}
