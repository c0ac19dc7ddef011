/**
 * A dispatch is everything one kernel launch needs, built once at plan time from a kernel call
 * (src/plan/materialize.ts): the pipeline, the bind group and the workgroup counts. Encoding it
 * later costs about a microsecond. A texture copy (kernel_call.ts, `TextureCopy`) becomes a
 * `CopyToTexture`: the source range and the texture. `encodeCommands` puts a list of both into an
 * encoder, dispatches in compute passes and copies between them.
 */
import type { Gpu } from "./device.ts";
import type { Dimensions } from "./kernel_call.ts";

export interface Dispatch {
  readonly label: string;
  readonly pipeline: GPUComputePipeline;
  readonly bindGroup: GPUBindGroup;
  readonly workgroups: Dimensions;
}

/** copyBufferToTexture of `texels` rgba32float texels from `offset`, rows of the texture's width. */
export interface CopyToTexture {
  readonly label: string;
  readonly buffer: GPUBuffer;
  readonly offset: number;
  readonly texture: GPUTexture;
  readonly texels: number;
}

export type Command = Dispatch | CopyToTexture;

const TEXEL_BYTES = 16;

function encodeCopy(encoder: GPUCommandEncoder, copy: CopyToTexture): void {
  const width = copy.texture.width;
  const bytesPerRow = width * TEXEL_BYTES;
  const rows = Math.floor(copy.texels / width);
  const rest = copy.texels - rows * width;
  // Whole rows in one copy, the last one's texels (textureExtent pads it) in another: the buffer
  // range ends with the tensor, so a whole last row would read past it. A texture of several rows
  // has rows of 8192 texels, a multiple of the 256 bytes bytesPerRow must be; a one-row copy
  // needs none (and a narrow texture's row is less).
  if (rows > 0) {
    encoder.copyBufferToTexture(
      { buffer: copy.buffer, offset: copy.offset, ...(rows > 1 ? { bytesPerRow } : {}) },
      { texture: copy.texture },
      [width, rows],
    );
  }
  if (rest > 0) {
    encoder.copyBufferToTexture(
      { buffer: copy.buffer, offset: copy.offset + rows * bytesPerRow },
      { texture: copy.texture, origin: [0, rows] },
      [rest, 1],
    );
  }
}

/**
 * Timestamps around a whole list of commands: the first pass begins with `begin`, the last ends
 * with `end` (empty passes are added where a copy comes first or last).
 */
export interface CommandTimestamps {
  readonly querySet: GPUQuerySet;
  readonly begin: number;
  readonly end: number;
}

/**
 * Encodes `commands` in order: each run of dispatches in one compute pass, each copy between
 * passes. Without copies that is one pass, as a training step without textures runs.
 */
export function encodeCommands(
  encoder: GPUCommandEncoder,
  commands: readonly Command[],
  timestamps?: CommandTimestamps,
): void {
  const runs: (Dispatch[] | CopyToTexture)[] = [];
  for (const command of commands) {
    const last = runs[runs.length - 1];
    if (!("pipeline" in command)) runs.push(command);
    else if (Array.isArray(last)) last.push(command);
    else runs.push([command]);
  }
  if (timestamps) {
    if (!Array.isArray(runs[0])) runs.unshift([]);
    if (!Array.isArray(runs[runs.length - 1])) runs.push([]);
  }
  runs.forEach((run, index) => {
    if (!Array.isArray(run)) return encodeCopy(encoder, run);
    const first = index === 0, last = index === runs.length - 1;
    const pass = encoder.beginComputePass(
      timestamps && (first || last)
        ? {
          timestampWrites: {
            querySet: timestamps.querySet,
            ...(first ? { beginningOfPassWriteIndex: timestamps.begin } : {}),
            ...(last ? { endOfPassWriteIndex: timestamps.end } : {}),
          },
        }
        : undefined,
    );
    for (const dispatch of run) {
      pass.setPipeline(dispatch.pipeline);
      pass.setBindGroup(0, dispatch.bindGroup);
      pass.dispatchWorkgroups(...dispatch.workgroups);
    }
    pass.end();
  });
}

/** `commands`, `count` times over in order: repetitions encoded into one submit (benchmarks). */
export function repeatCommands<C extends Command>(commands: readonly C[], count: number): C[] {
  return Array.from({ length: count }, () => commands).flat();
}

/** Encodes the commands and submits them in one command buffer. */
export function submitCommands(gpu: Gpu, commands: readonly Command[]): void {
  const encoder = gpu.device.createCommandEncoder();
  encodeCommands(encoder, commands);
  gpu.device.queue.submit([encoder.finish()]);
}
