/**
 * Learning-rate schedules as pure functions of the step: `schedule(step)` is the rate for the
 * optimizer step `step`, counted from 0 (the value to pass to Optimizer.prepareStep before it).
 * Schedules advance per optimizer step, not per epoch.
 *
 * Kinds: constant; cosine (CosineAnnealingLR, with an optional LinearLR warm-up); one-cycle
 * (linear up, linear down to 0 at the last step); piecewise (lr times a piecewise-linear factor of
 * the fraction of the run, step / totalSteps, through given [fraction, factor] knots: the
 * DAWNBench ResNet-9 recipe's 0:0, 0.2:1, 1:0 is `parsePiecewisePoints("0:0,0.2:1,1:0")`).
 */
import { UserError } from "../errors.ts";

/** A knot of a piecewise schedule: [fraction of the run in [0, 1], factor of lr >= 0]. */
export type PiecewisePoint = readonly [fraction: number, factor: number];

export type ScheduleConfig =
  | {
    kind: "constant";
    lr: number;
  }
  | {
    /**
     * PyTorch's CosineAnnealingLR with T_max = totalSteps − warmupSteps: from `lr` at the end of
     * the warm-up towards `minLr` (default 0), which step totalSteps would reach. With
     * warmupSteps > 0 it first rises linearly from lr·startFactor (default 0) as PyTorch's
     * LinearLR, reaching `lr` at step warmupSteps (SequentialLR of the two).
     */
    kind: "cosine";
    lr: number;
    totalSteps: number;
    minLr?: number;
    warmupSteps?: number;
    startFactor?: number;
  }
  | {
    /**
     * Linear warm-up then linear decay: from lr·startFactor (default 0) at step 0 up to `lr` at
     * step round(warmupFraction·totalSteps) (default 20% of the steps), then down to 0 at the
     * last step, totalSteps − 1.
     */
    kind: "one-cycle";
    lr: number;
    totalSteps: number;
    warmupFraction?: number;
    startFactor?: number;
  }
  | {
    /**
     * lr times the factor interpolated linearly between `points` at x = step / totalSteps.
     * Fractions rise strictly from 0 (the first point) to 1 (the last, which step totalSteps
     * would reach); factors are finite and >= 0. The arithmetic is numpy.interp's, so PyTorch's
     * LambdaLR with `lambda step: np.interp(step / total, fractions, factors)` gives the same
     * f64 rates.
     */
    kind: "piecewise";
    lr: number;
    totalSteps: number;
    points: readonly PiecewisePoint[];
  };

/** The learning rate for each optimizer step, from 0; throws for a step outside the schedule. */
export type Schedule = (step: number) => number;

/** Raised for schedule arguments that do not describe a schedule; the message names the fix. */
export class ScheduleError extends UserError {
  override name = "ScheduleError";
}

function requireNumber(what: string, value: number, low: number, high = Infinity): void {
  if (!Number.isFinite(value) || value < low || value > high) {
    const range = high === Infinity ? `>= ${low}` : `in [${low}, ${high}]`;
    throw new ScheduleError(`${what} must be a finite number ${range}, got ${value}`);
  }
}

function requireInteger(what: string, value: number, low: number): void {
  if (!Number.isInteger(value) || value < low) {
    throw new ScheduleError(`${what} must be an integer >= ${low}, got ${value}`);
  }
}

/** Rejects steps that are not integers or lie past `totalSteps` (if the schedule has an end). */
function checkStep(kind: string, step: number, totalSteps = Infinity): void {
  if (!Number.isInteger(step) || step < 0 || step >= totalSteps) {
    throw new RangeError(
      `${kind} schedule: step ${step} is not an integer in [0, ${totalSteps})`,
    );
  }
}

/** The command-line form of piecewise points, for error messages. */
export const PIECEWISE_FORM =
  "expected F:M,F:M,... with fractions F of the run rising from 0 to 1 and " +
  "factors M of lr >= 0, e.g. 0:0,0.2:1,1:0";

/** Checks piecewise knots (see ScheduleConfig); `suffix` ends each message. */
function checkPiecewisePoints(points: readonly PiecewisePoint[], suffix = ""): void {
  const what = "piecewise schedule";
  if (!Array.isArray(points) || points.length < 2) {
    const count = Array.isArray(points) ? `${points.length}` : "none";
    throw new ScheduleError(
      `${what}: needs at least two points, from fraction 0 to fraction 1, got ${count}${suffix}`,
    );
  }
  points.forEach((point, index) => {
    if (!Array.isArray(point) || point.length !== 2) {
      throw new ScheduleError(
        `${what}: points[${index}] must be a [fraction, factor] pair, got ` +
          `${JSON.stringify(point)}${suffix}`,
      );
    }
    const [fraction, factor] = point;
    const check = (name: string, value: number, low: number, high = Infinity) => {
      if (!Number.isFinite(value) || value < low || value > high) {
        const range = high === Infinity ? `>= ${low}` : `in [${low}, ${high}]`;
        throw new ScheduleError(
          `${what}: the ${name} of points[${index}] must be a finite number ${range}, got ` +
            `${value}${suffix}`,
        );
      }
    };
    check("fraction", fraction, 0, 1);
    check("factor", factor, 0);
    if (index > 0 && !(fraction > points[index - 1][0])) {
      throw new ScheduleError(
        `${what}: fractions must rise strictly, but points[${index}] has ${fraction} after ` +
          `${points[index - 1][0]}${suffix}`,
      );
    }
  });
  const first = points[0][0];
  const last = points[points.length - 1][0];
  if (first !== 0) {
    throw new ScheduleError(`${what}: the first point's fraction must be 0, got ${first}${suffix}`);
  }
  if (last !== 1) {
    throw new ScheduleError(`${what}: the last point's fraction must be 1, got ${last}${suffix}`);
  }
}

/** A decimal number as written on a command line (no hex, no Infinity, no empty string). */
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/**
 * Parses the command-line form "F:M,F:M,..." (e.g. "0:0,0.2:1,1:0": from 0 up to lr over the
 * first 20% of the run, then down to 0 at its end) into checked piecewise points; a ScheduleError
 * names the problem and the expected form in one line.
 */
export function parsePiecewisePoints(text: string): PiecewisePoint[] {
  const suffix = `: ${PIECEWISE_FORM}`;
  if (text.trim() === "") {
    throw new ScheduleError(`piecewise schedule: no points given${suffix}`);
  }
  const points = text.split(",").map((item): PiecewisePoint => {
    const parts = item.split(":");
    if (parts.length !== 2) {
      throw new ScheduleError(
        `piecewise schedule: point ${JSON.stringify(item)} is not F:M${suffix}`,
      );
    }
    const [fraction, factor] = parts.map((part) => {
      const trimmed = part.trim();
      if (!DECIMAL.test(trimmed)) {
        throw new ScheduleError(
          `piecewise schedule: ${JSON.stringify(trimmed)} in point ${JSON.stringify(item)} is ` +
            `not a number${suffix}`,
        );
      }
      return Number(trimmed);
    });
    return [fraction, factor];
  });
  checkPiecewisePoints(points, suffix);
  return points;
}

/**
 * The factor at `x` in [0, 1] between the knots, as numpy.interp computes it: the slope of the
 * segment times the distance from its left knot, plus that knot's factor (a knot itself exactly).
 */
function interpolate(points: readonly PiecewisePoint[], x: number): number {
  let segment = 0;
  while (segment < points.length - 2 && x >= points[segment + 1][0]) segment++;
  const [x0, y0] = points[segment];
  const [x1, y1] = points[segment + 1];
  if (x === x0) return y0;
  if (x === x1) return y1;
  const slope = (y1 - y0) / (x1 - x0);
  return slope * (x - x0) + y0;
}

/** Validates `config` and returns its schedule. */
export function createSchedule(config: ScheduleConfig): Schedule {
  const { kind, lr } = config;
  requireNumber(`${kind} schedule: lr`, lr, 0);
  switch (kind) {
    case "constant":
      return (step) => {
        checkStep(kind, step);
        return lr;
      };
    case "cosine": {
      const { totalSteps, minLr = 0, warmupSteps = 0, startFactor = 0 } = config;
      requireInteger("cosine schedule: totalSteps", totalSteps, 1);
      requireNumber("cosine schedule: minLr", minLr, 0, lr);
      requireInteger("cosine schedule: warmupSteps", warmupSteps, 0);
      if (warmupSteps >= totalSteps) {
        throw new ScheduleError(
          `cosine schedule: warmupSteps ${warmupSteps} leaves none of the ${totalSteps} steps ` +
            `for the decay: use fewer`,
        );
      }
      requireNumber("cosine schedule: startFactor", startFactor, 0, 1);
      const decaySteps = totalSteps - warmupSteps;
      return (step) => {
        checkStep(kind, step, totalSteps);
        if (step < warmupSteps) return lr * (startFactor + (1 - startFactor) * step / warmupSteps);
        const progress = (step - warmupSteps) / decaySteps;
        return minLr + (lr - minLr) * (1 + Math.cos(Math.PI * progress)) / 2;
      };
    }
    case "one-cycle": {
      const { totalSteps, warmupFraction = 0.2, startFactor = 0 } = config;
      requireInteger("one-cycle schedule: totalSteps", totalSteps, 2);
      requireNumber("one-cycle schedule: warmupFraction", warmupFraction, 0, 1);
      requireNumber("one-cycle schedule: startFactor", startFactor, 0, 1);
      const peakStep = Math.round(warmupFraction * totalSteps);
      const lastStep = totalSteps - 1;
      if (peakStep >= lastStep) {
        throw new ScheduleError(
          `one-cycle schedule: warmupFraction ${warmupFraction} of ${totalSteps} steps peaks ` +
            `at step ${peakStep}, leaving no step for the decay: use a smaller fraction`,
        );
      }
      return (step) => {
        checkStep(kind, step, totalSteps);
        if (step < peakStep) return lr * (startFactor + (1 - startFactor) * step / peakStep);
        return lr * (lastStep - step) / (lastStep - peakStep);
      };
    }
    case "piecewise": {
      const { totalSteps } = config;
      requireInteger("piecewise schedule: totalSteps", totalSteps, 1);
      checkPiecewisePoints(config.points);
      // A copy, so that a caller changing its array cannot change the schedule.
      const points = config.points.map(([fraction, factor]): PiecewisePoint => [fraction, factor]);
      return (step) => {
        checkStep(kind, step, totalSteps);
        return lr * interpolate(points, step / totalSteps);
      };
    }
    default:
      throw new ScheduleError(
        `unknown schedule kind ${(config as { kind: string }).kind}: use constant, cosine, ` +
          `one-cycle or piecewise`,
      );
  }
}
