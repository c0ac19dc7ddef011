/**
 * The browser build's entry (`deno task build` bundles it to dist/webgpu-resnet.js): the GPU
 * runtime, every kernel and op, the kernel policy, the model, programs and static plans, without
 * the parts that use Deno's file system (data loading from disk, checkpoint files, the CLIs).
 */
export { requestGpu } from "./gpu/device.ts";
export { readBuffer, uploadBuffer } from "./gpu/buffer.ts";
export { createTensor, tensorDesc, tensorFromData } from "./gpu/tensor.ts";
export { kernelCall } from "./gpu/kernel_call.ts";
export { submitDispatches } from "./gpu/dispatch.ts";
export { kernels } from "./shaders.ts";
export * from "./ops/index.ts";
export { buildArchitecture } from "./model/architecture.ts";
export { presetNames, resnetConfig } from "./model/config.ts";
export { ModelWeights } from "./model/weights.ts";
export { Program } from "./plan/program.ts";
export { allocate } from "./plan/allocator.ts";
export { materialize, submitCalls } from "./plan/materialize.ts";
export { StepPlan } from "./plan/plan.ts";
export { decodeSafetensors, encodeSafetensors } from "./io/safetensors.ts";
