/**
 * Reference optimizers in f64, written from the algorithms in torch.optim's documentation
 * (Adam, AdamW, SGD; SGD's decoupled weight decay, which torch.optim lacks, from AdamW's
 * p ← p − lr·wd·p before the update) rather than from the kernel: the kernel follows PyTorch's implementation
 * (lerp for m, sqrt(v)/sqrt(1 − β2^t) + eps), these follow the documented formulas
 * (β1·m + (1 − β1)·g, sqrt(v̂) + eps), which agree in exact arithmetic. The defaults are
 * torch.optim's, restated here so that the GPU module's defaults are checked, not shared.
 */
import type { OptimizerConfig } from "../../../src/train/optimizer.ts";
import { checkLength } from "./shape.ts";

export interface ReferenceOptimizer {
  /** Steps taken so far (torch's state["step"]). */
  readonly steps: number;
  /** State buffers under torch.optim's keys: exp_avg/exp_avg_sq or momentum_buffer. */
  readonly state: Record<string, Float64Array>;
  /** One step at learning rate `lr`: updates `params` in place from `grads`. */
  step(params: Float64Array, grads: Float64Array, lr: number): void;
}

/** A fresh optimizer (zero state) for `length` parameters. */
export function referenceOptimizer(config: OptimizerConfig, length: number): ReferenceOptimizer {
  return config.kind === "sgd" ? referenceSgd(config, length) : referenceAdam(config, length);
}

function referenceAdam(
  config: Extract<OptimizerConfig, { kind: "adam" | "adamw" }>,
  length: number,
): ReferenceOptimizer {
  const [beta1, beta2] = config.betas ?? [0.9, 0.999];
  const eps = config.eps ?? 1e-8;
  const weightDecay = config.weightDecay ?? (config.kind === "adamw" ? 1e-2 : 0);
  const m = new Float64Array(length);
  const v = new Float64Array(length);
  let t = 0;
  return {
    get steps() {
      return t;
    },
    state: { exp_avg: m, exp_avg_sq: v },
    step(params, grads, lr) {
      checkLength(params, length, "adam params");
      checkLength(grads, length, "adam grads");
      t++;
      for (let i = 0; i < length; i++) {
        let g = grads[i];
        if (config.kind === "adamw") params[i] -= lr * weightDecay * params[i];
        else g += weightDecay * params[i];
        m[i] = beta1 * m[i] + (1 - beta1) * g;
        v[i] = beta2 * v[i] + (1 - beta2) * g * g;
        const mHat = m[i] / (1 - beta1 ** t);
        const vHat = v[i] / (1 - beta2 ** t);
        params[i] -= lr * mHat / (Math.sqrt(vHat) + eps);
      }
    },
  };
}

function referenceSgd(
  config: Extract<OptimizerConfig, { kind: "sgd" }>,
  length: number,
): ReferenceOptimizer {
  const momentum = config.momentum ?? 0;
  const nesterov = config.nesterov ?? false;
  const weightDecay = config.weightDecay ?? 0;
  const decoupled = config.weightDecayMode === "decoupled";
  const buffer = new Float64Array(length);
  let t = 0;
  return {
    get steps() {
      return t;
    },
    state: momentum === 0 ? {} : { momentum_buffer: buffer },
    step(params, grads, lr) {
      checkLength(params, length, "sgd params");
      checkLength(grads, length, "sgd grads");
      t++;
      for (let i = 0; i < length; i++) {
        let g = grads[i];
        if (decoupled) params[i] -= lr * weightDecay * params[i];
        else g += weightDecay * params[i];
        if (momentum !== 0) {
          buffer[i] = t === 1 ? g : momentum * buffer[i] + g;
          g = nesterov ? g + momentum * buffer[i] : buffer[i];
        }
        params[i] -= lr * g;
      }
    },
  };
}

/**
 * One update of an exponential moving average of weights, in place: average = decay·average +
 * (1 − decay)·value (src/ops/ema.ts; torch.optim.swa_utils' EMA and timm's ModelEmaV2 use the
 * same formula).
 */
export function emaUpdate(average: Float64Array, value: ArrayLike<number>, decay: number): void {
  checkLength(value, average.length, "ema value");
  for (let i = 0; i < average.length; i++) {
    average[i] = decay * average[i] + (1 - decay) * value[i];
  }
}
