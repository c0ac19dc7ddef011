import assert from "node:assert/strict";
import {
  createSchedule,
  parsePiecewisePoints,
  type ScheduleConfig,
  ScheduleError,
} from "../../src/train/schedule.ts";

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

Deno.test("schedule: piecewise interpolates the factor at step / totalSteps", () => {
  // The ResNet-9 recipe: 0 → 1 over the first 20% of the run, then back to 0 at its end. With
  // 100 steps the knots fall on steps 0 and 20 (step 100 would reach the last).
  const points = [[0, 0], [0.2, 1], [1, 0]] as const;
  const schedule = createSchedule({ kind: "piecewise", lr: 0.4, totalSteps: 100, points });
  assertValues(schedule, {
    0: 0,
    5: 0.1,
    10: 0.2,
    19: 0.38,
    20: 0.4,
    60: 0.2,
    80: 0.1,
    99: 0.4 * 0.01 / 0.8,
  });
  assert.throws(() => schedule(100), RangeError);
  assert.throws(
    () => schedule(100),
    /piecewise schedule: step 100 is not an integer in \[0, 100\)/,
  );
  assert.throws(() => schedule(-1), RangeError);
  assert.throws(() => schedule(2.5), RangeError);

  // Several segments, a flat one, a start above 0 and knots hit exactly by steps; then knots
  // between steps (0.2·7 = 1.4).
  const shaped = createSchedule({
    kind: "piecewise",
    lr: 2,
    totalSteps: 8,
    points: [[0, 0.5], [0.25, 1], [0.5, 1], [0.75, 0.25], [1, 0.25]],
  });
  assertValues(shaped, { 0: 1, 1: 1.5, 2: 2, 3: 2, 4: 2, 5: 1.25, 6: 0.5, 7: 0.5 });
  const offKnot = createSchedule({ kind: "piecewise", lr: 1, totalSteps: 7, points });
  // x = 1/7: 5/7 of the way up; x = 2/7: (1 − 2/7)/0.8 = 25/28 on the way down.
  assertValues(offKnot, { 0: 0, 1: 5 / 7, 2: 25 / 28, 6: (1 / 7) / 0.8 });
  // Two points: a straight line; one step: only step 0.
  const line = createSchedule({
    kind: "piecewise",
    lr: 1,
    totalSteps: 4,
    points: [[0, 1], [1, 0]],
  });
  assertValues(line, { 0: 1, 1: 0.75, 2: 0.5, 3: 0.25 });
  const single = createSchedule({
    kind: "piecewise",
    lr: 3,
    totalSteps: 1,
    points: [[0, 2], [1, 0]],
  });
  assertValues(single, { 0: 6 });
  assert.throws(() => single(1), RangeError);
});

Deno.test("schedule: piecewise gives numpy.interp's rates to the bit", () => {
  // 0.4 * np.interp(step / 1746, [0, 0.2, 1], [0, 1, 0]) printed by numpy 2.4 (18 epochs of 97
  // batches: the fast94 run), so a PyTorch LambdaLR run over np.interp sees the same rates.
  const schedule = createSchedule({
    kind: "piecewise",
    lr: 0.4,
    totalSteps: 1746,
    points: [[0, 0], [0.2, 1], [1, 0]],
  });
  const numpy = {
    1: 0.001145475372279496,
    349: 0.3997709049255441,
    350: 0.3997709049255441,
    1000: 0.21363115693012605,
    1745: 0.000286368843069873,
  };
  for (const [step, rate] of Object.entries(numpy)) assert.equal(schedule(Number(step)), rate);
});

Deno.test("schedule: piecewise keeps its own copy of the points", () => {
  const points: [number, number][] = [[0, 1], [1, 1]];
  const schedule = createSchedule({ kind: "piecewise", lr: 1, totalSteps: 10, points });
  points[0][1] = 5;
  assert.equal(schedule(0), 1);
});

Deno.test("schedule: piecewise rejects points that describe no schedule", () => {
  const piecewise = (points: unknown, totalSteps = 10): ScheduleConfig => ({
    kind: "piecewise",
    lr: 0.1,
    totalSteps,
    points: points as [number, number][],
  });
  const invalid: [ScheduleConfig, RegExp][] = [
    [piecewise([[0, 0], [1, 0]], 0), /totalSteps must be an integer >= 1, got 0/],
    [piecewise([[0, 0], [1, 0]], 2.5), /totalSteps must be an integer >= 1/],
    [piecewise([]), /needs at least two points, from fraction 0 to fraction 1, got 0$/],
    [piecewise([[0, 1]]), /needs at least two points.*got 1$/],
    [piecewise(undefined), /needs at least two points.*got none$/],
    [piecewise([[0, 1], [1]]), /points\[1\] must be a \[fraction, factor\] pair, got \[1\]$/],
    [piecewise([[0.1, 1], [1, 0]]), /the first point's fraction must be 0, got 0.1$/],
    [piecewise([[0, 1], [0.9, 0]]), /the last point's fraction must be 1, got 0.9$/],
    [
      piecewise([[0, 1], [0.5, 1], [0.5, 0], [1, 0]]),
      /fractions must rise strictly, but points\[2\] has 0.5 after 0.5$/,
    ],
    [piecewise([[0, 1], [0.6, 1], [0.4, 0], [1, 0]]), /points\[2\] has 0.4 after 0.6/],
    [
      piecewise([[0, 1], [1.5, 0]]),
      /the fraction of points\[1\] must be a finite number in \[0, 1\], got 1.5$/,
    ],
    [piecewise([[0, 1], [Number.NaN, 0], [1, 0]]), /fraction of points\[1\].*got NaN$/],
    [
      piecewise([[0, -1], [1, 0]]),
      /the factor of points\[0\] must be a finite number >= 0, got -1$/,
    ],
    [piecewise([[0, 1], [1, Infinity]]), /factor of points\[1\].*got Infinity$/],
  ];
  for (const [config, message] of invalid) {
    assert.throws(() => createSchedule(config), ScheduleError);
    assert.throws(() => createSchedule(config), message);
  }
});

Deno.test("schedule: parsePiecewisePoints reads F:M,F:M,...", () => {
  assert.deepEqual(parsePiecewisePoints("0:0,0.2:1,1:0"), [[0, 0], [0.2, 1], [1, 0]]);
  assert.deepEqual(parsePiecewisePoints(" 0 : 1.5 , .5:2e-1, 1:0 "), [[0, 1.5], [0.5, 0.2], [
    1,
    0,
  ]]);
  assert.deepEqual(parsePiecewisePoints("0:1,1:1"), [[0, 1], [1, 1]]);
  const schedule = createSchedule({
    kind: "piecewise",
    lr: 0.4,
    totalSteps: 10,
    points: parsePiecewisePoints("0:0,0.2:1,1:0"),
  });
  assertValues(schedule, { 0: 0, 1: 0.2, 2: 0.4, 6: 0.2 });
});

Deno.test("schedule: parsePiecewisePoints names the problem and the form in one line", () => {
  const form =
    /: expected F:M,F:M,\.\.\. with fractions F of the run rising from 0 to 1 and factors M of lr >= 0, e\.g\. 0:0,0\.2:1,1:0$/;
  const invalid: [string, RegExp][] = [
    ["", /^ScheduleError: piecewise schedule: no points given: expected F:M/],
    ["  ", /no points given/],
    ["0:0,0.2,1:0", /^ScheduleError: piecewise schedule: point "0.2" is not F:M: expected/],
    ["0:0:1,1:0", /point "0:0:1" is not F:M/],
    ["0:0,,1:0", /point "" is not F:M/],
    ["0:0,1:0,", /point "" is not F:M/],
    [
      "0:zero,1:0",
      /^ScheduleError: piecewise schedule: "zero" in point "0:zero" is not a number: expected/,
    ],
    ["0:,1:0", /"" in point "0:" is not a number/],
    ["0:0x1,1:0", /"0x1" in point "0:0x1" is not a number/],
    ["0:Infinity,1:0", /"Infinity" in point "0:Infinity" is not a number/],
    // A newline for a comma: echoed escaped, so the message stays one line.
    ["0:0\n1:0", /point "0:0\\n1:0" is not F:M/],
    [
      "0.1:0,1:0",
      /^ScheduleError: piecewise schedule: the first point's fraction must be 0, got 0.1: expected/,
    ],
    ["0:0,0.8:1", /the last point's fraction must be 1, got 0.8: expected/],
    [
      "0:0,0.5:1,0.3:1,1:0",
      /fractions must rise strictly, but points\[2\] has 0.3 after 0.5: expected/,
    ],
    ["0:-1,1:0", /the factor of points\[0\] must be a finite number >= 0, got -1: expected/],
    ["0:1", /needs at least two points.*got 1: expected/],
  ];
  for (const [text, message] of invalid) {
    assert.throws(() => parsePiecewisePoints(text), ScheduleError, JSON.stringify(text));
    assert.throws(() => parsePiecewisePoints(text), message, JSON.stringify(text));
    assert.throws(() => parsePiecewisePoints(text), form, JSON.stringify(text));
    assert.throws(
      () => parsePiecewisePoints(text),
      (error: Error) => !error.message.includes("\n"),
      `${JSON.stringify(text)}: one line`,
    );
  }
});
