/**
 * The browser build's entry (`deno task build` bundles it to dist/webgpu-resnet.js): the GPU
 * runtime, every kernel and op, the model, the static plans and the optimizers, without the
 * parts that use Deno's file system (data loading from disk, checkpoint files, the CLIs).
 */
export { requestGpu } from "./gpu/device.ts";
export { readBuffer, uploadBuffer } from "./gpu/buffer.ts";
export { createTensor } from "./gpu/tensor.ts";
export { submitDispatches } from "./gpu/dispatch.ts";
export { kernels } from "./shaders.ts";
export * from "./ops/index.ts";
export { buildArchitecture } from "./model/architecture.ts";
export { presetNames, resnetConfig } from "./model/config.ts";
export { ModelWeights } from "./model/weights.ts";
export { StepPlan } from "./plan/plan.ts";
export { decodeSafetensors, encodeSafetensors } from "./io/safetensors.ts";
