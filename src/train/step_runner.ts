/**
 * One submit per step: the step's dispatches in one compute pass of one command encoder. Every
 * few steps the metrics are copied to a staging buffer in the same submit and mapped: that is the
 * only wait, and it both bounds how far the CPU runs ahead of the GPU and gives a running loss.
 */
import type { Gpu } from "../gpu/device.ts";
import { type Dispatch, encodeDispatches } from "../gpu/dispatch.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { decodeMetrics, type Metrics, METRICS_BYTES } from "../ops/softmax_cross_entropy.ts";

export interface StepRunnerOptions {
  /** Read the metrics back every this many steps (default 8). */
  readEvery?: number;
}

/** Submits steps and reads the metrics back every `readEvery` steps without stalling the GPU. */
export class StepRunner {
  readonly #gpu: Gpu;
  readonly #metrics: Tensor;
  readonly #readEvery: number;
  /** Two staging buffers: one being filled by the GPU while the other is read. */
  readonly #staging: GPUBuffer[];
  #pending: { buffer: GPUBuffer; mapped: Promise<void> }[] = [];
  #stepsSinceRead = 0;

  constructor(gpu: Gpu, metrics: Tensor, options: StepRunnerOptions = {}) {
    this.#gpu = gpu;
    this.#metrics = metrics;
    this.#readEvery = options.readEvery ?? 8;
    this.#staging = [0, 1].map((i) =>
      gpu.device.createBuffer({
        label: `metrics staging ${i}`,
        size: 16,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      })
    );
  }

  /**
   * Submits one step. Returns the metrics as of an earlier step when a readback completed (at
   * most one read in flight beyond the current one), else undefined.
   */
  async submit(dispatches: readonly (readonly Dispatch[])[]): Promise<Metrics | undefined> {
    const encoder = this.#gpu.device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    for (const group of dispatches) encodeDispatches(pass, group);
    pass.end();
    this.#stepsSinceRead++;
    let staging: GPUBuffer | undefined;
    if (this.#stepsSinceRead >= this.#readEvery) {
      this.#stepsSinceRead = 0;
      staging = this.#staging.find((buffer) => !this.#pending.some((p) => p.buffer === buffer));
      if (staging) {
        encoder.copyBufferToBuffer(
          this.#metrics.buffer,
          this.#metrics.offset,
          staging,
          0,
          METRICS_BYTES,
        );
      }
    }
    this.#gpu.device.queue.submit([encoder.finish()]);
    if (staging) this.#pending.push({ buffer: staging, mapped: staging.mapAsync(GPUMapMode.READ) });
    // Keep at most one readback outstanding: wait for the older one.
    if (this.#pending.length > 1) return await this.#take();
    return undefined;
  }

  /** Waits for every submitted step and pending readback. */
  async drain(): Promise<void> {
    while (this.#pending.length > 0) await this.#take();
    await this.#gpu.device.queue.onSubmittedWorkDone();
  }

  async #take(): Promise<Metrics> {
    const { buffer, mapped } = this.#pending.shift()!;
    await mapped;
    const bytes = buffer.getMappedRange(0, METRICS_BYTES).slice(0);
    buffer.unmap();
    return decodeMetrics(bytes);
  }

  destroy(): void {
    for (const buffer of this.#staging) buffer.destroy();
  }
}
