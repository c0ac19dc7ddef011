import assert from "node:assert/strict";
import { createSchedule, ScheduleError } from "../../src/train/schedule.ts";

/** The schedules compute in f64 from a handful of operations: a few ulps of 0.1. */
const CLOSE = 1e-15;

function assertValues(schedule: (step: number) => number, expected: Record<number, number>) {
  for (const [step, lr] of Object.entries(expected)) {
    const actual = schedule(Number(step));
    assert.ok(Math.abs(actual - lr) <= CLOSE, `step ${step}: ${actual}, expected ${lr}`);
  }
}

Deno.test("schedule: constant", () => {
  const schedule = createSchedule({ kind: "constant", lr: 0.01 });
  assertValues(schedule, { 0: 0.01, 1: 0.01, 1_000_000: 0.01 });
  assert.throws(() => schedule(-1), RangeError);
  assert.throws(() => schedule(1.5), RangeError);
});

Deno.test("schedule: cosine as PyTorch's CosineAnnealingLR with T_max = total steps", () => {
  // lr_t = minLr + (lr − minLr)·(1 + cos(π·t/T))/2: lr at 0, the mean at T/2, a quarter of
  // the way down at T/4 ((1 + cos(π/4))/2 = 0.853…).
  const schedule = createSchedule({ kind: "cosine", lr: 0.1, totalSteps: 100 });
  assertValues(schedule, {
    0: 0.1,
    25: 0.1 * (1 + Math.SQRT1_2) / 2,
    50: 0.05,
    75: 0.1 * (1 - Math.SQRT1_2) / 2,
    99: 0.1 * (1 + Math.cos(Math.PI * 0.99)) / 2,
  });
  assert.ok(schedule(99) > 0 && schedule(99) < 3e-5, "the last step is just above minLr");
  assert.throws(() => schedule(100), /not an integer in \[0, 100\)/);

  const floored = createSchedule({ kind: "cosine", lr: 0.1, totalSteps: 100, minLr: 0.02 });
  assertValues(floored, { 0: 0.1, 50: 0.06 });
});

Deno.test("schedule: cosine with a linear warm-up (LinearLR, then CosineAnnealingLR)", () => {
  const schedule = createSchedule({
    kind: "cosine",
    lr: 0.1,
    totalSteps: 110,
    warmupSteps: 10,
    startFactor: 0.1,
  });
  assertValues(schedule, {
    0: 0.01,
    5: 0.055,
    9: 0.091,
    10: 0.1,
    60: 0.05,
    109: 0.1 * (1 + Math.cos(Math.PI * 0.99)) / 2,
  });
  const fromZero = createSchedule({ kind: "cosine", lr: 0.2, totalSteps: 20, warmupSteps: 4 });
  assertValues(fromZero, { 0: 0, 1: 0.05, 4: 0.2 });
});

Deno.test("schedule: one-cycle rises linearly to the peak over 20% of steps, then to 0", () => {
  // The notes' recipe: up to 0.1 over the first 20% of steps, then linearly down to zero.
  const schedule = createSchedule({ kind: "one-cycle", lr: 0.1, totalSteps: 101 });
  // Peak at round(0.2·101) = 20; the decay spans steps 20..100.
  assertValues(schedule, { 0: 0, 10: 0.05, 19: 0.095, 20: 0.1, 60: 0.05, 80: 0.025, 100: 0 });
  const monotone = Array.from({ length: 101 }, (_, step) => schedule(step));
  for (let step = 1; step <= 20; step++) assert.ok(monotone[step] > monotone[step - 1]);
  for (let step = 21; step <= 100; step++) assert.ok(monotone[step] < monotone[step - 1]);

  const custom = createSchedule({
    kind: "one-cycle",
    lr: 1,
    totalSteps: 11,
    warmupFraction: 0.4,
    startFactor: 0.2,
  });
  // Peak at step 4; from 0.2 by 0.2 per step; then down by 1/6 per step to step 10.
  assertValues(custom, { 0: 0.2, 1: 0.4, 3: 0.8, 4: 1, 7: 0.5, 10: 0 });
  const noWarmup = createSchedule({ kind: "one-cycle", lr: 1, totalSteps: 5, warmupFraction: 0 });
  assertValues(noWarmup, { 0: 1, 2: 0.5, 4: 0 });
});

Deno.test("schedule: rejects arguments that describe no schedule", () => {
  const invalid: [Parameters<typeof createSchedule>[0], RegExp][] = [
    [{ kind: "constant", lr: -0.1 }, /lr must be/],
    [{ kind: "constant", lr: Number.NaN }, /lr must be/],
    [{ kind: "cosine", lr: 0.1, totalSteps: 0 }, /totalSteps must be an integer >= 1/],
    [{ kind: "cosine", lr: 0.1, totalSteps: 10.5 }, /totalSteps/],
    [{ kind: "cosine", lr: 0.1, totalSteps: 10, minLr: 0.2 }, /minLr must be .* in \[0, 0.1\]/],
    [{ kind: "cosine", lr: 0.1, totalSteps: 10, warmupSteps: 10 }, /leaves none of the 10/],
    [{ kind: "cosine", lr: 0.1, totalSteps: 10, warmupSteps: 2, startFactor: 2 }, /startFactor/],
    [{ kind: "one-cycle", lr: 0.1, totalSteps: 1 }, /totalSteps must be an integer >= 2/],
    [{ kind: "one-cycle", lr: 0.1, totalSteps: 10, warmupFraction: 1.5 }, /warmupFraction/],
    [{ kind: "one-cycle", lr: 0.1, totalSteps: 10, warmupFraction: 0.95 }, /no step for the decay/],
    [{ kind: "step", lr: 0.1 } as unknown as Parameters<typeof createSchedule>[0], /unknown/],
  ];
  for (const [config, message] of invalid) {
    assert.throws(() => createSchedule(config), ScheduleError);
    assert.throws(() => createSchedule(config), message);
  }
});
