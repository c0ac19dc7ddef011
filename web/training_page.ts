/// <reference lib="dom" />
/**
 * The page once WebGPU is there: the data, the settings form, the run's buttons (start, pause or
 * resume, stop) around runTraining (src/train/loop.ts, the CLI's loop), and what each epoch
 * shows (charts, predictions, confusion matrix, checkpoints to save).
 */
import type { Gpu } from "../src/gpu/device.ts";
import { describeModel } from "../src/cli/describe.ts";
import { DEFAULT_DATA_FOLDER } from "../src/data/cifar.ts";
import { modelConfig } from "../src/model/config.ts";
import { KernelPolicy } from "../src/ops/policy.ts";
import { bestEpoch } from "../src/train/history.ts";
import { runTraining } from "../src/train/loop.ts";
import { MemoryRunStore } from "../src/train/run_store.ts";
import {
  evalViews,
  firstImages,
  recipeFlags,
  trainingPlan,
  type TrainRecipe,
  trainSettingsFlags,
  unusedSettings,
} from "../src/train/settings.ts";
import { DataPanel, type LoadedData } from "./data_panel.ts";
import { byId, errorMessage, showMessage } from "./dom.ts";
import { ModelPanel } from "./model_panel.ts";
import { PauseGate } from "./pause_gate.ts";
import { evaluationBatch } from "./predict_images.ts";
import { RunView } from "./run_view.ts";
import { type FieldLabel, SettingsForm } from "./settings_form.ts";
import { TestImagesPanel } from "./test_images_panel.ts";

/** Every setting of a run started from the page: the recipe, and how it is evaluated. */
const RUN_FLAGS = { ...recipeFlags, ...trainSettingsFlags };
type RunFlags = typeof RUN_FLAGS;

/** The fields in view: the model, the batches, the optimizer and how many images. */
const MAIN_FIELDS: FieldLabel<RunFlags>[] = [
  { key: "model", label: "model" },
  { key: "width", label: "width" },
  { key: "batchSize", label: "batch size" },
  { key: "epochs", label: "epochs" },
  { key: "optimizer", label: "optimizer" },
  { key: "lr", label: "learning rate" },
  { key: "limit", label: "training images" },
  { key: "testLimit", label: "test images" },
];
/** The rest of the recipe, folded away under "More settings". */
const MORE_FIELDS: FieldLabel<RunFlags>[] = [
  { key: "schedule", label: "schedule" },
  { key: "warmup", label: "warm-up fraction" },
  { key: "momentum", label: "momentum (sgd)" },
  { key: "nesterov", label: "Nesterov momentum (sgd)" },
  { key: "weightDecay", label: "weight decay" },
  { key: "betas", label: "betas (adam, adamw)" },
  { key: "seed", label: "seed" },
  { key: "augment", label: "augment (crop and flip)" },
  { key: "precision", label: "precision" },
  { key: "evalBatchSize", label: "evaluation batch" },
];

/** A run under way: what the buttons act on. */
interface ActiveRun {
  gate: PauseGate;
  abort: AbortController;
}

export class TrainingPage {
  readonly #gpu: Gpu;
  readonly #form = new SettingsForm(RUN_FLAGS);
  readonly #view = new RunView();
  readonly #data: DataPanel;
  readonly #testImages: TestImagesPanel;
  readonly #model: ModelPanel;
  readonly #settingsError = byId("settings-error");
  readonly #start = byId("start", HTMLButtonElement);
  readonly #pause = byId("pause", HTMLButtonElement);
  readonly #stop = byId("stop", HTMLButtonElement);
  #loaded?: LoadedData;
  #run?: ActiveRun;

  constructor(gpu: Gpu) {
    this.#gpu = gpu;
    this.#form.addFields(byId("main-settings"), MAIN_FIELDS);
    this.#form.addFields(byId("more-settings"), MORE_FIELDS);
    // unusedSettings reads the optimizer and the schedule only.
    const markUnused = () =>
      this.#form.setUnused(unusedSettings({
        optimizer: this.#form.raw("optimizer"),
        schedule: this.#form.raw("schedule"),
      } as unknown as TrainRecipe));
    this.#form.onChange(markUnused);
    markUnused();
    this.#data = new DataPanel((data) => {
      this.#loaded = data;
      this.#start.disabled = this.#run !== undefined;
    });
    this.#testImages = new TestImagesPanel(gpu);
    this.#model = new ModelPanel({
      gpu,
      testImages: this.#testImages,
      testSet: () => {
        if (!this.#loaded) return undefined;
        const { testLimit } = this.#form.values();
        const split = firstImages(this.#loaded.dataset.test, testLimit, "--test-limit", "test");
        return { split, classNames: this.#loaded.dataset.classNames };
      },
      evalBatchSize: () => this.#form.values().evalBatchSize,
      configFromSettings: () => {
        const { model, width } = this.#form.values();
        return modelConfig(model, width);
      },
      busy: () => this.#run !== undefined,
    });
    byId("settings-form", HTMLFormElement).addEventListener("submit", (event) => {
      event.preventDefault();
      this.#train();
    });
    this.#pause.addEventListener("click", () => this.#togglePause());
    this.#stop.addEventListener("click", () => {
      this.#run?.abort.abort(new DOMException("stopped from the page", "AbortError"));
      this.#view.status("Stopping after the step under way…");
      this.#stop.disabled = true;
      this.#pause.disabled = true;
    });
  }

  loadServerData(): Promise<void> {
    return this.#data.loadFromServer();
  }

  /** Starts a run with the form's settings on the loaded data; reports how it ended. */
  async #train(): Promise<void> {
    showMessage(this.#settingsError, undefined);
    const loaded = this.#loaded;
    if (!loaded || this.#run) return;
    const run: ActiveRun = { gate: new PauseGate(), abort: new AbortController() };
    try {
      const { evalBatchSize, testLimit, ...recipe } = this.#form.values();
      const { dataset, source } = loaded;
      const trainSet = firstImages(dataset.train, recipe.limit, "--limit", "training");
      const testSet = firstImages(dataset.test, testLimit, "--test-limit", "test");
      const plan = trainingPlan(recipe, trainSet.count);
      const model = modelConfig(recipe.model, recipe.width);
      const store = new MemoryRunStore("this page");
      const batch = evaluationBatch(evalBatchSize, testSet.count);
      this.#running(run);
      this.#view.begin({ epochs: recipe.epochs, batchSize: recipe.batchSize });
      const history = await runTraining({
        gpu: this.#gpu,
        model,
        modelName: describeModel(model),
        trainSet,
        testSet,
        dataLocation: source,
        epochs: recipe.epochs,
        trainer: { ...plan, policy: KernelPolicy.forAdapter(this.#gpu) },
        evalBatchSize,
        evalViews: evalViews(recipe),
        store,
        // The CLI resumes with its data folder (or --data on the resume line).
        settings: { recipe, data: DEFAULT_DATA_FOLDER, evalBatchSize, testLimit },
        events: this.#view.events(async (record, test, weights) => {
          const origin = `epoch ${record.epoch}`;
          this.#testImages.showConfusion(test, dataset.classNames, origin);
          await this.#testImages.showPredictions(
            weights,
            testSet,
            dataset.classNames,
            batch,
            origin,
          );
          this.#model.trained(store, `epoch ${record.epoch} of this page's run`);
        }),
        control: { signal: run.abort.signal, whenRunning: () => run.gate.whenRunning() },
      });
      const best = bestEpoch(history);
      const ending = run.abort.signal.aborted ? "Stopped" : "Finished";
      this.#view.status(
        best
          ? `${ending}: best test accuracy ${(best.testAccuracy * 100).toFixed(2)}% after ` +
            `epoch ${best.epoch} of ${recipe.epochs}.`
          : `${ending} before the first epoch ended: nothing was kept.`,
      );
    } catch (error) {
      this.#view.status("Not running.");
      showMessage(this.#settingsError, errorMessage(error));
      this.#form.markNamedIn(errorMessage(error));
    } finally {
      this.#idle();
    }
  }

  #togglePause(): void {
    const run = this.#run;
    if (!run) return;
    if (run.gate.paused) {
      run.gate.resume();
      this.#view.resumed();
      this.#view.status("Resumed.");
      this.#pause.textContent = "Pause";
    } else {
      run.gate.pause();
      this.#view.status("Paused after the step under way: resume to go on.");
      this.#pause.textContent = "Resume";
    }
  }

  #running(run: ActiveRun): void {
    this.#run = run;
    this.#form.lock(true);
    this.#start.disabled = true;
    this.#pause.disabled = false;
    this.#pause.textContent = "Pause";
    this.#stop.disabled = false;
  }

  #idle(): void {
    this.#run = undefined;
    this.#form.lock(false);
    this.#start.disabled = this.#loaded === undefined;
    this.#pause.disabled = true;
    this.#pause.textContent = "Pause";
    this.#stop.disabled = true;
  }
}
