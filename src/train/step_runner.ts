/**
 * One submit per step: the step's commands (src/gpu/dispatch.ts) in one command encoder. Every
 * few steps the metrics are copied to a staging buffer in the same submit and mapped: that is the
 * only wait, and it both bounds how far the CPU runs ahead of the GPU and gives a running loss.
 * The readbacks come at steps 1, 2, 4, … below `readEvery`, then every `readEvery` steps: the
 * first loss and the pace are known after 2 and 4 steps rather than 16 (minutes, with a large
 * model on a CPU adapter), for three more waits an epoch.
 */
import type { Gpu } from "../gpu/device.ts";
import { type Command, encodeCommands } from "../gpu/dispatch.ts";
import { byteSize, type Tensor } from "../gpu/tensor.ts";
import { decodeMetrics, type Metrics, METRICS_BYTES } from "../ops/softmax_cross_entropy.ts";
import { decodeLossScaleState, type LossScaleState } from "./loss_scale.ts";

export interface StepRunnerOptions {
  /** Read the metrics back every this many steps (default 8). */
  readEvery?: number;
  /** f16 training: the loss-scale state, read back with the metrics (the same copy and map). */
  lossScale?: Tensor;
}

/** What one readback holds. */
export interface StepReadback {
  metrics: Metrics;
  /** With loss scaling. */
  lossScale?: LossScaleState;
}

/** Where the loss-scale state lies in a staging buffer, after the metrics. */
const LOSS_SCALE_STAGING_OFFSET = 16;

/** Submits steps and reads the metrics back every `readEvery` steps without stalling the GPU. */
export class StepRunner {
  readonly #gpu: Gpu;
  readonly #metrics: Tensor;
  readonly #lossScale?: Tensor;
  readonly #readEvery: number;
  /** Two staging buffers: one being filled by the GPU while the other is read. */
  readonly #staging: GPUBuffer[];
  #pending: { buffer: GPUBuffer; mapped: Promise<void> }[] = [];
  /** Steps submitted since `restart`. */
  #submitted = 0;
  /** After a `submit`: the staging buffer its metrics were copied to (null: none) for `collect`. */
  #copied: GPUBuffer | null | undefined;

  constructor(gpu: Gpu, metrics: Tensor, options: StepRunnerOptions = {}) {
    this.#gpu = gpu;
    this.#metrics = metrics;
    this.#lossScale = options.lossScale;
    this.#readEvery = options.readEvery ?? 8;
    const size = this.#lossScale
      ? LOSS_SCALE_STAGING_OFFSET + byteSize(this.#lossScale)
      : LOSS_SCALE_STAGING_OFFSET;
    this.#staging = [0, 1].map((i) =>
      gpu.device.createBuffer({
        label: `metrics staging ${i}`,
        size,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      })
    );
  }

  /** Starts a new run of steps (an epoch), with its early readbacks; call it after `drain`. */
  restart(): void {
    if (this.#pending.length > 0 || this.#copied !== undefined) {
      throw new Error("StepRunner.restart with readbacks pending");
    }
    this.#submitted = 0;
  }

  /** Whether the metrics are read back after the `step`th step (from 1) of a run. */
  #readsAfter(step: number): boolean {
    const early = step < this.#readEvery && (step & (step - 1)) === 0;
    return early || step % this.#readEvery === 0;
  }

  /**
   * Submits one step, and never waits: the caller can report it before `collect`, which may.
   * Every `submit` is followed by a `collect`.
   */
  submit(commands: readonly (readonly Command[])[]): void {
    if (this.#copied !== undefined) throw new Error("StepRunner.submit twice without collect");
    const encoder = this.#gpu.device.createCommandEncoder();
    encodeCommands(encoder, commands.flat());
    this.#submitted++;
    let staging: GPUBuffer | undefined;
    if (this.#readsAfter(this.#submitted)) {
      staging = this.#staging.find((buffer) => !this.#pending.some((p) => p.buffer === buffer));
      if (staging) {
        encoder.copyBufferToBuffer(
          this.#metrics.buffer,
          this.#metrics.offset,
          staging,
          0,
          METRICS_BYTES,
        );
        if (this.#lossScale) {
          const { buffer, offset } = this.#lossScale;
          const bytes = byteSize(this.#lossScale);
          encoder.copyBufferToBuffer(buffer, offset, staging, LOSS_SCALE_STAGING_OFFSET, bytes);
        }
      }
    }
    this.#gpu.device.queue.submit([encoder.finish()]);
    this.#copied = staging ?? null;
  }

  /**
   * Starts the readback of the step just submitted, if it has one (on some adapters mapping
   * waits for the GPU at once). Returns the metrics (and loss-scale state) as of an earlier step when a readback
   * completed (at most one read in flight beyond the current one), else undefined.
   */
  async collect(): Promise<StepReadback | undefined> {
    const staging = this.#copied;
    if (staging === undefined) throw new Error("StepRunner.collect without a submit");
    this.#copied = undefined;
    if (staging) this.#pending.push({ buffer: staging, mapped: staging.mapAsync(GPUMapMode.READ) });
    // Keep at most one readback outstanding: wait for the older one.
    if (this.#pending.length > 1) return await this.#take();
    return undefined;
  }

  /** Waits for every submitted step and pending readback. */
  async drain(): Promise<void> {
    if (this.#copied !== undefined) await this.collect();
    while (this.#pending.length > 0) await this.#take();
    await this.#gpu.device.queue.onSubmittedWorkDone();
  }

  async #take(): Promise<StepReadback> {
    const { buffer, mapped } = this.#pending.shift()!;
    await mapped;
    const bytes = buffer.getMappedRange().slice(0);
    buffer.unmap();
    const metrics = decodeMetrics(bytes);
    if (!this.#lossScale) return { metrics };
    return { metrics, lossScale: decodeLossScaleState(bytes, LOSS_SCALE_STAGING_OFFSET) };
  }

  destroy(): void {
    for (const buffer of this.#staging) buffer.destroy();
  }
}
