/**
 * Learning-rate schedules as pure functions of the step: `schedule(step)` is the rate for the
 * optimizer step `step`, counted from 0 (the value to pass to Optimizer.prepareStep before it).
 * Schedules advance per optimizer step, not per epoch.
 */
import { UserError } from "../errors.ts";
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
    default:
      throw new ScheduleError(
        `unknown schedule kind ${(config as { kind: string }).kind}: use constant, cosine or ` +
          `one-cycle`,
      );
  }
}
