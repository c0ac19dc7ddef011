/**
 * The kernel autotune (`--kernels tune`): every call site whose shape more than one variant can
 * run is timed in each of them, on this adapter, and the fastest (the family's preferred unless
 * another is clearly faster) is pinned in the policy, as a checkpoint's stored choices are
 * (src/ops/policy.ts); the choices then go into the checkpoints, so `--resume` computes with them
 * without tuning again.
 *
 * How: the network's calls are built once with a policy that records every call site's request
 * (its key, its runnable variants, and the op's `plan(variant)` that builds its calls). The
 * requests of one key are one measurement: a conv layer's forward and backward, and every layer of
 * that shape, ask under the same key, so a variant's time is the sum of all its passes, each as
 * often as the network runs it. Each variant's calls run over scratch tensors of their own
 * (deterministic values, never the model's), after a warm-up, timed with GPU timestamps where the
 * device has `timestamp-query`, else by the wall clock over several repetitions with one wait.
 *
 * The choices are cached per adapter in `$XDG_CACHE_HOME/webgpu-resnet/kernels.json` (or
 * `~/.cache/...`), keyed by the adapter's name, its backend and, for a software adapter, the CPU
 * (the same lavapipe is 8x slower without AVX-512), and invalidated by any change to the kernels'
 * sources. A later tune takes what the cache holds and measures only the keys it lacks.
 */
import { mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { z } from "zod";
import type { Gpu } from "../gpu/device.ts";
import { type Command, encodeCommands, repeatCommands } from "../gpu/dispatch.ts";
import { type Call, isKernelCall, rebound } from "../gpu/kernel_call.ts";
import { kernelId } from "../gpu/pipeline.ts";
import { type Tensor, type TensorDesc, tensorDesc, tensorFromData } from "../gpu/tensor.ts";
import { FileWriteError, fileWriteError, writeFileAtomic } from "../io/atomic.ts";
import type { ModelConfig } from "../model/config.ts";
import { ModelWeights, type WeightTensors } from "../model/weights.ts";
import { type KernelFamily, KernelPolicy, type VariantRequest } from "../ops/policy.ts";
import type { ActivationDType } from "../ops/shape.ts";
import { METRICS_SHAPE } from "../ops/softmax_cross_entropy.ts";
import { kernels } from "../shaders.ts";
import { type ProgressOutput, StatusLine } from "../train/progress.ts";
import { elementCount } from "../util/shape.ts";
import { materialize } from "./materialize.ts";
import { buildNetworkProgram, type Mode } from "./network.ts";

/** One call key to tune: its op, the variants that can run it, and the passes that ask for it. */
export interface TunableSite {
  op: string;
  key: string;
  /** The variants that can run the shape, the family's preferred first (it wins a tie). */
  variants: readonly string[];
  /** The distinct passes under this key, each with how many times the network runs it. */
  passes: readonly TunablePass[];
}

export interface TunablePass {
  count: number;
  plan(variant: string): readonly Call[];
}

/**
 * Milliseconds the site's passes take in `variant`, each pass run `count` times. `toBeat` is the
 * fastest time so far: a variant clearly slower may be measured more roughly (a tune on lavapipe
 * would otherwise spend most of its time repeating kernels that cannot win).
 */
export type Measure = (site: TunableSite, variant: string, toBeat?: number) => Promise<number>;

/** Builds the calls of a network (or of anything) with the policy given; the calls are not used. */
export type BuildCalls = (policy: KernelPolicy) => void;

/** A request as the recording policy keeps it: the runnable variants, the plan over strings. */
interface RecordedRequest {
  op: string;
  key: string;
  variants: string[];
  plan?: (variant: string) => readonly Call[];
}

/** Answers by the rules, and records every request. */
class RecordingPolicy extends KernelPolicy {
  readonly requests: RecordedRequest[] = [];

  override choose<V extends string>(request: VariantRequest<V>): V {
    const { op, key, plan } = request;
    this.requests.push({
      op,
      key,
      variants: this.runnable(request),
      plan: plan && ((variant) => plan(variant as V)),
    });
    return super.choose(request);
  }
}

/**
 * The call keys `build` asks for that more than one variant can run, in the order first asked.
 * A key any of whose passes the op cannot plan for another variant (no `plan`) is left to the
 * rules: it cannot be timed whole.
 */
export function tunableSites(
  family: KernelFamily,
  build: BuildCalls,
  subgroups = false,
): TunableSite[] {
  const recorder = new RecordingPolicy({ family, subgroups });
  build(recorder);
  const byKey = new Map<string, RecordedRequest[]>();
  for (const request of recorder.requests) {
    byKey.set(request.key, [...byKey.get(request.key) ?? [], request]);
  }
  const sites: TunableSite[] = [];
  for (const [key, requests] of byKey) {
    const variants = requests[0].variants.filter((variant) =>
      requests.every((request) => request.variants.includes(variant))
    );
    if (variants.length < 2 || requests.some((request) => !request.plan)) continue;
    // Passes that build the same calls in every variant (layers of one shape) are timed once.
    const passes = new Map<string, TunablePass>();
    for (const request of requests) {
      const plan = request.plan!;
      const signature = variants.map((variant) => callsSignature(plan(variant))).join("\n");
      const pass = passes.get(signature);
      passes.set(signature, { count: (pass?.count ?? 0) + 1, plan });
    }
    sites.push({ op: requests[0].op, key, variants, passes: [...passes.values()] });
  }
  return sites;
}

/** What makes two lists of calls take the same time: everything but the tensors' identities. */
function callsSignature(calls: readonly Call[]): string {
  return JSON.stringify(calls.map((call) => [
    ...(isKernelCall(call)
      ? [kernelId(call.kernel), call.entryPoint, Object.entries(call.constants).sort(), call.grid]
      : [call.copy]),
    call.bindings.map(({ tensor, access }) => [tensor.shape, tensor.dtype, access]),
  ]));
}

/** What the tune measured for one key. */
export interface SiteResult {
  op: string;
  key: string;
  variant: string;
  /** Milliseconds per variant measured. */
  ms: Record<string, number>;
}

/**
 * How much faster than the family's preferred variant another must be to be chosen: closer is
 * noise. Three tunes of ResNet-18 on lavapipe chose differently where the two batch-norm variants
 * came within 1% of each other idle, and 5% with other work on the machine.
 */
const NOISE = 0.1;

/**
 * Times every variant of every site and picks the fastest, or the family's preferred where none
 * is more than NOISE faster. `progress` is told after each site.
 */
export async function measureSites(
  sites: readonly TunableSite[],
  measure: Measure,
  progress: (done: number, total: number) => void = () => {},
): Promise<SiteResult[]> {
  const results: SiteResult[] = [];
  progress(0, sites.length);
  for (const site of sites) {
    const ms: Record<string, number> = {};
    let fastest = site.variants[0];
    for (const variant of site.variants) {
      ms[variant] = await measure(site, variant, ms[fastest]);
      if (ms[variant] < ms[fastest]) fastest = variant;
    }
    const preferred = site.variants[0];
    if (ms[fastest] > ms[preferred] * (1 - NOISE)) fastest = preferred;
    results.push({ op: site.op, key: site.key, variant: fastest, ms });
    progress(results.length, sites.length);
  }
  return results;
}

export interface GpuTimerOptions {
  /** Timed repetitions of each variant's passes, after one run to warm up. Default 3. */
  repetitions?: number;
}

/**
 * A variant whose warm-up run takes more than twice the time to beat and this much longer is not
 * repeated: its warm-up time stands (on lavapipe the GPU variants are 10-30x slower).
 */
const CLEARLY_SLOWER_MS = 20;

/**
 * A Measure on `gpu`. Every buffer tensor the calls bind gets a scratch buffer of its own (and
 * textures, filled by the site's own calls, are created by `materialize`), so that timing never
 * touches the model (a batch norm's training forward updates its running statistics).
 * With `timestamp-query`, each distinct pass runs once in a compute pass of its own timed by the
 * GPU, its time counted as often as the network runs it, and the fastest repetition counts
 * (least disturbed by other work). Without it, every pass runs as often as the network runs it,
 * timed by the wall clock over all the repetitions submitted together with one wait (a wait
 * costs about 10 ms in Deno on lavapipe, the same for every variant, so it cannot change which is
 * fastest).
 */
export function gpuTimer(gpu: Gpu, options: GpuTimerOptions = {}): Measure {
  const repetitions = options.repetitions ?? 3;
  const timestamps = gpu.device.features.has("timestamp-query");
  return async (site, variant, toBeat) => {
    const scratch = new Map<TensorDesc, Tensor>();
    const onScratch = (tensor: TensorDesc): TensorDesc => {
      // A texture is filled by a call of the same site (blocked_texture's to_texture), so it
      // stays transient: materialize creates it.
      if (tensor.texture) return tensor;
      let copy = scratch.get(tensor);
      if (!copy) {
        copy = scratchTensor(gpu, tensor);
        scratch.set(tensor, copy);
      }
      return copy;
    };
    const calls = site.passes.map((pass) =>
      pass.plan(variant).map((call) => rebound(call, onScratch))
    );
    const materialized = await materialize(gpu, calls.flat(), {
      label: `tuning ${site.key} ${variant}`,
    });
    let at = 0;
    const passes = site.passes.map(({ count }, i) => ({
      count,
      commands: materialized.commands.slice(at, at += calls[i].length),
    }));
    try {
      const timed = () =>
        timestamps ? timedByTimestamps(gpu, passes) : timedByWallClock(gpu, passes, 1);
      const warmup = await timed();
      if (toBeat !== undefined && warmup > 2 * toBeat + CLEARLY_SLOWER_MS) return warmup;
      if (!timestamps) return await timedByWallClock(gpu, passes, repetitions);
      let fastest = Infinity;
      for (let i = 0; i < repetitions; i++) fastest = Math.min(fastest, await timed());
      return fastest;
    } finally {
      materialized.destroy();
      for (const tensor of scratch.values()) tensor.buffer.destroy();
    }
  };
}

/** A site's passes on the GPU: each pass's commands, and how often the network runs them. */
type MaterializedPasses = readonly { count: number; commands: readonly Command[] }[];

/** Milliseconds: each pass once between timestamps (src/gpu/dispatch.ts), times its count. */
async function timedByTimestamps(gpu: Gpu, passes: MaterializedPasses): Promise<number> {
  const { device } = gpu;
  const count = 2 * passes.length;
  const querySet = device.createQuerySet({ type: "timestamp", count });
  const resolved = device.createBuffer({
    size: count * 8,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const readback = device.createBuffer({
    size: count * 8,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  try {
    const encoder = device.createCommandEncoder();
    passes.forEach(({ commands }, i) => {
      encodeCommands(encoder, commands, { querySet, begin: 2 * i, end: 2 * i + 1 });
    });
    encoder.resolveQuerySet(querySet, 0, count, resolved, 0);
    encoder.copyBufferToBuffer(resolved, 0, readback, 0, count * 8);
    device.queue.submit([encoder.finish()]);
    await readback.mapAsync(GPUMapMode.READ);
    const ticks = new BigInt64Array(readback.getMappedRange().slice(0));
    readback.unmap();
    const nanoseconds = passes.reduce(
      (sum, pass, i) => sum + pass.count * Number(ticks[2 * i + 1] - ticks[2 * i]),
      0,
    );
    return nanoseconds / 1e6;
  } finally {
    querySet.destroy();
    resolved.destroy();
    readback.destroy();
  }
}

/** Milliseconds per repetition of every pass, each `count` times, over `times` repetitions. */
async function timedByWallClock(
  gpu: Gpu,
  passes: MaterializedPasses,
  times: number,
): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < times; i++) {
    const encoder = gpu.device.createCommandEncoder();
    encodeCommands(
      encoder,
      passes.flatMap(({ count, commands }) => repeatCommands(commands, count)),
    );
    gpu.device.queue.submit([encoder.finish()]);
  }
  await gpu.device.queue.onSubmittedWorkDone();
  return (performance.now() - start) / times;
}

/**
 * A buffer for `tensor` holding values in [0.5, 1.5): finite, positive (a variance stays a
 * variance), no denormals, and the same on every run; integer tensors (counters) hold zeros.
 */
function scratchTensor(gpu: Gpu, tensor: TensorDesc): Tensor {
  const length = elementCount(tensor.shape);
  const value = (i: number) => 0.5 + (i % 251) / 251;
  const data = tensor.dtype === "f32"
    ? Float32Array.from({ length }, (_, i) => value(i))
    : tensor.dtype === "f16"
    ? Float16Array.from({ length }, (_, i) => value(i))
    : tensor.dtype === "u32"
    ? new Uint32Array(length)
    : new Int32Array(length);
  return tensorFromData(gpu, `scratch ${tensor.label}`, tensor.shape, data);
}

/** What identifies an adapter to the cache. */
export type TuneAdapter = Pick<
  Gpu,
  "adapterName" | "backend" | "isFallbackAdapter" | "subgroups" | "cpuThreads"
>;

export interface TuneOptions {
  /** Times a site's variant; the CLI's is `gpuTimer(gpu)`, tests inject their own. */
  measure: Measure;
  /** The cache file; default `kernelCachePath()`. Null: no cache. */
  cachePath?: string | null;
  /** Where the header line and a corrupt cache's line go. */
  log?: (line: string) => void;
  /** Told after each site measured, e.g. to redraw "tuning kernels: 7/23 call sites". */
  progress?: (done: number, total: number) => void;
}

export interface TuneResult {
  /** Pins every tuned key; the rules of the adapter's family answer the rest. */
  policy: KernelPolicy;
  /** The tuned keys' variants, measured now or taken from the cache. */
  choices: Record<string, string>;
  /** How many keys were measured now, and how many came from the cache. */
  measured: number;
  cached: number;
  seconds: number;
  /** The header line, also logged. */
  summary: string;
}

/**
 * Tunes the call sites `build` asks for: the cached choices for this adapter where the cache has
 * them, measured (and added to the cache) where not.
 */
export async function tuneKernels(
  adapter: TuneAdapter,
  build: BuildCalls,
  options: TuneOptions,
): Promise<TuneResult> {
  const start = performance.now();
  const log = options.log ?? (() => {});
  const family: KernelFamily = adapter.isFallbackAdapter ? "cpu" : "gpu";
  const sites = tunableSites(family, build, adapter.subgroups);
  const cachePath = options.cachePath === undefined ? kernelCachePath() : options.cachePath;
  const cache = cachePath === null ? undefined : await KernelCache.open(cachePath, adapter, log);
  const known = cache?.choices() ?? {};
  const toMeasure = sites.filter((site) => !site.variants.includes(known[site.key]));
  const choices: Record<string, string> = {};
  for (const site of sites) {
    if (!toMeasure.includes(site)) choices[site.key] = known[site.key];
  }
  if (toMeasure.length > 0) {
    log(`tuning kernels: ${toMeasure.length} call sites with more than one variant to time`);
    for (const result of await measureSites(toMeasure, options.measure, options.progress)) {
      choices[result.key] = result.variant;
    }
    await cache?.save(choices, log);
  }
  const seconds = (performance.now() - start) / 1000;
  const measured = toMeasure.length;
  const cached = sites.length - measured;
  const ops = new Map(sites.map((site) => [site.key, site.op]));
  const where = cachePath === null
    ? "no cache"
    : measured === 0
    ? `from the cache ${cachePath}`
    : cached === 0
    ? `saved to ${cachePath}`
    : `${cached} from the cache, saved to ${cachePath}`;
  const summary = sites.length === 0
    ? "kernel autotune: no call site has more than one variant that can run it"
    : `kernel autotune: ${sites.length} call sites, ${measured} timed in ${seconds.toFixed(1)} s ` +
      `(${where}): ${countChoices(choices, ops)}`;
  log(summary);
  return {
    policy: new KernelPolicy({
      family,
      source: measured === 0 && sites.length > 0 ? "tune cache" : "tuned",
      pinned: choices,
      subgroups: adapter.subgroups,
    }),
    choices,
    measured,
    cached,
    seconds,
    summary,
  };
}

/** "conv2d blocked x9 / tiled x2, batchnorm serial x8". */
function countChoices(choices: Record<string, string>, ops: Map<string, string>): string {
  const counts = new Map<string, Map<string, number>>();
  for (const [key, variant] of Object.entries(choices)) {
    const op = ops.get(key)!;
    const byVariant = counts.get(op) ?? new Map<string, number>();
    byVariant.set(variant, (byVariant.get(variant) ?? 0) + 1);
    counts.set(op, byVariant);
  }
  return [...counts].map(([op, byVariant]) =>
    `${op} ${[...byVariant].map(([variant, count]) => `${variant} x${count}`).join(" / ")}`
  ).join(", ");
}

/** `$XDG_CACHE_HOME/webgpu-resnet/kernels.json`, else under `~/.cache`; null without either. */
export function kernelCachePath(): string | null {
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  if (xdg) return join(xdg, "webgpu-resnet", "kernels.json");
  const home = Deno.env.get("HOME");
  return home ? join(home, ".cache", "webgpu-resnet", "kernels.json") : null;
}

const CACHE_FORMAT = "webgpu-resnet-kernel-cache/1";

const cacheSchema = z.object({
  format: z.literal(CACHE_FORMAT),
  adapters: z.record(
    z.string(),
    z.object({
      /** kernelSourcesHash() when the choices were measured. */
      kernels: z.string(),
      choices: z.record(z.string(), z.string()),
    }),
  ),
});
type CacheFile = z.infer<typeof cacheSchema>;

/** The cache file, and this adapter's entry in it (if its kernels are today's). */
class KernelCache {
  readonly #path: string;
  readonly #adapter: string;
  readonly #kernels: string;
  readonly #file: CacheFile;

  private constructor(path: string, adapter: string, kernels: string, file: CacheFile) {
    this.#path = path;
    this.#adapter = adapter;
    this.#kernels = kernels;
    this.#file = file;
  }

  static async open(
    path: string,
    adapter: TuneAdapter,
    log: (line: string) => void,
  ): Promise<KernelCache> {
    return new KernelCache(
      path,
      await adapterCacheKey(adapter),
      await kernelSourcesHash(),
      await readCacheFile(path, log),
    );
  }

  /** This adapter's choices, none if the kernels changed since they were measured. */
  choices(): Record<string, string> {
    const entry = this.#file.adapters[this.#adapter];
    return entry?.kernels === this.#kernels ? entry.choices : {};
  }

  /**
   * Adds `choices` to this adapter's entry and writes the file whole. A write that fails is said
   * in one line and is not fatal: the tune's choices stand, only the next run tunes again.
   */
  async save(choices: Record<string, string>, log: (line: string) => void): Promise<void> {
    // Entries another process wrote meanwhile (another adapter's) are kept.
    const file = await readCacheFile(this.#path, () => {});
    file.adapters[this.#adapter] = {
      kernels: this.#kernels,
      choices: { ...this.choices(), ...choices },
    };
    try {
      await mkdir(dirname(this.#path), { recursive: true }).catch((error) => {
        throw fileWriteError(this.#path, error, "create the folder");
      });
      await writeFileAtomic(this.#path, JSON.stringify(file, null, 2) + "\n");
    } catch (error) {
      if (!(error instanceof FileWriteError)) throw error;
      log(`kernel autotune: not cached (${error.message})`);
    }
  }
}

/** The cache file's contents; an empty cache if there is none, or (said in one line) if corrupt. */
async function readCacheFile(path: string, log: (line: string) => void): Promise<CacheFile> {
  const empty: CacheFile = { format: CACHE_FORMAT, adapters: {} };
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return empty;
    log(`kernel cache ${path} cannot be read (${String(error)}): ignoring it`);
    return empty;
  }
  let parsed: ReturnType<typeof cacheSchema.safeParse>;
  try {
    parsed = cacheSchema.safeParse(JSON.parse(text));
  } catch {
    parsed = { success: false } as typeof parsed;
  }
  if (!parsed.success) {
    log(
      `kernel cache ${path} is corrupt (not a ${CACHE_FORMAT} file): ignoring it, it is rewritten`,
    );
    return empty;
  }
  return parsed.data;
}

/**
 * The adapter as the cache knows it: its name (a software adapter's includes its LLVM version)
 * and backend, and for a software adapter the CPU it runs on and its worker threads where known,
 * on which the kernels' speed depends.
 */
export async function adapterCacheKey(adapter: TuneAdapter): Promise<string> {
  const parts = [adapter.adapterName, adapter.backend ?? "browser"];
  if (adapter.isFallbackAdapter) parts.push(await cpuName());
  if (adapter.isFallbackAdapter && adapter.cpuThreads !== undefined) {
    parts.push(`${adapter.cpuThreads} worker threads`);
  }
  return parts.join(" | ");
}

/**
 * "AMD EPYC, avx512": /proc/cpuinfo's model name and whether it has AVX-512, read by grep because
 * Deno reads /proc only with --allow-all. Without --allow-run (or grep) the CPU is only named by
 * its architecture and thread count.
 */
async function cpuName(): Promise<string> {
  const coarse = `${Deno.build.arch} CPU, ${navigator.hardwareConcurrency} threads`;
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("grep", {
      args: ["-m2", "-o", "-E", "^model name.*|avx512[a-z]*", "/proc/cpuinfo"],
      stdout: "piped",
      stderr: "null",
    }).output();
  } catch {
    return coarse;
  }
  const matches = new TextDecoder().decode(output.stdout).split("\n");
  const model = matches.find((match) => match.startsWith("model name"))?.replace(/^[^:]*:\s*/, "");
  if (!model) return coarse;
  return `${model.trim()}, ${matches.some((m) => m.startsWith("avx512")) ? "avx512" : "no avx512"}`;
}

/** SHA-256 of every kernel's source: any change to a kernel makes its cached timings stale. */
export async function kernelSourcesHash(): Promise<string> {
  const sources = Object.values(kernels)
    .map((kernel) => `${kernel.name}\n${kernel.code}`)
    .sort()
    .join("\n");
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(sources));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** One network program to tune for: a mode at a batch size, with activations of `precision`. */
export interface NetworkPass {
  mode: Mode;
  batchSize: number;
  /** Default f32. */
  precision?: ActivationDType;
  /** Evaluation: views of each image (2 for test-time augmentation with flips); default 1. */
  views?: number;
}

/**
 * Tunes the call sites of `model`'s programs for `passes` (a training run: the training step at
 * its batch size and the evaluation at its own). The tune's scratch tensors stand in for the
 * model's, so the weights made here to build the programs over are never bound.
 */
export async function tuneNetwork(
  gpu: Gpu,
  model: ModelConfig,
  passes: readonly NetworkPass[],
  options: Omit<TuneOptions, "measure"> & { measure?: Measure },
): Promise<TuneResult> {
  const weights = new ModelWeights(gpu, model);
  try {
    return await tuneKernels(gpu, networkCalls(weights, passes), {
      measure: gpuTimer(gpu),
      ...options,
    });
  } finally {
    weights.destroy();
  }
}

/** Builds the programs of `passes` over `weights`, with stand-in inputs and outputs. */
export function networkCalls(weights: WeightTensors, passes: readonly NetworkPass[]): BuildCalls {
  const classes = weights.architecture.config.classes;
  return (policy) => {
    for (const { mode, batchSize, precision = "f32", views = 1 } of passes) {
      buildNetworkProgram(
        weights,
        mode,
        {
          input: tensorDesc("input", [views * batchSize, 32, 32, 3], precision),
          labels: tensorDesc("labels", [batchSize], "u32"),
          metrics: tensorDesc("metrics", METRICS_SHAPE, "u32"),
          confusion: tensorDesc("confusion", [classes, classes], "u32"),
        },
        policy,
        { views },
      );
    }
  };
}

/** What `--kernels` accepts. */
export type KernelsFlag = KernelFamily | "auto" | "tune";

/**
 * The policy `--kernels` asks for: the adapter's family, a forced one, or ("tune") the network's
 * call sites tuned, with "tuning kernels: 7/23 call sites" redrawn on `output` (a terminal)
 * meanwhile.
 */
export async function kernelPolicyFor(
  gpu: Gpu,
  kernels: KernelsFlag,
  network: { model: ModelConfig; passes: readonly NetworkPass[] },
  log: (line: string) => void,
  output?: ProgressOutput,
): Promise<KernelPolicy> {
  if (kernels !== "tune") return KernelPolicy.forAdapter(gpu, kernels);
  const line = new StatusLine(output);
  try {
    const tuned = await tuneNetwork(gpu, network.model, network.passes, {
      log: (text) => {
        line.clear();
        log(text);
      },
      progress: (done, total) => line.show(`tuning kernels: ${done}/${total} call sites`),
    });
    return tuned.policy;
  } finally {
    line.clear();
  }
}
