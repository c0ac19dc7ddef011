/**
 * Load probes (bench/shaders/probe_loads.wgsl): GB/s that each way of reading memory delivers to
 * the invocations, beside the adapter's FMA peak (bench/shaders/fma.wgsl). On a CPU adapter these
 * say which load forms the CPU kernels should use: on llvmpipe a load's cost depends on its kind
 * (storage buffer, texture, uniform buffer, workgroup memory) far more than on the bytes, and on
 * the CPU's instruction set (bench/README.md, "CPU adapters").
 *
 *   deno run --allow-read --allow-env bench/cpu_probe.ts [--quick]
 *   (or `deno task bench --only cpu-probe`)
 *
 * Bytes are counted per invocation (16 per vec4 each lane receives), so a form whose lanes share
 * one address is credited as if each lane had its own: the figure is the cost of the load
 * instruction, the thing a kernel's design trades against FMAs. Forms are timed in turns, several
 * rounds, and the median of each is reported, so that all see the same load on a shared machine.
 */
import process from "node:process";
import { parseArgs } from "node:util";
import type { Gpu } from "../src/gpu/device.ts";
import { requestGpu } from "../src/gpu/deno_device.ts";
import { type Dispatch, encodeCommands, repeatCommands } from "../src/gpu/dispatch.ts";
import { kernelId } from "../src/gpu/pipeline.ts";
import { kernel } from "../src/shaders.ts";
import { yardsticks } from "./kernels.ts";
import probeLoads from "./shaders/probe_loads.wgsl" with { type: "text" };
import { formatTable, median } from "./timing.ts";

const probe = kernel("probe_loads", probeLoads);

const WORKGROUP_SIZE = 8;
const TEXTURE_WIDTH = 1024;
/** Which address each lane reads (probe_loads.wgsl's `element`). */
const PATTERNS = { adjacent: 0, runs: 1, uniform: 2 } as const;
type Pattern = keyof typeof PATTERNS;

const FORMS = [
  { entryPoint: "storage_vec4", what: "storage buffer, vec4" },
  { entryPoint: "storage_f32", what: "storage buffer, 4 x f32" },
  { entryPoint: "storage_mat4", what: "storage buffer, mat4x4f" },
  { entryPoint: "texture_vec4", what: "rgba32float texture, textureLoad" },
  { entryPoint: "storage_texture_vec4", what: "rgba32float storage texture (read)" },
  { entryPoint: "uniform_vec4", what: "uniform buffer (64 KiB), vec4" },
  { entryPoint: "workgroup_vec4", what: "workgroup memory (16 KiB), vec4" },
] as const;

export interface CpuProbeRow {
  form: string;
  pattern: Pattern | "fma";
  /** GB/s delivered to the invocations (GFLOP/s for the FMA loop), over wall-clock time. */
  wall: number;
  /** The same over the process's CPU time shared out over the cores (see timeDispatch). */
  cpu: number;
}

export interface CpuProbeOptions {
  quick?: boolean;
  /** Rounds of timing every form in turn; each form's median is reported. */
  rounds?: number;
}

export async function benchCpuProbe(
  gpu: Gpu,
  options: CpuProbeOptions = {},
): Promise<CpuProbeRow[]> {
  const { device } = gpu;
  const quick = options.quick ?? false;
  const rounds = options.rounds ?? (quick ? 1 : 5);
  const invocations = quick ? 256 : 2048;
  const loads = quick ? 64 : 256;
  /** probe_loads.wgsl's WINDOW. */
  const vectors = 16384;
  const data = new Float32Array(vectors * 4).map((_, i) => (i % 7) - 3);

  const storage = device.createBuffer({
    size: data.byteLength,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(storage, 0, data);
  const table = device.createBuffer({
    size: 65536,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(table, 0, data, 0, 16384);
  const texture = device.createTexture({
    size: [TEXTURE_WIDTH, vectors / TEXTURE_WIDTH],
    format: "rgba32float",
    usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.STORAGE_BINDING |
      GPUTextureUsage.COPY_DST,
  });
  device.queue.writeTexture({ texture }, data, { bytesPerRow: TEXTURE_WIDTH * 16 }, [
    TEXTURE_WIDTH,
    vectors / TEXTURE_WIDTH,
  ]);
  const sums = device.createBuffer({ size: invocations * 16, usage: GPUBufferUsage.STORAGE });
  const coefficients = device.createBuffer({
    size: 32,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(coefficients, 0, new Float32Array([1, 1, 1, 1, 0, 0, 0, 0]));

  const sourceOf = (entryPoint: string): GPUBindingResource =>
    entryPoint === "texture_vec4" || entryPoint === "storage_texture_vec4"
      ? texture.createView()
      : entryPoint === "uniform_vec4"
      ? { buffer: table }
      : { buffer: storage };
  const dispatchOf = async (
    label: string,
    entryPoint: string,
    constants: Record<string, number>,
    resources: GPUBindingResource[],
  ): Promise<Dispatch> => {
    const k = entryPoint === "fma_loop" ? yardsticks.fma : probe;
    const pipeline = await gpu.pipelines.get(k, entryPoint, constants);
    const bindGroup = device.createBindGroup({
      label: `${kernelId(k)} ${label}`,
      layout: pipeline.getBindGroupLayout(0),
      entries: resources.map((resource, binding) => ({ binding, resource })),
    });
    return { label, pipeline, bindGroup, workgroups: [invocations / WORKGROUP_SIZE, 1, 1] };
  };

  const probes: {
    form: string;
    pattern: CpuProbeRow["pattern"];
    units: number;
    dispatch: Dispatch;
  }[] = [];
  for (const { entryPoint, what } of FORMS) {
    for (const [pattern, code] of Object.entries(PATTERNS) as [Pattern, number][]) {
      const dispatch = await dispatchOf(`${what} ${pattern}`, entryPoint, {
        WORKGROUP_SIZE,
        INVOCATIONS: invocations,
        LOADS: loads,
        PATTERN: code,
        ...(entryPoint.endsWith("texture_vec4") ? { TEXTURE_WIDTH } : {}),
      }, [sourceOf(entryPoint), { buffer: sums }]);
      probes.push({ form: what, pattern, units: invocations * loads * 16 / 1e9, dispatch });
    }
  }
  const iterations = quick ? 256 : 4096;
  probes.push({
    form: "FMA loop (GFLOP/s)",
    pattern: "fma",
    units: invocations * iterations * 8 * 4 * 2 / 1e9,
    dispatch: await dispatchOf("fma", "fma_loop", { WORKGROUP_SIZE, ITERATIONS: iterations }, [
      { buffer: coefficients },
      { buffer: sums },
    ]),
  });

  const rates = probes.map(() => ({ wall: [] as number[], cpu: [] as number[] }));
  for (let round = 0; round < rounds; round++) {
    for (const [i, { dispatch, units }] of probes.entries()) {
      const { wall, cpu } = await timeDispatch(gpu, dispatch, quick ? 0.02 : 0.3);
      rates[i].wall.push(units / wall);
      rates[i].cpu.push(units / cpu);
    }
  }
  storage.destroy();
  table.destroy();
  texture.destroy();
  sums.destroy();
  coefficients.destroy();
  return probes.map(({ form, pattern }, i) => ({
    form,
    pattern,
    wall: median(rates[i].wall),
    cpu: median(rates[i].cpu),
  }));
}

/**
 * Seconds per dispatch: wall-clock, and the process's CPU time over the core count (what it
 * would take with the cores to itself; lavapipe's threads are this process's). R repetitions in
 * one submit, one wait, R sized from a first submit to last about `seconds`.
 */
async function timeDispatch(
  gpu: Gpu,
  dispatch: Dispatch,
  seconds: number,
): Promise<{ wall: number; cpu: number }> {
  const run = async (reps: number) => {
    const encoder = gpu.device.createCommandEncoder();
    encodeCommands(encoder, repeatCommands([dispatch], reps));
    const start = performance.now();
    const cpuStart = process.cpuUsage();
    gpu.device.queue.submit([encoder.finish()]);
    await gpu.device.queue.onSubmittedWorkDone();
    const cpu = process.cpuUsage(cpuStart);
    return {
      wall: (performance.now() - start) / 1000 / reps,
      cpu: (cpu.user + cpu.system) / 1e6 / navigator.hardwareConcurrency / reps,
    };
  };
  const first = await run(4);
  return await run(Math.max(4, Math.min(4096, Math.round(seconds / first.wall))));
}

/** One row per form, a column per lane pattern. */
export function formatCpuProbeRows(rows: CpuProbeRow[]): string {
  const forms = [...new Set(rows.map((row) => row.form))];
  const patterns = Object.keys(PATTERNS) as Pattern[];
  return formatTable(
    ["load form: GB/s, CPU time (wall)", ...patterns],
    forms.map((form) => [
      form,
      ...patterns.map((pattern) => {
        const row = rows.find((r) =>
          r.form === form && (r.pattern === pattern || r.pattern === "fma")
        );
        return row && (row.pattern === pattern || pattern === "adjacent")
          ? `${row.cpu.toFixed(1)} (${row.wall.toFixed(1)})`
          : "";
      }),
    ]),
  );
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { quick: { type: "boolean", default: false } },
  });
  const gpu = await requestGpu();
  console.log(`adapter: ${gpu.adapterName}`);
  console.log(formatCpuProbeRows(await benchCpuProbe(gpu, { quick: values.quick })));
}
