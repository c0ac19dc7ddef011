/**
 * Commands (src/gpu/dispatch.ts): a texture copy fills exactly the texels of its tensor, whole
 * rows and a partial last row alike, from a tensor at an offset in a shared buffer; and copies
 * and dispatches run in order in one encoder, with or without timestamps around them.
 */
import assert from "node:assert/strict";
import type { Gpu } from "../../src/gpu/device.ts";
import { type Command, encodeCommands, submitCommands } from "../../src/gpu/dispatch.ts";
import {
  type KernelCall,
  kernelCall,
  linearGrid,
  read,
  sampled,
  textureCopy,
  write,
} from "../../src/gpu/kernel_call.ts";
import type { Kernel } from "../../src/gpu/pipeline.ts";
import { type Tensor, type TensorDesc, tensorDesc, textureDesc } from "../../src/gpu/tensor.ts";
import { elementCount } from "../../src/util/shape.ts";
import { materialize } from "../../src/plan/materialize.ts";
import { gpuTest, readTensor } from "../support/gpu.ts";

/** Reads a texture back through a kernel (texel t to elements 4t..4t+3), as the convs read it. */
const READ_TEXELS: Kernel = {
  name: "read_texels",
  code: `
override TEXELS: u32;
override ROW_SHIFT: u32;
override WORKGROUP_SIZE: u32;
@group(0) @binding(0) var texels: texture_2d<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<vec4f>;
@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let t = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  if (t >= TEXELS) { return; }
  out[t] = textureLoad(texels, vec2u(t & ((1u << ROW_SHIFT) - 1u), t >> ROW_SHIFT), 0);
}`,
};

/** The call that reads every texel of `texture` into `out`. */
function readTexels(texture: TensorDesc, out: TensorDesc): KernelCall {
  const texels = elementCount(out.shape) / 4;
  return kernelCall({
    kernel: READ_TEXELS,
    entryPoint: "main",
    workgroupSize: 64,
    constants: { TEXELS: texels, ROW_SHIFT: Math.log2(texture.texture![0]) },
    grid: linearGrid(texels, 64),
    bindings: [sampled(texture), write(out)],
  });
}

/** A tensor of `elements` f32 values (element i holds i + 1) at byte 256 of a larger buffer. */
function offsetTensor(gpu: Gpu, elements: number): Tensor {
  const offset = 256;
  const buffer = gpu.device.createBuffer({
    size: offset + elements * 4 + 64,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
  const words = new Float32Array(buffer.size / 4).fill(-1);
  words.set(Float32Array.from({ length: elements }, (_, i) => i + 1), offset / 4);
  gpu.device.queue.writeBuffer(buffer, 0, words);
  return { label: "source", shape: [elements / 8, 8], dtype: "f32", buffer, offset };
}

// 9000 texels: one whole row of 8192 and 808 in the second; 20 texels: part of one row of 32.
for (const texels of [9000, 20]) {
  gpuTest(
    `texture copy: ${texels} texels from an offset, then read as textureLoad`,
    async (gpu) => {
      const source = offsetTensor(gpu, texels * 4);
      const texture = textureDesc("source texels", source);
      const out = tensorDesc("out", [texels * 4]);
      const materialized = await materialize(gpu, [
        textureCopy(source, texture),
        readTexels(texture, out),
      ], { label: "copy test" });
      submitCommands(gpu, materialized.commands);
      const values = await readTensor(gpu, materialized.resolve(out));
      assert.deepEqual(
        Array.from(values),
        Array.from({ length: texels * 4 }, (_, i) => i + 1),
      );
      materialized.destroy();
      source.buffer.destroy();
    },
  );
}

Deno.test("texture copy: refused for f16 and for a texture of another shape", () => {
  const f16 = tensorDesc("half", [4, 8], "f16");
  assert.throws(() => textureCopy(f16, textureDesc("half texels", f16)), /f16; a copy keeps/);
  const padded = tensorDesc("stem", [4, 3]);
  assert.throws(() => textureCopy(padded, textureDesc("stem texels", padded)), /no texture of/);
});

gpuTest("commands: timestamps bracket copies and dispatches in order", async (gpu) => {
  if (!gpu.device.features.has("timestamp-query")) return;
  const source = offsetTensor(gpu, 64);
  const texture = textureDesc("source texels", source);
  const out = tensorDesc("out", [64]);
  const materialized = await materialize(gpu, [
    textureCopy(source, texture),
    readTexels(texture, out),
  ], { label: "timestamp test" });
  const [copy, dispatch] = materialized.commands;
  const querySet = gpu.device.createQuerySet({ type: "timestamp", count: 4 });
  const resolved = gpu.device.createBuffer({
    size: 32,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const readback = gpu.device.createBuffer({
    size: 32,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const encoder = gpu.device.createCommandEncoder();
  // A copy alone (empty passes around it carry the stamps), then copy and dispatch together.
  const runs: Command[][] = [[copy], [copy, dispatch]];
  runs.forEach((run, i) =>
    encodeCommands(encoder, run, { querySet, begin: 2 * i, end: 2 * i + 1 })
  );
  encoder.resolveQuerySet(querySet, 0, 4, resolved, 0);
  encoder.copyBufferToBuffer(resolved, 0, readback, 0, 32);
  gpu.device.pushErrorScope("validation");
  gpu.device.queue.submit([encoder.finish()]);
  assert.equal(await gpu.device.popErrorScope(), null);
  await readback.mapAsync(GPUMapMode.READ);
  const ticks = Array.from(new BigInt64Array(readback.getMappedRange().slice(0)));
  readback.unmap();
  for (let i = 1; i < ticks.length; i++) assert.ok(ticks[i] >= ticks[i - 1], `stamp ${i}`);
  const values = await readTensor(gpu, materialized.resolve(out));
  assert.deepEqual(Array.from(values), Array.from({ length: 64 }, (_, i) => i + 1));
  for (const resource of [querySet, resolved, readback, source.buffer]) resource.destroy();
  materialized.destroy();
});

// The bindings a copy reads and writes are what a plan sees: the texture's first binder writes it.
gpuTest("texture copy: a plan treats it as writing the texture", async (gpu) => {
  const source = offsetTensor(gpu, 32);
  const texture = textureDesc("source texels", source);
  const copy = textureCopy(source, texture);
  assert.deepEqual(copy.bindings.map((binding) => binding.access), ["read", "storage_texture"]);
  assert.deepEqual(copy.bindings[0], read(source));
  const materialized = await materialize(gpu, [copy], { label: "plan test" });
  assert.equal(materialized.allocation.slots.filter((slot) => slot.texture).length, 1);
  materialized.destroy();
  source.buffer.destroy();
});
