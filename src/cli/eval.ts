/**
 * `deno task eval --checkpoint FILE`: a checkpoint's test-set loss and accuracy, and the confusion
 * matrix with each class's accuracy.
 */
import { requestGpu } from "../gpu/deno_device.ts";
import { kernelPolicyFor } from "../plan/autotune.ts";
import { type EvaluationResult, Evaluator } from "../train/evaluator.ts";
import { compilingKernels, type ProgressOutput } from "../train/progress.ts";
import { checkPrecision } from "../train/precision.ts";
import { evalViews } from "../train/settings.ts";
import { loadWeightAverage } from "../train/weight_average.ts";
import { loadCheckpointModel } from "./checkpoint.ts";
import { describeAdapter, describeModel } from "./describe.ts";
import { evaluateWithProgress, STDERR } from "./terminal.ts";
import { loadData } from "./data.ts";
import { evalCommand, helpText, parseCommandLine } from "./flags.ts";
import { UsageError } from "../errors.ts";
import { runCli } from "./run.ts";

/** Columns of the confusion matrix are headed by this many letters of each class name. */
const COLUMN_LETTERS = 5;

/**
 * `progressOutput` is where the progress bar and the "compiling kernels" line are drawn (default
 * stderr), only when it is a terminal.
 */
export async function runEval(
  args: string[],
  log = console.log,
  progressOutput: ProgressOutput = STDERR,
): Promise<void> {
  const line = parseCommandLine(evalCommand, args);
  if (line.help) return log(helpText(evalCommand));
  const { values, given } = line;
  if (values.checkpoint === undefined) {
    throw new UsageError("eval needs --checkpoint FILE: the checkpoint to evaluate (see --help)");
  }
  const gpu = await requestGpu({ largestBuffers: true });
  checkPrecision(gpu, values.precision);
  const { weights, config, metadata, optimizer } = await loadCheckpointModel(
    gpu,
    values.checkpoint,
    values,
    given,
  );
  if (values.ema) {
    try {
      loadWeightAverage(gpu, weights, optimizer?.buffers ?? {}, values.checkpoint);
    } catch (error) {
      weights.destroy();
      throw error;
    }
  }
  const origin = metadata ? `after epoch ${metadata.epoch}` : "a state dict without metadata";
  const average = values.ema ? ", its weights' moving average" : "";
  log(`checkpoint: ${values.checkpoint} (${describeModel(config)}, ${origin}${average})`);
  log(`adapter: ${describeAdapter(gpu)}`);
  const data = await loadData(values.data, { test: values.testLimit });
  log(`data: ${values.data} (${data.test.count} test images)`);
  const policy = await kernelPolicyFor(
    gpu,
    values.kernels,
    {
      model: config,
      passes: [{
        mode: "eval",
        batchSize: Math.min(values.evalBatchSize, data.test.count),
        precision: values.precision,
        views: evalViews(values),
      }],
    },
    log,
    progressOutput,
  );
  const compiled = await compilingKernels(
    "the evaluation plan",
    () =>
      Evaluator.create(
        gpu,
        weights,
        data.test,
        values.evalBatchSize,
        policy,
        values.precision,
        evalViews(values),
      ),
    { output: progressOutput },
  );
  const evaluator = compiled.value;
  const tta = values.tta === "flip" ? ", flip TTA" : "";
  log(`kernels: ${policy.describe()}, activations ${values.precision}${tta}`);
  log(`kernels compiled in ${compiled.seconds.toFixed(1)} s (evaluation plan)`);
  const result = await evaluateWithProgress(evaluator, "test", progressOutput);
  evaluator.destroy();
  weights.destroy();
  log("");
  for (const row of resultLines(result, data.classNames)) log(row);
}

/** The summary line, then the confusion matrix with a last column of per-class accuracy. */
export function resultLines(result: EvaluationResult, classNames: readonly string[]): string[] {
  const correct = result.confusion.reduce((sum, row, i) => sum + row[i], 0);
  const percent = (fraction: number) => `${(fraction * 100).toFixed(2)}%`;
  const largest = Math.max(...result.confusion.flat());
  const cell = Math.max(COLUMN_LETTERS, String(largest).length);
  const nameWidth = Math.max(...classNames.map((name) => name.length));
  const heading = classNames.map((name) => name.slice(0, COLUMN_LETTERS).padStart(cell));
  return [
    `test loss ${result.loss.toFixed(4)}, accuracy ${percent(result.accuracy)} ` +
    `(${correct} of ${result.count})`,
    "",
    "confusion matrix: a row per true class, a column per predicted class",
    `${"".padEnd(nameWidth)} ${heading.join(" ")}  accuracy`,
    ...result.confusion.map((row, i) =>
      `${classNames[i].padEnd(nameWidth)} ${row.map((n) => String(n).padStart(cell)).join(" ")}  ` +
      percent(result.perClassAccuracy[i]).padStart("accuracy".length)
    ),
  ];
}

if (import.meta.main) await runCli(() => runEval(Deno.args));
