/// <reference lib="dom" />
/**
 * A training run as the page shows it: the TrainingEvents of src/train/loop.ts drawn as a
 * progress bar, figures (epoch, step, images/s, ms per step, losses) and two live charts. The
 * training loss and accuracy are plotted at every readback of the metrics (every few steps), each
 * point the mean over the steps since the previous one; the test metrics once per epoch.
 */
import type { EvaluationProgress, EvaluationResult } from "../src/train/evaluator.ts";
import type { EpochRecord } from "../src/train/history.ts";
import type { TrainingEvents } from "../src/train/loop.ts";
import type { EpochProgress } from "../src/train/trainer.ts";
import type { ModelWeights } from "../src/model/weights.ts";
import { formatDuration, formatRate } from "../src/util/format.ts";
import { byId } from "./dom.ts";
import { LiveChart } from "./live_chart.ts";

export interface RunShape {
  epochs: number;
  batchSize: number;
}

const percent = (value: number) => `${Math.round(value * 100)}%`;

export class RunView {
  readonly #status = byId("run-status");
  readonly #progress = byId("run-progress", HTMLProgressElement);
  readonly #log = byId("run-log");
  readonly #stats = {
    epoch: byId("stat-epoch"),
    step: byId("stat-step"),
    rate: byId("stat-rate"),
    stepMs: byId("stat-step-ms"),
    loss: byId("stat-loss"),
    accuracy: byId("stat-accuracy"),
  };
  readonly #lossChart = new LiveChart(byId("loss-chart"), {
    title: "Loss",
    format: (value) => value.toFixed(value >= 10 ? 0 : 1),
  });
  readonly #accuracyChart = new LiveChart(byId("accuracy-chart"), {
    title: "Accuracy",
    format: percent,
    yRange: [0, 1],
  });
  #shape: RunShape = { epochs: 1, batchSize: 1 };
  /** The latest readback seen: its epoch, steps done and metric sums. */
  #read = { epoch: -1, done: 0, lossSum: 0, correct: 0, samples: 0, at: 0 };
  #compileTimer?: ReturnType<typeof setInterval>;

  begin(shape: RunShape): void {
    this.#shape = shape;
    this.#read = { epoch: -1, done: 0, lossSum: 0, correct: 0, samples: 0, at: 0 };
    this.#log.textContent = "";
    this.#lossChart.reset(shape.epochs);
    this.#accuracyChart.reset(shape.epochs);
    for (const stat of Object.values(this.#stats)) stat.textContent = "–";
    this.#progress.value = 0;
    this.#progress.max = shape.epochs;
  }

  /** The readbacks of the metrics restart their timing after a pause. */
  resumed(): void {
    this.#read.at = performance.now();
  }

  status(text: string): void {
    this.#status.textContent = text;
  }

  /** The events to pass to runTraining; `epochEnd` is the caller's. */
  events(epochEnd: TrainingEvents["epochEnd"]): TrainingEvents {
    return {
      log: (line) => this.#log.append(line + "\n"),
      compiling: (what) => this.#compiling(what),
      step: (epoch, progress) => this.#step(epoch, progress),
      evaluating: (epoch, progress) => this.#evaluating(epoch, progress),
      epochEnd: async (record: EpochRecord, test: EvaluationResult, weights: ModelWeights) => {
        this.#epochEnd(record);
        await epochEnd?.(record, test, weights);
      },
    };
  }

  #compiling(what: string) {
    const started = performance.now();
    const tick = () =>
      this.status(
        `Compiling the kernels of ${what}… ${formatDuration((performance.now() - started) / 1000)}`,
      );
    tick();
    this.#compileTimer = setInterval(tick, 1000);
    return {
      done: (seconds: number) => {
        clearInterval(this.#compileTimer);
        this.status(`Kernels compiled in ${seconds.toFixed(1)} s; training…`);
      },
    };
  }

  #step(epoch: number, progress: EpochProgress): void {
    const { epochs, batchSize } = this.#shape;
    const { steps } = progress;
    this.#progress.value = epoch + progress.submitted / steps;
    this.#stats.epoch.textContent = `${epoch + 1} / ${epochs}`;
    this.#stats.step.textContent = `${progress.submitted} / ${steps}`;
    const metrics = progress.metrics;
    const now = performance.now();
    if (epoch !== this.#read.epoch) {
      this.#read = { epoch, done: 0, lossSum: 0, correct: 0, samples: 0, at: now };
    }
    if (!metrics || progress.done <= this.#read.done) return;
    const stepsSince = progress.done - this.#read.done;
    const samples = metrics.samples - this.#read.samples;
    const loss = (metrics.lossSum - this.#read.lossSum) / samples;
    const accuracy = (metrics.correct - this.#read.correct) / samples;
    const milliseconds = (now - this.#read.at) / stepsSince;
    this.#read = { epoch, done: progress.done, ...metrics, at: now };
    const x = epoch + progress.done / steps;
    this.#lossChart.add("train", [x, loss]);
    this.#accuracyChart.add("train", [x, accuracy]);
    this.#stats.loss.textContent = loss.toFixed(4);
    // The first readback's interval holds the wait for the first step (plans warming up).
    if (progress.done > 1) {
      this.#stats.stepMs.textContent = milliseconds.toFixed(0);
      this.#stats.rate.textContent = formatRate((batchSize * 1000) / milliseconds, "img");
    }
    this.status(`Training epoch ${epoch + 1} of ${epochs}…`);
  }

  #evaluating(epoch: number, progress: EvaluationProgress): void {
    this.status(
      `Evaluating epoch ${epoch + 1} on the test images: batch ${progress.submitted} of ` +
        `${progress.batches}…`,
    );
  }

  #epochEnd(record: EpochRecord): void {
    this.#progress.value = record.epoch;
    this.#lossChart.add("test", [record.epoch, record.testLoss]);
    this.#accuracyChart.add("test", [record.epoch, record.testAccuracy]);
    this.#stats.accuracy.textContent = `${(record.testAccuracy * 100).toFixed(2)}%`;
    this.#stats.rate.textContent = formatRate(record.imagesPerSecond, "img");
    this.#stats.stepMs.textContent = (this.#shape.batchSize * 1000 / record.imagesPerSecond)
      .toFixed(0);
  }
}
