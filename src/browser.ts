/**
 * The browser build's entry (`deno task build` bundles it to dist/webgpu-resnet.js): the GPU
 * runtime, every kernel and op, the kernel policy, the model, programs and static plans, and the
 * training run itself (trainer, evaluator, predictor, the epoch loop with an in-memory store, the
 * training settings, checkpoints, the data set from an archive in memory), without the parts that
 * use Deno's file system, processes or terminal (loading from disk, run folders, the CLIs).
 */
export { requestGpu } from "./gpu/device.ts";
export { readBuffer, uploadBuffer } from "./gpu/buffer.ts";
export { createTensor, tensorDesc, tensorFromData } from "./gpu/tensor.ts";
export { kernelCall } from "./gpu/kernel_call.ts";
export { submitCommands } from "./gpu/dispatch.ts";
export { kernels } from "./shaders.ts";
export * from "./ops/index.ts";
export { buildArchitecture } from "./model/architecture.ts";
export { modelConfig, modelNames, presetNames, resnetConfig } from "./model/config.ts";
export { ModelWeights } from "./model/weights.ts";
export { Program } from "./plan/program.ts";
export { allocate } from "./plan/allocator.ts";
export { materialize, submitCalls } from "./plan/materialize.ts";
export { StepPlan } from "./plan/plan.ts";
export { decodeSafetensors, encodeSafetensors } from "./io/safetensors.ts";
export {
  decodeCheckpoint,
  encodeCheckpoint,
  loadModelStateDict,
  modelStateDict,
} from "./model/checkpoint.ts";
export { cifarFromArchive, type Gunzip } from "./data/archive.ts";
export { gunzipStream } from "./data/gzip_stream.ts";
export {
  type CifarDataset,
  type CifarSplit,
  DEFAULT_CLASS_NAMES,
  IMAGE_BYTES,
} from "./data/cifar.ts";
export { type EpochProgress, Trainer, type TrainerOptions } from "./train/trainer.ts";
export { type EvaluationProgress, type EvaluationResult, Evaluator } from "./train/evaluator.ts";
export { type ClassProbability, Predictor, softmax, topClasses } from "./train/predict.ts";
export { createSchedule, type Schedule } from "./train/schedule.ts";
export {
  epochLine,
  type ResumePoint,
  runTraining,
  type TrainingControl,
  type TrainingEvents,
  type TrainingRunOptions,
} from "./train/loop.ts";
export { MemoryRunStore, type RunStore } from "./train/run_store.ts";
export * from "./train/settings.ts";
export { bestEpoch, type EpochRecord, epochRecordSchema } from "./train/history.ts";
export { renderTrainingChart } from "./train/chart.ts";
