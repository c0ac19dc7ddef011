import assert from "node:assert/strict";
import { readFloat32, uploadBuffer, writeBuffer } from "../../src/gpu/buffer.ts";
import type { Gpu } from "../../src/gpu/device.ts";
import { submitCommands } from "../../src/gpu/dispatch.ts";
import {
  Optimizer,
  type OptimizerConfig,
  OptimizerConfigError,
  type OptimizerOptions,
  resolveOptimizerConfig,
} from "../../src/train/optimizer.ts";
import type { OptimizerState } from "../../src/model/checkpoint.ts";
import { gpuTest } from "../support/gpu.ts";
import { ELEMENTWISE, OPTIMIZER_STEPS } from "../support/tolerances.ts";
import { assertAllClose } from "../support/reference/compare.ts";
import { referenceOptimizer } from "../support/reference/optimizer.ts";
import { f32Array, Random } from "../support/reference/random.ts";

const STEPS = 5;
/** Tensor sizes in elements, none a multiple of 4 or of the 64-float alignment but one. */
const TENSOR_SIZES = [3, 17, 65, 1000, 64, 33];
/** Gradient scale per tensor: the last has gradients near eps, where eps changes Adam's step. */
const GRADIENT_SCALES = [1, 1, 1, 1, 1, 1e-8];
/** Floats per 256 bytes: arena tensors start at multiples of this. */
const ALIGN = 64;

interface ArenaLayout {
  offsets: number[];
  /** Elements of the whole arena, padding included (a multiple of 64). */
  length: number;
}

function arenaLayout(sizes: readonly number[]): ArenaLayout {
  const offsets: number[] = [];
  let length = 0;
  for (const size of sizes) {
    offsets.push(length);
    length += Math.ceil(size / ALIGN) * ALIGN;
  }
  return { offsets, length };
}

const LAYOUT = arenaLayout(TENSOR_SIZES);

/** Whether arena element `index` is padding between tensors. */
function isPadding(index: number): boolean {
  return !LAYOUT.offsets.some((offset, tensor) =>
    index >= offset && index < offset + TENSOR_SIZES[tensor]
  );
}

/** An arena of f32-representable values, uniform in ±scale per tensor, padding 0. */
function randomArena(random: Random, scales: readonly number[]): Float64Array {
  const arena = new Float64Array(LAYOUT.length);
  LAYOUT.offsets.forEach((offset, tensor) => {
    const scale = scales[tensor];
    arena.set(f32Array(TENSOR_SIZES[tensor], () => random.uniform(-scale, scale)), offset);
  });
  return arena;
}

interface Problem {
  params: Float64Array;
  /** One gradient arena per step. */
  grads: Float64Array[];
  /** One learning rate per step: a falling schedule, so a stale lr uniform shows. */
  lrs: number[];
}

function problem(seed: number, lr: number): Problem {
  const random = new Random(seed);
  return {
    params: randomArena(random, TENSOR_SIZES.map(() => 1)),
    grads: Array.from({ length: STEPS }, () => randomArena(random, GRADIENT_SCALES)),
    lrs: Array.from({ length: STEPS }, (_, step) => lr * (1 - step / STEPS)),
  };
}

interface Result {
  params: ArrayLike<number>;
  state: OptimizerState | { step: number; buffers: Record<string, Float64Array> };
}

function runReference(config: OptimizerConfig, { params, grads, lrs }: Problem): Result {
  const optimizer = referenceOptimizer(config, params.length);
  const updated = params.slice();
  grads.forEach((grad, step) => optimizer.step(updated, grad, lrs[step]));
  return { params: updated, state: { step: optimizer.steps, buffers: optimizer.state } };
}

/** Floats past the arena's end in the buffers: the optimizer must leave them alone. */
const GUARD = ALIGN;
const GUARD_VALUE = 7;

async function runGpu(
  gpu: Gpu,
  config: OptimizerConfig,
  { params, grads, lrs }: Problem,
  options?: OptimizerOptions,
): Promise<Result> {
  const withGuard = (values: Float64Array) => {
    const data = new Float32Array(values.length + GUARD).fill(GUARD_VALUE);
    data.set(values);
    return data;
  };
  const paramBuffer = uploadBuffer(gpu, "params", withGuard(params));
  const gradBuffer = uploadBuffer(gpu, "grads", withGuard(grads[0]));
  const arena = { params: paramBuffer, grads: gradBuffer, size: params.length * 4 };
  const optimizer = await Optimizer.create(gpu, arena, config, options);
  for (let step = 0; step < grads.length; step++) {
    writeBuffer(gpu, gradBuffer, Float32Array.from(grads[step]));
    optimizer.prepareStep(lrs[step]);
    submitCommands(gpu, optimizer.commands);
  }
  const updated = await readFloat32(gpu, paramBuffer);
  const state = await optimizer.exportState();
  const error = gpu.takeUncapturedError();
  if (error) throw new Error(`GPU error: ${error.message}`);
  optimizer.destroy();
  paramBuffer.destroy();
  gradBuffer.destroy();
  assert.deepEqual(
    [...updated.subarray(params.length)],
    new Array(GUARD).fill(GUARD_VALUE),
    "the optimizer wrote past the arena",
  );
  return { params: updated.subarray(0, params.length), state };
}

function displacement(params: ArrayLike<number>, initial: Float64Array): Float64Array {
  return initial.map((value, index) => params[index] - value);
}

const CASES: { name: string; config: OptimizerConfig }[] = [
  { name: "adam", config: { kind: "adam", lr: 0.05 } },
  { name: "adam with weight decay", config: { kind: "adam", lr: 0.05, weightDecay: 0.1 } },
  { name: "adamw with defaults", config: { kind: "adamw", lr: 0.05 } },
  {
    name: "adamw with betas, eps and weight decay",
    config: { kind: "adamw", lr: 0.05, betas: [0.8, 0.99], eps: 1e-6, weightDecay: 0.1 },
  },
  { name: "sgd", config: { kind: "sgd", lr: 0.1 } },
  { name: "sgd with weight decay", config: { kind: "sgd", lr: 0.1, weightDecay: 0.1 } },
  { name: "sgd with momentum", config: { kind: "sgd", lr: 0.1, momentum: 0.9 } },
  {
    name: "sgd with nesterov momentum and weight decay",
    config: { kind: "sgd", lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.1 },
  },
  {
    name: "sgd with decoupled weight decay",
    config: { kind: "sgd", lr: 0.1, weightDecay: 0.1, weightDecayMode: "decoupled" },
  },
  {
    name: "sgd with momentum and decoupled weight decay",
    config: { kind: "sgd", lr: 0.1, momentum: 0.9, weightDecay: 0.1, weightDecayMode: "decoupled" },
  },
  {
    name: "sgd with nesterov momentum and decoupled weight decay",
    config: {
      kind: "sgd",
      lr: 0.1,
      momentum: 0.9,
      nesterov: true,
      weightDecay: 0.1,
      weightDecayMode: "decoupled",
    },
  },
];

CASES.forEach(({ name, config }, index) => {
  gpuTest(`optimizer: ${name}, ${STEPS} steps against the f64 reference`, async (gpu) => {
    const data = problem(100 + index, config.lr);
    const expected = runReference(config, data);
    const actual = await runGpu(gpu, config, data);

    assertAllClose(
      displacement(actual.params, data.params),
      displacement(expected.params, data.params),
      OPTIMIZER_STEPS,
      `${name}: p_${STEPS} − p_0`,
    );
    assertAllClose(actual.params, expected.params, ELEMENTWISE, `${name}: p_${STEPS}`);
    assert.equal(actual.state.step, STEPS);
    assert.deepEqual(
      Object.keys(actual.state.buffers),
      Object.keys(expected.state.buffers),
      `${name}: state buffers`,
    );
    for (const [key, values] of Object.entries(expected.state.buffers)) {
      assertAllClose(actual.state.buffers[key], values, OPTIMIZER_STEPS, `${name}: ${key}`);
    }
    for (let i = 0; i < LAYOUT.length; i++) {
      if (!isPadding(i)) continue;
      assert.equal(actual.params[i], 0, `${name}: padding param ${i}`);
      for (const [key, values] of Object.entries(actual.state.buffers)) {
        assert.equal(values[i], 0, `${name}: padding ${key} ${i}`);
      }
    }
  });

  gpuTest(`optimizer: ${name}, small chunks give the same bits`, async (gpu) => {
    const data = problem(200 + index, config.lr);
    const whole = await runGpu(gpu, config, data);
    // 256 bytes: one dispatch per 64 floats; 768: the last chunk is shorter than the others.
    for (const chunkBytes of [256, 768]) {
      const chunked = await runGpu(gpu, config, data, { chunkBytes });
      assert.deepEqual(chunked.params, whole.params, `${name}: params, ${chunkBytes}-byte chunks`);
      assert.deepEqual(chunked.state, whole.state, `${name}: state, ${chunkBytes}-byte chunks`);
    }
  });
});

gpuTest("optimizer: chunking gives one dispatch per chunk", async (gpu) => {
  const buffer = () => uploadBuffer(gpu, "arena", new Float32Array(LAYOUT.length));
  const arena = { params: buffer(), grads: buffer(), size: LAYOUT.length * 4 };
  const config: OptimizerConfig = { kind: "adam", lr: 1e-3 };
  assert.equal((await Optimizer.create(gpu, arena, config)).commands.length, 1);
  const chunked = await Optimizer.create(gpu, arena, config, { chunkBytes: 768 });
  assert.equal(chunked.commands.length, Math.ceil(arena.size / 768));
});

for (
  const config of [
    { kind: "adam", lr: 0.05 },
    { kind: "sgd", lr: 0.1, momentum: 0.9 },
    {
      kind: "sgd",
      lr: 0.1,
      momentum: 0.9,
      nesterov: true,
      weightDecay: 0.1,
      weightDecayMode: "decoupled",
    },
  ] satisfies OptimizerConfig[]
) {
  gpuTest(
    `optimizer: ${JSON.stringify(config)} state exported and imported continues the run`,
    async (gpu) => {
      const data = problem(300, config.lr);
      const uninterrupted = await runGpu(gpu, config, data);
      const split = STEPS - 2;
      const first = await runGpu(gpu, config, { ...data, grads: data.grads.slice(0, split) });
      assert.equal(first.state.step, split);

      const params = uploadBuffer(gpu, "params", Float32Array.from(first.params));
      const grads = uploadBuffer(gpu, "grads", new Float32Array(LAYOUT.length));
      const resumed = await Optimizer.create(gpu, { params, grads, size: params.size }, config);
      resumed.importState(first.state as OptimizerState);
      assert.equal(resumed.step, split);
      for (let step = split; step < STEPS; step++) {
        writeBuffer(gpu, grads, Float32Array.from(data.grads[step]));
        resumed.prepareStep(data.lrs[step]);
        submitCommands(gpu, resumed.commands);
      }
      assert.deepEqual(await readFloat32(gpu, params), uninterrupted.params);
      assert.deepEqual(await resumed.exportState(), uninterrupted.state);
      assert.throws(
        () => resumed.importState({ step: 1, buffers: {} }),
        /state needs buffers/,
      );
      resumed.destroy();
    },
  );
}

gpuTest("optimizer: state bytes per kind", async (gpu) => {
  const buffer = () => uploadBuffer(gpu, "arena", new Float32Array(LAYOUT.length));
  const arena = { params: buffer(), grads: buffer(), size: LAYOUT.length * 4 };
  const cases: [OptimizerConfig, number][] = [
    [{ kind: "adam", lr: 1 }, 2],
    [{ kind: "adamw", lr: 1 }, 2],
    [{ kind: "sgd", lr: 1, momentum: 0.9 }, 1],
    [{ kind: "sgd", lr: 1 }, 0],
  ];
  for (const [config, buffers] of cases) {
    const optimizer = await Optimizer.create(gpu, arena, config);
    assert.equal(optimizer.stateBytes(), buffers * arena.size, config.kind);
    optimizer.destroy();
  }
});

gpuTest("optimizer: rejects arenas, chunks and learning rates it cannot use", async (gpu) => {
  const buffer = () => uploadBuffer(gpu, "arena", new Float32Array(LAYOUT.length));
  const params = buffer();
  const grads = buffer();
  const config: OptimizerConfig = { kind: "sgd", lr: 0.1 };
  await assert.rejects(
    Optimizer.create(gpu, { params, grads, size: 100 }, config),
    /multiple of 256/,
  );
  await assert.rejects(
    Optimizer.create(gpu, { params, grads, size: params.size + 256 }, config),
    /arena params has/,
  );
  await assert.rejects(
    Optimizer.create(gpu, { params, grads: params, size: 256 }, config),
    /separate buffers/,
  );
  await assert.rejects(
    Optimizer.create(gpu, { params, grads, size: 256 }, config, { chunkBytes: 100 }),
    /chunkBytes 100/,
  );
  const optimizer = await Optimizer.create(gpu, { params, grads, size: 256 }, config);
  assert.throws(() => optimizer.prepareStep(Number.NaN), /learning rate/);
  assert.equal(optimizer.step, 0);
});

Deno.test("optimizer config: torch.optim's defaults", () => {
  assert.deepEqual(resolveOptimizerConfig({ kind: "adam", lr: 1e-3 }), {
    kind: "adam",
    lr: 1e-3,
    betas: [0.9, 0.999],
    eps: 1e-8,
    weightDecay: 0,
  });
  assert.equal(resolveOptimizerConfig({ kind: "adamw", lr: 1e-3 }).weightDecay, 0.01);
  assert.deepEqual(resolveOptimizerConfig({ kind: "sgd", lr: 0.1 }), {
    kind: "sgd",
    lr: 0.1,
    momentum: 0,
    nesterov: false,
    weightDecay: 0,
    weightDecayMode: "coupled",
  });
});

gpuTest("optimizer: sgd's explicit coupled mode is the default, bit for bit", async (gpu) => {
  const base = { kind: "sgd", lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.1 } as const;
  const data = problem(400, base.lr);
  const implicit = await runGpu(gpu, base, data);
  const explicit = await runGpu(gpu, { ...base, weightDecayMode: "coupled" }, data);
  assert.deepEqual(explicit, implicit);
  // And the decoupled mode is a different update (the override reaches the kernel).
  const decoupled = await runGpu(gpu, { ...base, weightDecayMode: "decoupled" }, data);
  assert.notDeepEqual(decoupled.params, implicit.params);
});

Deno.test("optimizer config: rejects what torch.optim rejects", () => {
  const invalid: [OptimizerConfig, RegExp][] = [
    [{ kind: "adam", lr: -1 }, /lr must be/],
    [{ kind: "adam", lr: Number.NaN }, /lr must be/],
    [{ kind: "adam", lr: 1, betas: [1, 0.999] }, /betas\[0\]/],
    [{ kind: "adamw", lr: 1, betas: [0.9, -0.1] }, /betas\[1\]/],
    [{ kind: "adam", lr: 1, eps: -1 }, /eps/],
    [{ kind: "adamw", lr: 1, weightDecay: -0.1 }, /weightDecay/],
    [{ kind: "sgd", lr: 1, momentum: -0.5 }, /momentum/],
    [{ kind: "sgd", lr: 1, nesterov: true }, /nesterov needs a momentum/],
    [
      { kind: "sgd", lr: 1, weightDecayMode: "l2" } as unknown as OptimizerConfig,
      /weightDecayMode must be coupled or decoupled, got l2/,
    ],
    [{ kind: "rmsprop", lr: 1 } as unknown as OptimizerConfig, /unknown optimizer kind/],
  ];
  for (const [config, message] of invalid) {
    assert.throws(() => resolveOptimizerConfig(config), OptimizerConfigError);
    assert.throws(() => resolveOptimizerConfig(config), message);
  }
});

// The reference, checked against properties and numbers worked out by hand, so that it is not
// merely trusted.

Deno.test("reference adam: the first step moves each parameter by lr·g/(|g| + eps)", () => {
  // Bias correction makes m̂ = g and v̂ = g² on step 1, so the step is lr·sign(g) up to eps.
  const random = new Random(1);
  const lr = 0.01;
  const params = f32Array(100, () => random.uniform(-1, 1));
  const grads = f32Array(100, () => random.uniform(-1, 1) * 10 ** random.uniform(-9, 1));
  const initial = params.slice();
  referenceOptimizer({ kind: "adam", lr }, params.length).step(params, grads, lr);
  const expected = grads.map((g) => -lr * g / (Math.abs(g) + 1e-8));
  assertAllClose(displacement(params, initial), expected, 1e-12, "adam step 1");
  const large = grads.map((g, i) => Math.abs(g) > 1e-4 ? i : -1).filter((i) => i >= 0);
  for (const i of large) {
    assert.ok(Math.abs(initial[i] - params[i] - lr * Math.sign(grads[i])) < 1e-6);
  }
});

Deno.test("reference adam: a constant gradient moves by lr·g/(|g| + eps) every step", () => {
  // With g constant, m_t = (1 − β1^t)·g and v_t = (1 − β2^t)·g²: bias correction is exact.
  const lr = 0.1;
  const g = [0.5, -2, 1e-8];
  const params = new Float64Array(3);
  const adam = referenceOptimizer({ kind: "adam", lr }, 3);
  for (let t = 1; t <= 5; t++) {
    adam.step(params, Float64Array.from(g), lr);
    const expected = g.map((value) => -t * lr * value / (Math.abs(value) + 1e-8));
    assertAllClose(params, expected, 1e-12, `adam step ${t}`);
  }
});

Deno.test("reference adam: two steps worked by hand", () => {
  // g1 = 1: m = 0.1, v = 0.001, m̂ = v̂ = 1, p1 = −0.1/(1 + 1e-8).
  // g2 = −1: m = 0.09 − 0.1 = −0.01, v = 0.000999 + 0.001 = 0.001999 = 1 − 0.999², so
  // m̂ = −0.01/0.19 = −1/19 and v̂ = 1: p2 = p1 + 0.1/19/(1 + 1e-8).
  const params = new Float64Array(1);
  const adam = referenceOptimizer({ kind: "adam", lr: 0.1 }, 1);
  adam.step(params, Float64Array.of(1), 0.1);
  const p1 = -0.1 / (1 + 1e-8);
  assert.ok(Math.abs(params[0] - p1) < 1e-15);
  adam.step(params, Float64Array.of(-1), 0.1);
  assert.ok(Math.abs(params[0] - (p1 + 0.1 / 19 / (1 + 1e-8))) < 1e-15);
  assert.ok(Math.abs(adam.state.exp_avg[0] - -0.01) < 1e-15);
  assert.ok(Math.abs(adam.state.exp_avg_sq[0] - 0.001999) < 1e-15);
});

Deno.test("reference adam and adamw: weight decay with zero gradients", () => {
  const lr = 0.1;
  const weightDecay = 0.5;
  // AdamW: the moments stay 0, so only the decoupled decay acts: p_t = p_0·(1 − lr·wd)^t.
  const decoupled = Float64Array.of(2, -3);
  const adamw = referenceOptimizer({ kind: "adamw", lr, weightDecay }, 2);
  for (let t = 0; t < 3; t++) adamw.step(decoupled, new Float64Array(2), lr);
  assertAllClose(decoupled, [2 * 0.95 ** 3, -3 * 0.95 ** 3], 1e-15, "adamw decay");
  // Adam: the decay is a gradient wd·p, so the first step moves by lr·sign(p) up to eps.
  const coupled = Float64Array.of(2, -3);
  referenceOptimizer({ kind: "adam", lr, weightDecay }, 2).step(coupled, new Float64Array(2), lr);
  assertAllClose(coupled, [2 - 0.1 / (1 + 1e-8), -3 + 0.1 / (1 + 1e-8 / 1.5)], 1e-12, "adam");
});

Deno.test("reference sgd: steps worked by hand", () => {
  const run = (config: OptimizerConfig, g: number, steps: number, p0 = 1) => {
    const params = Float64Array.of(p0);
    const sgd = referenceOptimizer(config, 1);
    return Array.from({ length: steps }, () => {
      sgd.step(params, Float64Array.of(g), config.lr);
      return params[0];
    });
  };
  const close = (actual: number[], expected: number[]) =>
    assertAllClose(actual, expected, 1e-15, `${actual} vs ${expected}`);
  // buf: 1, 1.9, 2.71; p: 1 − 0.1, − 0.19, − 0.271.
  close(run({ kind: "sgd", lr: 0.1, momentum: 0.9 }, 1, 3), [0.9, 0.71, 0.439]);
  // The step is g + 0.9·buf: 1.9, 2.71, 3.439.
  close(run({ kind: "sgd", lr: 0.1, momentum: 0.9, nesterov: true }, 1, 3), [0.81, 0.539, 0.1951]);
  // g + wd·p = 0.5 + 0.1·2 = 0.7.
  close(run({ kind: "sgd", lr: 0.1, weightDecay: 0.1 }, 0.5, 1, 2), [1.93]);
  close(run({ kind: "sgd", lr: 0.1 }, 0.5, 2), [0.95, 0.9]);
  // Decoupled, wd 0.5: p·0.95 first, then the momentum step on g alone (buf 1, 1.9):
  // 0.95 − 0.1 = 0.85; 0.85·0.95 − 0.19 = 0.6175.
  const decoupled = {
    kind: "sgd",
    lr: 0.1,
    weightDecay: 0.5,
    weightDecayMode: "decoupled",
  } as const;
  close(run({ ...decoupled, momentum: 0.9 }, 1, 2), [0.85, 0.6175]);
  // Nesterov steps by g + 0.9·buf: 1.9, then 2.71: 0.95 − 0.19 = 0.76; 0.76·0.95 − 0.271 = 0.451.
  close(run({ ...decoupled, momentum: 0.9, nesterov: true }, 1, 2), [0.76, 0.451]);
  // Without momentum: 2·0.95 − 0.05 = 1.85.
  close(run(decoupled, 0.5, 1, 2), [1.85]);
});

Deno.test("reference sgd: decoupled decay with zero gradients leaves the momentum at 0", () => {
  // p_t = p_0·(1 − lr·wd)^t, whatever the momentum; the coupled penalty would fill the buffer.
  const params = Float64Array.of(2, -3);
  const sgd = referenceOptimizer(
    { kind: "sgd", lr: 0.1, momentum: 0.9, weightDecay: 0.5, weightDecayMode: "decoupled" },
    2,
  );
  for (let t = 0; t < 3; t++) sgd.step(params, new Float64Array(2), 0.1);
  assertAllClose(params, [2 * 0.95 ** 3, -3 * 0.95 ** 3], 1e-15, "sgd decoupled decay");
  assert.deepEqual(sgd.state, { momentum_buffer: new Float64Array(2) });
});

Deno.test("reference: state starts at zero and lists torch.optim's keys", () => {
  assert.deepEqual(Object.keys(referenceOptimizer({ kind: "adam", lr: 1 }, 2).state), [
    "exp_avg",
    "exp_avg_sq",
  ]);
  const sgd = referenceOptimizer({ kind: "sgd", lr: 1, momentum: 0.5 }, 2);
  assert.deepEqual(sgd.state, { momentum_buffer: new Float64Array(2) });
});
