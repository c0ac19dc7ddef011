/**
 * Train convolutional networks on the GPU through WebGPU: hand-written WGSL kernels for every
 * layer of ResNet and ResNet-9 (forward and backward), a static training plan, optimizers on GPU buffers,
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

// The GPU runtime: device, buffers, tensors, pipelines, kernel calls and their dispatches.
export { type Gpu, type GpuOptions, GpuUnavailableError } from "./src/gpu/device.ts";
export { requestGpu } from "./src/gpu/deno_device.ts";
export {
  BufferLimitError,
  createBuffer,
  readBuffer,
  readFloat32,
  STORAGE_ALIGNMENT,
  uploadBuffer,
  writeBuffer,
} from "./src/gpu/buffer.ts";
export {
  bindingOf,
  byteSize,
  createTensor,
  type DType,
  type Tensor,
  type TensorDesc,
  tensorDesc,
  tensorFromData,
  workspaceDesc,
} from "./src/gpu/tensor.ts";
export { type Kernel, KernelError, PipelineCache } from "./src/gpu/pipeline.ts";
export {
  type Access,
  type Binding,
  type Call,
  isKernelCall,
  type KernelCall,
  kernelCall,
  linearGrid,
  read,
  readWrite,
  type TextureCopy,
  textureCopy,
  uniform,
  write,
} from "./src/gpu/kernel_call.ts";
export {
  type Command,
  type CopyToTexture,
  type Dispatch,
  encodeCommands,
  submitCommands,
} from "./src/gpu/dispatch.ts";
export { kernels } from "./src/shaders.ts";
export { UsageError, UserError } from "./src/errors.ts";
export { elementCount } from "./src/util/shape.ts";

// Ops: each plans the kernel calls of one kernel's forward and backward; the kernel policy.
export * from "./src/ops/index.ts";

// The model.
export { type Architecture, buildArchitecture, type Layer } from "./src/model/architecture.ts";
export {
  isResNet9,
  type ModelConfig,
  modelConfig,
  modelConfigSchema,
  type ModelName,
  modelNames,
  type PresetName,
  presetNames,
  presets,
  type ResNet9Config,
  type ResNetConfig,
  resnetConfig,
} from "./src/model/config.ts";
export { countParameters, parameterSpecs } from "./src/model/parameters.ts";
export { ModelWeights, type WeightTensors } from "./src/model/weights.ts";
export {
  type Checkpoint,
  type CheckpointMetadata,
  decodeCheckpoint,
  encodeCheckpoint,
  loadModelStateDict,
  modelStateDict,
  type OptimizerState,
} from "./src/model/checkpoint.ts";

// Programs of kernel calls: allocation (no GPU needed), materialisation, the static step plan.
export { Program } from "./src/plan/program.ts";
export { allocate, type Allocation, checkPlacement, PlanError } from "./src/plan/allocator.ts";
export { materialize, type Materialized, submitCalls } from "./src/plan/materialize.ts";
export { buildNetworkProgram, type LossOptions, type NetworkIo } from "./src/plan/network.ts";
export { StepPlan } from "./src/plan/plan.ts";

// Training and evaluation.
export {
  type EpochMetrics,
  type EpochProgress,
  Trainer,
  type TrainerOptions,
  TrainingDivergedError,
} from "./src/train/trainer.ts";
export {
  LOSS_SCALE_DEFAULTS,
  type LossScaleConfig,
  LossScaleConfigError,
  type LossScaleState,
} from "./src/train/loss_scale.ts";
export { checkPrecision, PRECISIONS, PrecisionUnsupportedError } from "./src/train/precision.ts";
export { type EvaluationResult, Evaluator } from "./src/train/evaluator.ts";
export {
  createSchedule,
  parsePiecewisePoints,
  type Schedule,
  type ScheduleConfig,
} from "./src/train/schedule.ts";
export { WeightAverage } from "./src/train/weight_average.ts";
export {
  Optimizer,
  type OptimizerConfig,
  OptimizerConfigError,
  resolveOptimizerConfig,
} from "./src/train/optimizer.ts";
export { BatchSource } from "./src/train/batch_source.ts";

// Data.
export { type CifarDataset, type CifarSplit, DataError } from "./src/data/cifar.ts";
export { CIFAR10_MEAN, CIFAR10_STD, epochOrder, GpuDataset } from "./src/data/gpu_dataset.ts";
export { loadCifar10 } from "./src/data/load.ts";
export { decodePngToCifar } from "./src/data/image.ts";

// Files.
export { CheckpointError, decodeSafetensors, encodeSafetensors } from "./src/io/safetensors.ts";
export { writeFileAtomic } from "./src/io/atomic.ts";
