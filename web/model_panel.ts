/// <reference lib="dom" />
/**
 * The model panel: the trained model's checkpoints to save (safetensors, the CLI's format, which
 * `deno task eval` and PyTorch load), a checkpoint file to load and evaluate on the page's test
 * images, and an image of the person's to classify with the current model.
 */
import { type CifarSplit, DEFAULT_CLASS_NAMES } from "../src/data/cifar.ts";
import type { Gpu } from "../src/gpu/device.ts";
import { type Checkpoint, decodeCheckpoint, loadModelStateDict } from "../src/model/checkpoint.ts";
import type { ModelConfig } from "../src/model/config.ts";
import { ModelWeights } from "../src/model/weights.ts";
import { KernelPolicy } from "../src/ops/policy.ts";
import { Evaluator } from "../src/train/evaluator.ts";
import { bestEpoch } from "../src/train/history.ts";
import type { MemoryRunStore } from "../src/train/run_store.ts";
import { describeModel } from "../src/cli/describe.ts";
import { imageToPlanes } from "./cifar_image.ts";
import { byId, errorMessage, showMessage } from "./dom.ts";
import { evaluationBatch, predictLogits } from "./predict_images.ts";
import { predictionCell } from "./prediction_grid.ts";
import type { TestImagesPanel } from "./test_images_panel.ts";

/** The model the page classifies with: the latest trained epoch, or a loaded checkpoint. */
interface CurrentModel {
  checkpoint: Checkpoint;
  config: ModelConfig;
  /** How the page names it, e.g. "epoch 3 of this page's run". */
  name: string;
}

/** What the panel needs from the rest of the page when it evaluates or classifies. */
export interface ModelPanelContext {
  gpu: Gpu;
  testImages: TestImagesPanel;
  /** The test split as the settings cut it, and its class names; undefined before any data. */
  testSet(): { split: CifarSplit; classNames: readonly string[] } | undefined;
  /** The evaluation batch size of the settings. */
  evalBatchSize(): number;
  /** The model the settings describe: what a checkpoint without metadata is taken to be. */
  configFromSettings(): ModelConfig;
  /** A checkpoint's evaluation runs only while no training is under way. */
  busy(): boolean;
}

export class ModelPanel {
  readonly #status = byId("model-status");
  readonly #error = byId("model-error");
  readonly #saveLast = byId("save-last", HTMLAnchorElement);
  readonly #saveBest = byId("save-best", HTMLAnchorElement);
  readonly #checkpointFile = byId("checkpoint-file", HTMLInputElement);
  readonly #classifyFile = byId("classify-file", HTMLInputElement);
  readonly #classifyResult = byId("classify-result");
  readonly #context: ModelPanelContext;
  #current?: CurrentModel;

  constructor(context: ModelPanelContext) {
    this.#context = context;
    this.#checkpointFile.addEventListener("change", () => {
      const file = this.#checkpointFile.files?.[0];
      if (file) this.#guard(() => this.loadCheckpoint(file));
    });
    this.#classifyFile.addEventListener("change", () => {
      const file = this.#classifyFile.files?.[0];
      if (file) this.#guard(() => this.classify(file));
    });
  }

  /** After a trained epoch: its checkpoints become the ones to save, and the current model. */
  trained(store: MemoryRunStore, runName: string): void {
    const epoch = store.history.at(-1)!.epoch;
    link(this.#saveLast, store.last, `last.safetensors (epoch ${epoch})`);
    link(this.#saveBest, store.best, `best.safetensors (epoch ${bestEpoch(store.history)!.epoch})`);
    const checkpoint = decodeCheckpoint(store.last!, runName);
    this.#current = { checkpoint, config: checkpoint.metadata!.model, name: `epoch ${epoch}` };
    this.#status.textContent = `Trained: ${describeModel(checkpoint.metadata!.model)}, epoch ` +
      `${epoch}. Save a checkpoint for deno task eval, predict, train --resume or PyTorch.`;
  }

  /** Reads a checkpoint (the CLI's, or a PyTorch state dict) and evaluates it. */
  async loadCheckpoint(file: File): Promise<void> {
    const { gpu, testImages } = this.#context;
    const data = this.#context.testSet();
    if (!data) {
      throw new Error("load the data first: the checkpoint is evaluated on its test images");
    }
    if (this.#context.busy()) {
      throw new Error("a training run is under way: stop it first, then load the checkpoint");
    }
    const checkpoint = decodeCheckpoint(new Uint8Array(await file.arrayBuffer()), file.name);
    const config = checkpoint.metadata?.model ?? this.#context.configFromSettings();
    const origin = checkpoint.metadata
      ? `after epoch ${checkpoint.metadata.epoch}`
      : "a state dict without metadata, taken as the model of the settings";
    this.#status.textContent = `Evaluating ${file.name} (${describeModel(config)}, ${origin})…`;
    const weights = new ModelWeights(gpu, config);
    try {
      loadModelStateDict(weights, checkpoint.tensors, file.name);
      const batch = this.#context.evalBatchSize();
      const policy = KernelPolicy.forAdapter(gpu);
      const evaluator = await Evaluator.create(gpu, weights, data.split, batch, policy);
      let result;
      try {
        result = await evaluator.evaluate();
      } finally {
        evaluator.destroy();
      }
      testImages.showConfusion(result, data.classNames, file.name);
      await testImages.showPredictions(
        weights,
        data.split,
        data.classNames,
        evaluationBatch(batch, data.split.count),
        file.name,
      );
      this.#current = { checkpoint, config, name: file.name };
      this.#status.textContent = `${file.name} (${describeModel(config)}, ${origin}): test ` +
        `accuracy ${(result.accuracy * 100).toFixed(2)}% on ${result.count} test images.`;
      this.#status.dataset.accuracy = String(result.accuracy);
    } finally {
      weights.destroy();
    }
  }

  /** Classifies the picked image with the current model. */
  async classify(file: File): Promise<void> {
    const { gpu } = this.#context;
    const model = this.#current;
    if (!model) throw new Error("no model yet: train one, or load a checkpoint, first");
    const { planes, canvas } = await imageToPlanes(file);
    const weights = new ModelWeights(gpu, model.config);
    try {
      loadModelStateDict(weights, model.checkpoint.tensors, model.name);
      const data = this.#context.testSet();
      // In the evaluation's batch size, which reuses its compiled pipelines.
      const batch = data ? evaluationBatch(this.#context.evalBatchSize(), data.split.count) : 1;
      const [logits] = await predictLogits(
        gpu,
        weights,
        [planes],
        KernelPolicy.forAdapter(gpu),
        batch,
      );
      const classNames = data?.classNames ?? DEFAULT_CLASS_NAMES;
      this.#classifyResult.replaceChildren(
        predictionCell({ id: file.name, canvas, logits }, classNames),
      );
    } finally {
      weights.destroy();
    }
  }

  /** Runs `action`, showing its error (one line) in the panel. */
  async #guard(action: () => Promise<void>): Promise<void> {
    showMessage(this.#error, undefined);
    try {
      await action();
    } catch (error) {
      showMessage(this.#error, errorMessage(error));
    }
  }
}

/** Points `anchor` at `bytes` as a download, or disables it while there are none. */
function link(anchor: HTMLAnchorElement, bytes: Uint8Array | undefined, label: string): void {
  if (anchor.href) URL.revokeObjectURL(anchor.href);
  if (!bytes) {
    anchor.removeAttribute("href");
    anchor.setAttribute("aria-disabled", "true");
    return;
  }
  anchor.href = URL.createObjectURL(
    new Blob([bytes as Uint8Array<ArrayBuffer>], { type: "application/octet-stream" }),
  );
  anchor.setAttribute("aria-disabled", "false");
  anchor.textContent = `Save ${label}`;
}
