/**
 * Exponential moving average of weights (shaders/ema.wgsl): average = decay · average +
 * (1 − decay) · value, element-wise and in place, over f32 tensors of one shape. The training
 * loop runs it after each optimizer step over the parameter arena and the running-statistics
 * arena (src/train/weight_average.ts), one call per binding-sized chunk, so that the averaged
 * model can be evaluated beside the trained one.
 */
import { type KernelCall, kernelCall, linearGrid, read, readWrite } from "../gpu/kernel_call.ts";
import type { TensorDesc } from "../gpu/tensor.ts";
import { elementCount } from "../util/shape.ts";
import { kernels } from "../shaders.ts";
import { expectTensor } from "./shape.ts";

const WORKGROUP_SIZE = 256;

/** The moving average's rate: how much of the average each update keeps. */
export interface EmaConfig {
  /** In [0, 1): 0 copies `value`; PyTorch recipes use 0.99 to 0.9999. */
  decay: number;
}

/**
 * One update of `average` (read and written) towards `value` (read), both f32 of one shape, in
 * separate buffers or disjoint ranges (WebGPU forbids aliasing a written binding). Tensors
 * whose element count is a multiple of 4 (the arenas) take the vec4 entry point. A decay
 * outside [0, 1) is a RangeError, a tensor that is not f32 of average's shape a ShapeError.
 */
export function emaUpdate(
  t: { average: TensorDesc; value: TensorDesc },
  config: EmaConfig,
): KernelCall[] {
  const { decay } = config;
  if (!Number.isFinite(decay) || decay < 0 || decay >= 1) {
    throw new RangeError(`ema: decay must be a finite number in [0, 1), got ${decay}`);
  }
  expectTensor("ema", t.average, t.average.shape);
  expectTensor("ema", t.value, t.average.shape);
  const count = elementCount(t.average.shape);
  const vec4 = count % 4 === 0;
  return [kernelCall({
    kernel: kernels.ema,
    entryPoint: vec4 ? "update_vec4" : "update",
    workgroupSize: WORKGROUP_SIZE,
    // 1 − decay in f64, rounded once (see the WGSL).
    constants: { DECAY: decay, ONE_MINUS_DECAY: 1 - decay },
    grid: linearGrid(vec4 ? count / 4 : count, WORKGROUP_SIZE),
    bindings: [read(t.value), readWrite(t.average)],
  })];
}
