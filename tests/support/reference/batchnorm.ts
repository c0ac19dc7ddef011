/**
 * Reference BatchNorm2d in f64 over NHWC activations, with PyTorch's semantics: statistics per
 * channel over all N·H·W positions; train mode normalises with the batch mean and the biased
 * variance and updates the running statistics with the unbiased variance; eval mode normalises
 * with the running statistics.
 */
import { checkLength, nhwcLength, type NhwcShape } from "./shape.ts";

export const BATCH_NORM_EPS = 1e-5;
export const BATCH_NORM_MOMENTUM = 0.1;

export interface BatchNormParameters {
  /** Scale and shift, one per channel (PyTorch's `weight` and `bias`). */
  gamma: Float64Array;
  beta: Float64Array;
}

export interface BatchNormRunningStats {
  runningMean: Float64Array;
  runningVar: Float64Array;
}

/** The per-channel statistics a forward pass normalised with, as needed by its backward. */
export interface BatchNormStatistics {
  mean: Float64Array;
  invstd: Float64Array;
}

export interface BatchNormTrainResult extends BatchNormStatistics {
  y: Float64Array;
  /** The biased batch variance (divided by N·H·W) used for normalising. */
  variance: Float64Array;
  /** Running statistics after this step; the ones passed in are left unchanged. */
  runningMean: Float64Array;
  runningVar: Float64Array;
}

export interface BatchNormGradients {
  dx: Float64Array;
  dgamma: Float64Array;
  dbeta: Float64Array;
}

/** Sums `term(index, channel)` over every position of each channel. */
function sumPerChannel(
  shape: NhwcShape,
  term: (index: number, channel: number) => number,
): Float64Array {
  const sums = new Float64Array(shape.c);
  for (let index = 0; index < nhwcLength(shape); index++) {
    const channel = index % shape.c;
    sums[channel] += term(index, channel);
  }
  return sums;
}

function checkShapes(x: Float64Array, parameters: BatchNormParameters, shape: NhwcShape): void {
  checkLength(x, nhwcLength(shape), "batch norm x");
  checkLength(parameters.gamma, shape.c, "batch norm gamma");
  checkLength(parameters.beta, shape.c, "batch norm beta");
}

function checkRunningShapes(running: BatchNormRunningStats, shape: NhwcShape): void {
  checkLength(running.runningMean, shape.c, "batch norm running mean");
  checkLength(running.runningVar, shape.c, "batch norm running var");
}

/** y = gamma · (x − mean) · invstd + beta: the forward of both modes, differing only in the
 * statistics used. */
function normalize(
  x: Float64Array,
  { gamma, beta }: BatchNormParameters,
  { mean, invstd }: BatchNormStatistics,
  shape: NhwcShape,
): Float64Array {
  return x.map((value, index) => {
    const channel = index % shape.c;
    return gamma[channel] * (value - mean[channel]) * invstd[channel] + beta[channel];
  });
}

/** dgamma = Σ dy · x̂ and dbeta = Σ dy, with x̂ = (x − mean) · invstd, in either mode. */
function parameterGradients(
  x: Float64Array,
  dy: Float64Array,
  { mean, invstd }: BatchNormStatistics,
  shape: NhwcShape,
): { dgamma: Float64Array; dbeta: Float64Array } {
  checkLength(dy, x.length, "batch norm dy");
  return {
    dgamma: sumPerChannel(
      shape,
      (index, channel) => dy[index] * (x[index] - mean[channel]) * invstd[channel],
    ),
    dbeta: sumPerChannel(shape, (index) => dy[index]),
  };
}

/** invstd = 1 / sqrt(variance + eps). */
function inverseStd(variance: Float64Array, eps: number): Float64Array {
  return variance.map((value) => 1 / Math.sqrt(value + eps));
}

export function batchNormTrainForward(
  x: Float64Array,
  parameters: BatchNormParameters,
  running: BatchNormRunningStats,
  shape: NhwcShape,
  eps = BATCH_NORM_EPS,
  momentum = BATCH_NORM_MOMENTUM,
): BatchNormTrainResult {
  checkShapes(x, parameters, shape);
  checkRunningShapes(running, shape);
  const count = shape.n * shape.h * shape.w;
  if (count < 2) {
    // PyTorch refuses this too: the unbiased variance for the running statistics is undefined.
    throw new RangeError("batch norm in train mode needs more than one value per channel");
  }
  const mean = sumPerChannel(shape, (index) => x[index]).map((sum) => sum / count);
  const variance = sumPerChannel(shape, (index, channel) => (x[index] - mean[channel]) ** 2)
    .map((sum) => sum / count);
  const invstd = inverseStd(variance, eps);
  const y = normalize(x, parameters, { mean, invstd }, shape);
  const runningMean = running.runningMean.map((value, channel) =>
    (1 - momentum) * value + momentum * mean[channel]
  );
  const runningVar = running.runningVar.map((value, channel) =>
    (1 - momentum) * value + momentum * variance[channel] * count / (count - 1)
  );
  return { y, mean, variance, invstd, runningMean, runningVar };
}

export function batchNormEvalForward(
  x: Float64Array,
  parameters: BatchNormParameters,
  running: BatchNormRunningStats,
  shape: NhwcShape,
  eps = BATCH_NORM_EPS,
): Float64Array {
  checkShapes(x, parameters, shape);
  checkRunningShapes(running, shape);
  return normalize(x, parameters, runningStatistics(running, eps), shape);
}

/**
 * Backward of train mode, where mean and variance depend on x:
 * dx = gamma · invstd / M · (M · dy − Σ dy − x̂ · Σ dy · x̂), with M = N·H·W per channel.
 */
export function batchNormTrainBackward(
  x: Float64Array,
  dy: Float64Array,
  parameters: BatchNormParameters,
  saved: BatchNormStatistics,
  shape: NhwcShape,
): BatchNormGradients {
  checkShapes(x, parameters, shape);
  const count = shape.n * shape.h * shape.w;
  const { dgamma, dbeta } = parameterGradients(x, dy, saved, shape);
  const dx = x.map((value, index) => {
    const channel = index % shape.c;
    const normalized = (value - saved.mean[channel]) * saved.invstd[channel];
    return parameters.gamma[channel] * saved.invstd[channel] / count *
      (count * dy[index] - dbeta[channel] - normalized * dgamma[channel]);
  });
  return { dx, dgamma, dbeta };
}

/** Backward of eval mode, where the running statistics are constants: dx = gamma · invstd · dy. */
export function batchNormEvalBackward(
  x: Float64Array,
  dy: Float64Array,
  parameters: BatchNormParameters,
  running: BatchNormRunningStats,
  shape: NhwcShape,
  eps = BATCH_NORM_EPS,
): BatchNormGradients {
  checkShapes(x, parameters, shape);
  checkRunningShapes(running, shape);
  const statistics = runningStatistics(running, eps);
  const { dgamma, dbeta } = parameterGradients(x, dy, statistics, shape);
  const dx = dy.map((gradient, index) => {
    const channel = index % shape.c;
    return parameters.gamma[channel] * statistics.invstd[channel] * gradient;
  });
  return { dx, dgamma, dbeta };
}

function runningStatistics(running: BatchNormRunningStats, eps: number): BatchNormStatistics {
  return { mean: running.runningMean, invstd: inverseStd(running.runningVar, eps) };
}
