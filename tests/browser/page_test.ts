/**
 * The training page (web/, served by `deno task serve`) in headless Chromium, WebGPU on
 * SwiftShader: it shows the adapter, loads a generated CIFAR-10 archive from the server, trains a
 * tiny ResNet whose loss goes down while its charts, predictions and confusion matrix fill in;
 * pause holds the run and stop ends it; the checkpoint it saves gives the same logits in Deno (on
 * lavapipe); a checkpoint of `deno task train` gives the CLI's accuracy in the page; a picked
 * image is classified as its test image is. Without WebGPU the page says what to do.
 *
 * SwiftShader compiles about a pipeline per half second, so the page trains one model (ResNet-18
 * at width 1/16, batch 16) and evaluates in batches of 64, whose pipelines every later step
 * reuses. Ignored where /usr/bin/chromium is missing.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { encode } from "fast-png";
import type { Page } from "playwright-core";
import { decodeCheckpoint, loadModelStateDict } from "../../src/model/checkpoint.ts";
import { ModelWeights } from "../../src/model/weights.ts";
import { KernelPolicy } from "../../src/ops/policy.ts";
import { Predictor } from "../../src/train/predict.ts";
import { IMAGE_BYTES } from "../../src/data/cifar.ts";
import { cifarFromArchive } from "../../src/data/archive.ts";
import { gunzipStream } from "../../src/data/gzip_stream.ts";
import { recipeFlags } from "../../src/train/settings.ts";
import { assertOneLineError, assertSucceeded, readMetrics, runCommand } from "../support/cli.ts";
import { testGpu } from "../support/gpu.ts";
import { assertAllClose, maxAbs } from "../support/reference/compare.ts";
import { REDUCTION } from "../support/tolerances.ts";
import { browserTestGuard, launchChromium, WEBGPU_ARGS } from "./chromium.ts";
import { learnableArchive, learnableTestSplit } from "./learnable_cifar.ts";
import { setSettings, waitForText } from "./page_driver.ts";
import { startServe } from "./serve_process.ts";

/** The run the page trains: small enough for SwiftShader, long enough for the loss to fall. */
const PAGE_RUN = {
  width: "0.0625",
  "batch-size": "16",
  epochs: "2",
  limit: "192",
  "test-limit": "64",
  // The training batch: the evaluation plan then shares the training plan's forward pipelines.
  "eval-batch-size": "16",
};
const TEST_IMAGES = 64;
/**
 * The same f32 kernels on two software adapters (SwiftShader in the page, lavapipe in Deno) differ
 * only in rounding (fused multiply-adds, summation order): measured 2.5e-7 on the logits. The
 * bound for sums of K products holds them with a wide margin; a wrong weight or layout gives
 * errors of order 1.
 */
const PAGE_VS_DENO = REDUCTION;
const MINUTES = 60_000;

Deno.test({
  name:
    "browser (needs /usr/bin/chromium and -A): the page trains a tiny ResNet in Chromium, and its " +
    "checkpoints agree with the CLI's",
  ...browserTestGuard(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const tempDir = await Deno.makeTempDir();
    const archive = join(tempDir, "cifar-10-binary.tar.gz");
    await Deno.writeFile(archive, learnableArchive());
    // The CLI's checkpoint trains on lavapipe while Chromium compiles its kernels.
    const cliRunDir = join(tempDir, "cli-run");
    const cliRun = runCommand("train", [
      ...Object.entries({ ...PAGE_RUN, epochs: "1", limit: "64" }).flatMap(([k, v]) => [
        `--${k}`,
        v,
      ]),
      "--data",
      archive,
      "--run-dir",
      cliRunDir,
    ], tempDir);
    const server = await startServe(["--port", "0", "--data", archive], tempDir);
    const browser = await launchChromium();
    const testSplit = learnableTestSplit();
    try {
      const { page, errors } = await browser.newPage();
      await page.setViewportSize({ width: 1280, height: 900 });
      await page.goto(server.address);
      // A step needs the ones before it: after a failure the rest are not run.
      let ok = true;

      ok &&= await t.step("it shows the adapter, its features and its limits", async () => {
        await page.waitForSelector("#gpu-panel:not([hidden])");
        assert.match(await page.textContent("#adapter-name") ?? "", /swiftshader/i);
        const features = await page.$$eval(
          "#adapter-features li",
          (items) => items.map((item) => [item.textContent, item.getAttribute("data-present")]),
        );
        assert.deepEqual(features.map(([name]) => name), [
          "shader-f16",
          "subgroups",
          "timestamp-query",
        ]);
        for (const [, present] of features) assert.match(present ?? "", /^(true|false)$/);
        const limit = await page.textContent('[data-limit="maxStorageBufferBindingSize"] td');
        assert.match(limit ?? "", /^\d+ MiB$/);
      });

      ok &&= await t.step("it loads and checks the server's archive", async () => {
        await page.waitForSelector("#data-status[data-loaded]", { timeout: MINUTES });
        assert.match(
          await page.textContent("#data-status") ?? "",
          /^50000 training and 10000 test images from cifar-10-binary\.tar\.gz \(from the server\)/,
        );
      });

      ok &&= await t.step(
        "a picked file is checked by the CLI's code, with its messages",
        async () => {
          const png = join(tempDir, "photo.png");
          const pngBytes = pngOfPlanes(testSplit.images, 0);
          await Deno.writeFile(png, pngBytes);
          const expected = await cifarFromArchive(pngBytes, "photo.png", { gunzip: gunzipStream })
            .then(() => "no error", (error: Error) => error.message);
          assert.match(expected, /^photo\.png: /);
          await page.setInputFiles("#data-file", png);
          await waitForText(page, "#data-error", /^photo\.png: /, MINUTES);
          assert.equal(await page.textContent("#data-error"), expected);
          await page.setInputFiles("#data-file", archive);
          await page.waitForSelector("#data-status[data-loaded]", { timeout: MINUTES });
          assert.equal(await page.isHidden("#data-error"), true);
          assert.match(
            await page.textContent("#data-status") ?? "",
            /^50000 training and 10000 test images from cifar-10-binary\.tar\.gz \(unpacked/,
          );
        },
      );

      ok &&= await t.step("settings are checked as the CLI checks its flags", async () => {
        const refusals: [Record<string, string>, string, string][] = [
          [{ lr: "fast" }, `learning rate must be ${recipeFlags.lr.expects}, got "fast"`, "lr"],
          [
            { lr: "0.1", "batch-size": "500", limit: "192" },
            "--batch-size 500 is more than the 192 training images: use a smaller --batch-size",
            "batch-size",
          ],
        ];
        for (const [values, message, field] of refusals) {
          await setSettings(page, values);
          await page.click("#start");
          await waitForText(page, "#settings-error", message, MINUTES);
          assert.equal(await page.textContent("#settings-error"), message);
          assert.equal(await page.getAttribute(`#setting-${field}`, "aria-invalid"), "true");
        }
      });

      ok &&= await t.step(
        "a tiny ResNet trains: pause holds it, the loss falls, charts fill",
        async () => {
          await setSettings(page, PAGE_RUN);
          await page.click("#start");
          await waitForText(page, "#stat-step", /^[1-9]\d* \//, 3 * MINUTES);
          await page.click("#pause");
          assert.equal(await page.textContent("#pause"), "Resume");
          // The step under way may still be submitted; after it nothing moves until resumed.
          await page.waitForTimeout(1000);
          const held = await page.textContent("#stat-step");
          await page.waitForTimeout(2000);
          assert.equal(await page.textContent("#stat-step"), held, "no step while paused");
          await page.click("#pause");
          await waitForText(page, "#run-status", /^Finished/, 3 * MINUTES);
          assert.match(
            await page.textContent("#run-status") ?? "",
            /^Finished: best test accuracy \d+\.\d\d% after epoch [12] of 2\.$/,
          );
          const train = await seriesValues(page, "#loss-chart", "train");
          const test = await seriesValues(page, "#accuracy-chart", "test");
          assert.ok(train.length >= 6, `a training loss point every few steps: ${train.length}`);
          assert.deepEqual(test.map(([epoch]) => epoch), [1, 2], "a test point per epoch");
          assert.match(await page.textContent("#stat-rate") ?? "", /^\d+(\.\d)? img\/s$/);
          assert.match(await page.textContent("#stat-step-ms") ?? "", /^\d+$/);
          const [first, last] = [train[0][1], train.at(-1)![1]];
          assert.ok(last < first, `the training loss falls: from ${first} to ${last}`);
          const epochLosses = [
            ...(await page.textContent("#run-log") ?? "").matchAll(
              /^epoch \d\/2 {2}train loss (\d+\.\d+)/gm,
            ),
          ].map((match) => Number(match[1]));
          assert.equal(epochLosses.length, 2, "an epoch line per epoch in the run log");
          assert.ok(epochLosses[1] < epochLosses[0], `the epochs' mean losses: ${epochLosses}`);
        },
      );

      ok &&= await t.step("the test images show their top 3 classes and the true one", async () => {
        const cells = await gridCells(page);
        assert.equal(cells.length, 24);
        for (const cell of cells) {
          assert.equal(cell.label, testSplit.labels[cell.index], `label of image ${cell.index}`);
          assert.equal(cell.bars, 3);
          assert.equal(cell.logits.length, 10);
          assert.ok(cell.logits.every(Number.isFinite));
        }
        const matrix = await page.$$eval(
          "#confusion-matrix tbody tr",
          (rows) =>
            rows.map((row) =>
              [...row.querySelectorAll("td")].slice(0, 10).map((cell) => Number(cell.textContent))
            ),
        );
        assert.equal(matrix.length, 10);
        assert.equal(matrix.flat().reduce((a, b) => a + b, 0), TEST_IMAGES);
        const correct = matrix.reduce((sum, row, i) => sum + row[i], 0);
        assert.equal(
          await page.getAttribute("#confusion-caption", "data-correct"),
          String(correct),
        );
      });

      ok &&= await t.step(
        "the saved checkpoint gives the page's logits in Deno, and the CLI reads its run",
        async () => {
          const download = await Promise.all([
            page.waitForEvent("download"),
            page.click("#save-last"),
          ]).then(([download]) => download);
          assert.equal(download.suggestedFilename(), "last.safetensors");
          const bytes = await Deno.readFile((await download.path())!);
          const checkpoint = decodeCheckpoint(bytes, "the page's last.safetensors");
          assert.equal(checkpoint.metadata?.epoch, 2);
          assert.ok(checkpoint.optimizer, "the optimizer state, for deno task train --resume");
          const cells = await gridCells(page);
          const logits = await denoLogits(bytes, testSplit.images);
          const logitErrors = cells.map((cell) =>
            assertAllClose(
              cell.logits,
              logits[cell.index],
              PAGE_VS_DENO,
              `logits of test image ${cell.index}`,
            )
          );
          console.log(
            `page (SwiftShader) vs Deno (lavapipe) logits: max relative error ` +
              Math.max(...logitErrors).toExponential(2),
          );
          // The CLI reads the page's run as its own: settings and history parse (a checkpoint
          // without them "holds no training state"), and the finished run has nothing left.
          const pageCheckpoint = join(tempDir, "page.safetensors");
          await Deno.writeFile(pageCheckpoint, bytes);
          const resumed = await runCommand("train", [
            "--resume",
            pageCheckpoint,
            "--data",
            archive,
            "--run-dir",
            join(tempDir, "page-resumed"),
          ], tempDir);
          assert.equal(
            assertOneLineError(resumed),
            `error: ${pageCheckpoint} has finished all 2 epochs of its run: nothing to resume`,
          );
        },
      );

      ok &&= await t.step(
        "stop ends a run between steps, keeping nothing of a partial epoch",
        async () => {
          await page.click("#start");
          await waitForText(page, "#stat-step", /^[1-9]\d* \//, MINUTES);
          await page.click("#stop");
          await waitForText(page, "#run-status", /^Stopped/, MINUTES);
          assert.equal(
            await page.textContent("#run-status"),
            "Stopped before the first epoch ended: nothing was kept.",
          );
          assert.equal(await page.isDisabled("#start"), false);
          assert.equal(await page.isDisabled("#stop"), true);
        },
      );

      ok &&= await t.step(
        "a checkpoint of deno task train gives the CLI's accuracy here",
        async () => {
          const output = await cliRun;
          assertSucceeded(output);
          const [record] = await readMetrics(cliRunDir);
          const checkpointPath = join(cliRunDir, "last.safetensors");
          await page.setInputFiles("#checkpoint-file", checkpointPath);
          await page.waitForSelector("#model-status[data-accuracy]", { timeout: MINUTES });
          const pageCorrect = Number(await page.getAttribute("#confusion-caption", "data-correct"));
          const cliCorrect = Math.round(record.testAccuracy * TEST_IMAGES);
          // An image whose two likeliest classes are closer than the two adapters' rounding (each
          // logit within PAGE_VS_DENO of the largest) may fall either way; the rest must agree.
          const logits = await denoLogits(await Deno.readFile(checkpointPath), testSplit.images);
          const ties = logits.filter((row) =>
            topMargin(row) < 2 * PAGE_VS_DENO * maxAbs(row)
          ).length;
          assert.ok(
            Math.abs(pageCorrect - cliCorrect) <= ties,
            `the page got ${pageCorrect} of ${TEST_IMAGES}, the CLI ${cliCorrect} (${ties} ties)`,
          );
          for (const cell of await gridCells(page)) {
            assertAllClose(
              cell.logits,
              logits[cell.index],
              PAGE_VS_DENO,
              `the CLI checkpoint's logits of test image ${cell.index}`,
            );
          }
        },
      );

      ok &&= await t.step("a picked image is classified as its test image is", async () => {
        const [cell] = await gridCells(page);
        const png = join(tempDir, "picked.png");
        await Deno.writeFile(png, pngOfPlanes(testSplit.images, cell.index));
        await page.setInputFiles("#classify-file", png);
        await page.waitForSelector("#classify-result .prediction");
        const picked = (await page.getAttribute("#classify-result .prediction", "data-logits"))!
          .split(",").map(Number);
        assertAllClose(picked, cell.logits, PAGE_VS_DENO, "the picked image's logits");
      });

      assert.deepEqual(errors, [], "no console errors");
    } finally {
      await browser.close();
      await server.stop();
      await cliRun.catch(() => {});
      await Deno.remove(tempDir, { recursive: true });
    }
  },
});

Deno.test({
  name: "browser (needs /usr/bin/chromium and -A): without WebGPU the page says what to do",
  ...browserTestGuard(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const tempDir = await Deno.makeTempDir();
    const server = await startServe(["--port", "0", "--data", join(tempDir, "none")], tempDir);
    const cases = [
      {
        what: "navigator.gpu deleted",
        args: WEBGPU_ARGS,
        script: "delete Navigator.prototype.gpu;",
        reason: "navigator.gpu is missing: this browser has no WebGPU, or it is turned off.",
      },
      {
        what: "Chromium without --enable-unsafe-webgpu",
        args: WEBGPU_ARGS.filter((arg) => arg !== "--enable-unsafe-webgpu"),
        reason: "navigator.gpu.requestAdapter() found no adapter: WebGPU is there but not for " +
          "this GPU or driver (on Linux, most GPUs need the flags below).",
      },
    ];
    try {
      for (const { what, args, script, reason } of cases) {
        const browser = await launchChromium(args);
        try {
          const { page, errors } = await browser.newPage();
          if (script) await page.addInitScript(script);
          await page.goto(server.address);
          await page.waitForSelector("#no-webgpu:not([hidden])");
          assert.equal(await page.textContent("#no-webgpu-reason"), reason, what);
          assert.match(await page.textContent("#no-webgpu") ?? "", /--enable-unsafe-webgpu/);
          assert.equal(await page.isHidden("#app"), true, what);
          assert.deepEqual(errors, [], what);
        } finally {
          await browser.close();
        }
      }
    } finally {
      await server.stop();
      await Deno.remove(tempDir, { recursive: true });
    }
  },
});

/** A chart series' points, [epoch, value], as the chart holds them. */
async function seriesValues(page: Page, chart: string, series: string): Promise<number[][]> {
  const values = await page.getAttribute(
    `${chart} polyline[data-series="${series}"]`,
    "data-values",
  );
  return JSON.parse(values ?? "[]");
}

interface GridCell {
  index: number;
  label: number;
  bars: number;
  logits: number[];
}

async function gridCells(page: Page): Promise<GridCell[]> {
  return await page.$$eval("#prediction-grid .prediction", (cells) =>
    cells.map((cell) => ({
      index: Number(cell.getAttribute("data-id")),
      label: Number(cell.getAttribute("data-label")),
      bars: cell.querySelectorAll(".bar").length,
      logits: (cell.getAttribute("data-logits") ?? "").split(",").map(Number),
    })));
}

/**
 * The logits of the page's test images under checkpoint `bytes`, computed in Deno: all of them
 * each time, so that the second checkpoint reuses the pipelines compiled for the first.
 */
async function denoLogits(bytes: Uint8Array, images: Uint8Array): Promise<Float32Array[]> {
  const gpu = await testGpu();
  const checkpoint = decodeCheckpoint(bytes, "checkpoint");
  const weights = new ModelWeights(gpu, checkpoint.metadata!.model);
  try {
    loadModelStateDict(weights, checkpoint.tensors, "checkpoint");
    const predictor = await Predictor.create(
      gpu,
      weights,
      Array.from(
        { length: TEST_IMAGES },
        (_, i) => images.subarray(i * IMAGE_BYTES, (i + 1) * IMAGE_BYTES),
      ),
      KernelPolicy.forAdapter(gpu),
    );
    try {
      return await predictor.logits();
    } finally {
      predictor.destroy();
    }
  } finally {
    weights.destroy();
  }
}

/** The gap between the largest and the second largest logit. */
function topMargin(logits: ArrayLike<number>): number {
  const sorted = Array.from(logits).sort((a, b) => b - a);
  return sorted[0] - sorted[1];
}

/** Test image `index` as an RGB PNG. */
function pngOfPlanes(images: Uint8Array, index: number): Uint8Array {
  const planes = images.subarray(index * IMAGE_BYTES, (index + 1) * IMAGE_BYTES);
  const data = new Uint8Array(IMAGE_BYTES);
  for (let p = 0; p < 1024; p++) {
    for (let c = 0; c < 3; c++) data[p * 3 + c] = planes[c * 1024 + p];
  }
  return encode({ width: 32, height: 32, channels: 3, depth: 8, data });
}
