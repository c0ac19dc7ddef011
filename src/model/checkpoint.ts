/**
 * Checkpoints as safetensors with PyTorch's state-dict names and layouts (conv weights OIHW,
 * num_batches_tracked int64), so weights move between PyTorch and this project. A training
 * checkpoint also holds the optimizer state (`optimizer.<name>` tensors over the flat parameter
 * arena) and a metadata block validated by zod (its tree-shakable zod/mini build).
 */
import { elementCount } from "../util/shape.ts";
import * as z from "zod/mini";
import { en } from "zod/locales";
import {
  CheckpointError,
  decodeSafetensors,
  encodeSafetensors,
  NotSafetensorsError,
  type Safetensors,
  type Tensor,
} from "../io/safetensors.ts";
import { KERNEL_FAMILIES } from "../ops/policy.ts";
import { modelConfigSchema } from "./config.ts";
import { ohwiToOihw, oihwToOhwi } from "./layout.ts";
import type { ParameterSpec, StateSpec } from "./parameters.ts";
import type { ModelWeights } from "./weights.ts";
import { type LossScaleState, lossScaleStateSchema } from "../train/loss_scale.ts";

/** An optimizer's state, for checkpoints. */
export interface OptimizerState {
  /** Steps taken: torch's state["step"]. */
  step: number;
  /** Each state buffer under its torch.optim state key, in the arena's layout. */
  buffers: Record<string, Float32Array>;
  /** With loss scaling (f16 training): the scale and step counts (src/train/loss_scale.ts). */
  lossScale?: LossScaleState;
}

export const CHECKPOINT_FORMAT = "webgpu-resnet-checkpoint/1";

export const checkpointMetadataSchema = z.object({
  format: z.literal(CHECKPOINT_FORMAT),
  model: modelConfigSchema,
  /** Epochs completed. */
  epoch: z.number().check(z.int(), z.minimum(0)),
  /** Optimizer steps taken. */
  step: z.number().check(z.int(), z.minimum(0)),
  seed: z.number().check(z.int()),
  /** Whatever else the trainer needs to resume exactly (flags, data order, metrics so far). */
  training: z.optional(z.record(z.string(), z.unknown())),
  /** The kernel variants the run computed with (src/ops/policy.ts), to resume with the same. */
  kernels: z.optional(z.object({
    family: z.enum(KERNEL_FAMILIES),
    choices: z.record(z.string(), z.string()),
  })),
});
export type CheckpointMetadata = z.infer<typeof checkpointMetadataSchema>;

const OPTIMIZER_PREFIX = "optimizer.";
/** The safetensors header key of the optimizer's loss-scale state (f16 training). */
const LOSS_SCALE_KEY = "loss_scale";

function specOrder(weights: ModelWeights) {
  // PyTorch's state_dict order: per module, its parameters then its buffers.
  const parameters = new Map(weights.parameterLayout.entries.map(({ spec }) => [spec.name, spec]));
  const state = new Map(weights.stateLayout.entries.map(({ spec }) => [spec.name, spec]));
  const order: ({ kind: "parameter"; spec: ParameterSpec } | { kind: "state"; spec: StateSpec } | {
    kind: "counter";
    name: string;
    index: number;
  })[] = [];
  for (const spec of parameters.values()) {
    order.push({ kind: "parameter", spec });
    const bn = spec.role === "bn_bias" ? spec.name.slice(0, -".bias".length) : undefined;
    if (bn) {
      order.push({ kind: "state", spec: state.get(`${bn}.running_mean`)! });
      order.push({ kind: "state", spec: state.get(`${bn}.running_var`)! });
      order.push({
        kind: "counter",
        name: `${bn}.num_batches_tracked`,
        index: weights.batchNormNames.indexOf(bn),
      });
    }
  }
  return order;
}

function toTorch(spec: ParameterSpec | StateSpec, values: Float32Array): Tensor {
  const data = spec.role === "conv_weight" ? ohwiToOihw(values, spec.shape) : values;
  return { dtype: "F32", shape: spec.torchShape, data };
}

/** The model's state dict, as PyTorch's `model.state_dict()` would hold it. */
export async function modelStateDict(weights: ModelWeights): Promise<Map<string, Tensor>> {
  const parameters = await weights.downloadParameters();
  const { values: state, numBatchesTracked } = await weights.downloadState();
  const tensors = new Map<string, Tensor>();
  for (const entry of specOrder(weights)) {
    if (entry.kind === "parameter") {
      tensors.set(entry.spec.name, toTorch(entry.spec, parameters.get(entry.spec.name)!));
    } else if (entry.kind === "state") {
      tensors.set(entry.spec.name, toTorch(entry.spec, state.get(entry.spec.name)!));
    } else {
      tensors.set(entry.name, {
        dtype: "I64",
        shape: [],
        data: BigInt64Array.of(BigInt(numBatchesTracked[entry.index])),
      });
    }
  }
  return tensors;
}

function expectTensor(
  tensors: Map<string, Tensor>,
  name: string,
  shape: readonly number[],
  source: string,
): Tensor {
  const tensor = tensors.get(name);
  if (!tensor) {
    throw new CheckpointError(
      source,
      `has no tensor ${name}: it was saved from another model (check the model and width flags)`,
    );
  }
  if (tensor.shape.length !== shape.length || tensor.shape.some((size, i) => size !== shape[i])) {
    throw new CheckpointError(
      source,
      `${name} has shape [${tensor.shape}] but the model expects [${shape}]: it was saved from another model (check the model and width flags)`,
    );
  }
  return tensor;
}

function floats(tensor: Tensor, name: string, source: string): Float32Array {
  if (tensor.dtype === "F32") return tensor.data;
  if (tensor.dtype === "F64") return Float32Array.from(tensor.data);
  throw new CheckpointError(source, `${name} is ${tensor.dtype}, expected F32`);
}

/**
 * Loads a state dict (PyTorch names and layouts) into the model. Every entry must be present with
 * the model's shape; the first mismatch is named. Extra non-optimizer entries are refused too.
 */
export function loadModelStateDict(
  weights: ModelWeights,
  tensors: Map<string, Tensor>,
  source: string,
): void {
  const parameters = new Map<string, Float32Array>();
  const state = new Map<string, Float32Array>();
  const counters = new Uint32Array(weights.batchNormNames.length);
  const expected = new Set<string>();
  for (const entry of specOrder(weights)) {
    if (entry.kind === "counter") {
      expected.add(entry.name);
      const tensor = tensors.get(entry.name);
      // Checkpoints from before PyTorch 0.4.1 have no counters; a missing one starts at zero.
      if (!tensor) continue;
      if (tensor.dtype !== "I64" || elementCount(tensor.shape) !== 1) {
        throw new CheckpointError(source, `${entry.name} must be a single int64`);
      }
      counters[entry.index] = Number(tensor.data[0]);
      continue;
    }
    const { spec } = entry;
    expected.add(spec.name);
    const values = floats(
      expectTensor(tensors, spec.name, spec.torchShape, source),
      spec.name,
      source,
    );
    const projectValues = spec.role === "conv_weight"
      ? oihwToOhwi(values, spec.torchShape)
      : values;
    (entry.kind === "parameter" ? parameters : state).set(spec.name, projectValues);
  }
  for (const name of tensors.keys()) {
    if (!expected.has(name) && !name.startsWith(OPTIMIZER_PREFIX)) {
      throw new CheckpointError(
        source,
        `has a tensor ${name} this model does not have: it was saved from another model (check the model and width flags)`,
      );
    }
  }
  weights.uploadParameters(parameters);
  weights.uploadState(state, counters);
}

/**
 * Refuses a tensor holding NaN or an infinity, naming it: such weights give NaN logits, which
 * evaluate silently as a loss of NaN with every image put in the first class, and a run resumed
 * from them (or from such optimizer state) stays NaN.
 */
function checkFinite(tensors: Map<string, Tensor>, source: string): void {
  for (const [name, tensor] of tensors) {
    if (tensor.dtype !== "F32" && tensor.dtype !== "F64") continue;
    const { data } = tensor;
    const first = data.findIndex((value) => !Number.isFinite(value));
    if (first === -1) continue;
    let count = 0;
    for (const value of data) if (!Number.isFinite(value)) count++;
    throw new CheckpointError(
      source,
      `${name} holds ${data[first]} at element ${first} (${count} of its ${data.length} values ` +
        "are NaN or infinite): no usable model (saved from a run that diverged, or damaged); use " +
        "another checkpoint",
    );
  }
}

export interface Checkpoint {
  tensors: Map<string, Tensor>;
  metadata?: CheckpointMetadata;
  optimizer?: OptimizerState;
}

/** Bytes of a checkpoint: the model's state dict, and optionally optimizer state and metadata. */
export async function encodeCheckpoint(
  weights: ModelWeights,
  metadata?: CheckpointMetadata,
  optimizer?: OptimizerState,
): Promise<Uint8Array> {
  const tensors = await modelStateDict(weights);
  if (optimizer) {
    tensors.set(`${OPTIMIZER_PREFIX}step`, {
      dtype: "I64",
      shape: [],
      data: BigInt64Array.of(BigInt(optimizer.step)),
    });
    for (const [name, values] of Object.entries(optimizer.buffers)) {
      tensors.set(`${OPTIMIZER_PREFIX}${name}`, {
        dtype: "F32",
        shape: [values.length],
        data: values,
      });
    }
  }
  const header: Record<string, string> = {};
  if (metadata) header.checkpoint = JSON.stringify(metadata);
  // A JSON number holds an f32 scale exactly, so a resumed run continues bit for bit.
  if (optimizer?.lossScale) header[LOSS_SCALE_KEY] = JSON.stringify(optimizer.lossScale);
  return encodeSafetensors(tensors, header);
}

/**
 * zod's English messages. zod/mini installs no locale (classic zod installs this one when it builds
 * its first schema), so the messages are asked for here: the same in the page as in the CLI.
 */
const englishMessages = en().localeError;

/** A JSON entry of the safetensors header, validated by `schema`; `what` names it in errors. */
function parseHeaderJson<T>(
  text: string,
  schema: z.ZodMiniType<T>,
  source: string,
  what: string,
): T {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new CheckpointError(source, `its ${what} is not JSON`);
  }
  const parsed = schema.safeParse(json, { error: englishMessages });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new CheckpointError(
      source,
      `bad ${what} at ${issue.path.join(".") || "top level"}: ${issue.message}`,
    );
  }
  return parsed.data;
}

/** What a checkpoint is, for the message about a file that is none. */
const CHECKPOINT_EXPECTED = "give a .safetensors checkpoint (a run's last.safetensors or " +
  "best.safetensors, or a PyTorch state dict saved with safetensors)";

/**
 * Parses a checkpoint file's bytes. Every floating-point tensor must be finite; model tensors'
 * names and shapes are checked when loaded into a model.
 */
export function decodeCheckpoint(bytes: Uint8Array, source: string): Checkpoint {
  let file: Safetensors;
  try {
    file = decodeSafetensors(bytes, source);
  } catch (error) {
    if (!(error instanceof NotSafetensorsError)) throw error;
    throw new CheckpointError(source, `not a checkpoint: ${error.problem}; ${CHECKPOINT_EXPECTED}`);
  }
  const { tensors, metadata: raw } = file;
  checkFinite(tensors, source);
  const metadata = raw.checkpoint === undefined
    ? undefined
    : parseHeaderJson(raw.checkpoint, checkpointMetadataSchema, source, "checkpoint metadata");
  const step = tensors.get(`${OPTIMIZER_PREFIX}step`);
  let optimizer: OptimizerState | undefined;
  if (step) {
    const buffers: Record<string, Float32Array> = {};
    for (const [name, tensor] of tensors) {
      if (name.startsWith(OPTIMIZER_PREFIX) && name !== `${OPTIMIZER_PREFIX}step`) {
        buffers[name.slice(OPTIMIZER_PREFIX.length)] = floats(tensor, name, source);
      }
    }
    optimizer = { step: Number(step.data[0]), buffers };
    if (raw[LOSS_SCALE_KEY] !== undefined) {
      optimizer.lossScale = parseHeaderJson(
        raw[LOSS_SCALE_KEY],
        lossScaleStateSchema,
        source,
        "loss-scale state",
      );
    }
  }
  return { tensors, metadata, optimizer };
}
