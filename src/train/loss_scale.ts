/**
 * Dynamic loss scaling for f16 training, with torch.cuda.amp.GradScaler's semantics and defaults.
 * f16 holds magnitudes from 6e-8 (subnormal) to 65504: small activation gradients would flush to
 * zero, so the loss gradient is multiplied by a scale (a power of two, so scaling is exact) and
 * the optimizer divides it back out of the f32 gradient arena. A step whose scaled gradients
 * overflowed is skipped and the scale halved; after `growthInterval` good steps in a row the scale
 * doubles. All of it runs on the GPU (shaders/optimizer.wgsl: find_non_finite, the update with
 * LOSS_SCALING, update_scale), so no step waits for the CPU; the state is read back with the loss.
 */
import * as z from "zod/mini";
import { UserError } from "../errors.ts";

/** Raised for a loss-scaling setting GradScaler would also reject; the message names it. */
export class LossScaleConfigError extends UserError {
  override name = "LossScaleConfigError";
}

export interface LossScaleConfig {
  /** The first scale, default 2^16 (GradScaler's init_scale). */
  initScale?: number;
  /** Factor by which the scale grows after `growthInterval` good steps, default 2. */
  growthFactor?: number;
  /** Factor by which the scale shrinks on an overflow, default 0.5. */
  backoffFactor?: number;
  /** Good steps in a row before the scale grows, default 2000. */
  growthInterval?: number;
}

export type ResolvedLossScaleConfig = Required<LossScaleConfig>;

/** torch.cuda.amp.GradScaler's defaults. */
export const LOSS_SCALE_DEFAULTS: ResolvedLossScaleConfig = {
  initScale: 2 ** 16,
  growthFactor: 2,
  backoffFactor: 0.5,
  growthInterval: 2000,
};

/** The GPU state (LOSS_SCALE_SHAPE), without the per-step overflow flag. */
export const lossScaleStateSchema = z.object({
  /** The scale the next step multiplies the loss gradient by. */
  scale: z.number().check(z.positive()),
  /** Good steps since the scale last changed. */
  growthTracker: z.number().check(z.int(), z.minimum(0)),
  /** Steps skipped for an overflow, since the run began. */
  skippedSteps: z.number().check(z.int(), z.minimum(0)),
  /** Steps whose update was applied: Adam's step count, for its bias corrections. */
  appliedSteps: z.number().check(z.int(), z.minimum(0)),
});
export type LossScaleState = z.infer<typeof lossScaleStateSchema>;

/** Validates a config as GradScaler does and fills in its defaults. */
export function resolveLossScaleConfig(config: LossScaleConfig = {}): ResolvedLossScaleConfig {
  const resolved = { ...LOSS_SCALE_DEFAULTS, ...config };
  const { initScale, growthFactor, backoffFactor, growthInterval } = resolved;
  const fail = (message: string) => {
    throw new LossScaleConfigError(`loss scaling: ${message}`);
  };
  // f32 range: the scale lives in an f32 on the GPU.
  if (!(initScale > 0 && initScale <= 2 ** 127)) {
    fail(`initScale must be in (0, 2^127], got ${initScale}`);
  }
  if (!(growthFactor > 1 && Number.isFinite(growthFactor))) {
    fail(`growthFactor must be above 1, got ${growthFactor}`);
  }
  if (!(backoffFactor > 0 && backoffFactor < 1)) {
    fail(`backoffFactor must be in (0, 1), got ${backoffFactor}`);
  }
  if (!Number.isInteger(growthInterval) || growthInterval < 1 || growthInterval > 0xffffffff) {
    fail(`growthInterval must be a positive integer, got ${growthInterval}`);
  }
  return resolved;
}

/** The state of a fresh run. */
export function initialLossScaleState(config: ResolvedLossScaleConfig): LossScaleState {
  return { scale: config.initScale, growthTracker: 0, skippedSteps: 0, appliedSteps: 0 };
}

/** The GPU words of `state` (found_inf clear). */
export function encodeLossScaleState(state: LossScaleState): Uint32Array<ArrayBuffer> {
  const words = Uint32Array.of(0, state.growthTracker, 0, state.skippedSteps, state.appliedSteps);
  new Float32Array(words.buffer, 0, 1)[0] = state.scale;
  return words;
}

/** The state from the GPU words (LOSS_SCALE_SHAPE), wherever they were copied. */
export function decodeLossScaleState(bytes: ArrayBuffer, byteOffset = 0): LossScaleState {
  const words = new Uint32Array(bytes, byteOffset, 5);
  return {
    scale: new Float32Array(bytes, byteOffset, 1)[0],
    growthTracker: words[1],
    skippedSteps: words[3],
    appliedSteps: words[4],
  };
}
