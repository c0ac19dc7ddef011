/**
 * Train convolutional networks on the GPU through WebGPU: hand-written WGSL kernels for every
 * ResNet layer (forward and backward), a static training plan, optimizers on GPU buffers,
 * CIFAR-10 loaders and PyTorch-compatible checkpoints.
 *
 * ```ts
 * import { requestGpu, ModelWeights, resnetConfig, Trainer, Evaluator, loadCifar10 } from "./mod.ts";
 * const gpu = await requestGpu();
 * const data = await loadCifar10("data", { download: true });
 * const weights = new ModelWeights(gpu, resnetConfig("resnet18", 0.25));
 * weights.initialize(0);
 * ```
 * @module
 */

// The GPU runtime: device, buffers, tensors, pipelines, dispatches.
export { type Gpu, type GpuOptions, GpuUnavailableError, requestGpu } from "./src/gpu/device.ts";
export {
  BufferLimitError,
  createBuffer,
  readBuffer,
  readFloat32,
  uploadBuffer,
  writeBuffer,
} from "./src/gpu/buffer.ts";
export { bindingOf, createTensor, type Tensor } from "./src/gpu/tensor.ts";
export { type Kernel, KernelError, PipelineCache } from "./src/gpu/pipeline.ts";
export {
  createDispatch,
  type Dispatch,
  encodeDispatches,
  linearGrid,
  submitDispatches,
} from "./src/gpu/dispatch.ts";
export { kernels } from "./src/shaders.ts";

// Ops: each builds the dispatches of one kernel's forward and backward.
export * from "./src/ops/index.ts";

// The model.
export { type Architecture, buildArchitecture } from "./src/model/architecture.ts";
export {
  type PresetName,
  presetNames,
  presets,
  type ResNetConfig,
  resnetConfig,
} from "./src/model/config.ts";
export { countParameters, parameterSpecs } from "./src/model/parameters.ts";
export { ModelWeights } from "./src/model/weights.ts";
export {
  type Checkpoint,
  type CheckpointMetadata,
  decodeCheckpoint,
  encodeCheckpoint,
  loadModelStateDict,
  modelStateDict,
} from "./src/model/checkpoint.ts";

// The static plan of a training or evaluation step.
export { StepPlan } from "./src/plan/plan.ts";

// Training and evaluation.
export {
  type EpochProgress,
  Trainer,
  type TrainerOptions,
  TrainingDivergedError,
} from "./src/train/trainer.ts";
export { type EvaluationResult, Evaluator } from "./src/train/evaluator.ts";
export { createSchedule, type Schedule, type ScheduleConfig } from "./src/train/schedule.ts";

// Data.
export { type CifarDataset, type CifarSplit, DataError } from "./src/data/cifar.ts";
export { loadCifar10 } from "./src/data/load.ts";
export { decodePngToCifar } from "./src/data/image.ts";

// Files.
export { CheckpointError, decodeSafetensors, encodeSafetensors } from "./src/io/safetensors.ts";
export { writeFileAtomic } from "./src/io/atomic.ts";
