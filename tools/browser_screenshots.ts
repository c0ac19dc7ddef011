/**
 * The README's screenshots of the training page: `deno task serve` with the real CIFAR-10, a
 * short run in headless Chromium (WebGPU on SwiftShader), an image classified, then the whole
 * page at desktop and at phone width. Run by hand (a few minutes on a CPU):
 *
 *   deno run -A tools/browser_screenshots.ts [--data PATH] [--out FOLDER]
 *
 * PATH is cifar-10-binary.tar.gz or a folder holding it (default ./data); FOLDER defaults to
 * docs/. It prints the run's speed, for the README's table.
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { encode } from "fast-png";
import { loadCifar10 } from "../src/data/load.ts";
import { IMAGE_BYTES } from "../src/data/cifar.ts";
import { launchChromium } from "../tests/browser/chromium.ts";
import { setSettings, waitForText } from "../tests/browser/page_driver.ts";
import { startServe } from "../tests/browser/serve_process.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    data: { type: "string", default: "./data" },
    out: { type: "string", default: "docs" },
  },
});
/** Enough to learn something visible in a few minutes of SwiftShader. */
const RUN = {
  width: "0.0625",
  "batch-size": "32",
  epochs: "2",
  limit: "2048",
  "test-limit": "512",
  // The training batch: the evaluation then reuses the training plan's forward pipelines.
  "eval-batch-size": "32",
};
const MINUTES = 60_000;

const tempDir = await Deno.makeTempDir();
const server = await startServe(["--port", "0", "--data", values.data], tempDir);
const browser = await launchChromium();
try {
  const { page, errors } = await browser.newPage();
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.goto(server.address);
  await page.waitForSelector("#data-status[data-loaded]", { timeout: 5 * MINUTES });
  await setSettings(page, RUN);
  await page.click("#start");
  await waitForText(page, "#run-status", /^(Finished|Not running)/, 30 * MINUTES);
  console.log(await page.textContent("#run-status"));
  console.log(await page.textContent("#run-log"));

  // A test image (a ship, the test set's second) to classify, as a PNG file.
  const data = await loadCifar10(values.data);
  const planes = data.test.images.subarray(IMAGE_BYTES, 2 * IMAGE_BYTES);
  const rgb = new Uint8Array(IMAGE_BYTES);
  for (let p = 0; p < 1024; p++) {
    for (let c = 0; c < 3; c++) rgb[p * 3 + c] = planes[c * 1024 + p];
  }
  const png = join(tempDir, "ship.png");
  await Deno.writeFile(png, encode({ width: 32, height: 32, channels: 3, depth: 8, data: rgb }));
  await page.setInputFiles("#classify-file", png);
  await page.waitForSelector("#classify-result .prediction");

  await page.screenshot({ path: join(values.out, "browser_page.png"), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: join(values.out, "browser_page_phone.png"), fullPage: true });
  if (errors.length > 0) console.error(`console errors: ${errors.join("\n")}`);
} finally {
  await browser.close();
  await server.stop();
  await Deno.remove(tempDir, { recursive: true });
}
