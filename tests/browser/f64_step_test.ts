/**
 * The browser build, in a real browser: headless Chromium (WebGPU on SwiftShader) loads the
 * esbuild bundle of src/browser.ts and runs one training step of a whole ResNet, whose loss,
 * logits and every parameter gradient must match the f64 CPU reference, as in
 * tests/plan/network_test.ts: once with the CPU kernel family (SwiftShader's own, with its
 * subgroups) and once with the GPU family (what a browser on a real GPU runs, here compiled by
 * the browser's WGSL compiler). Ignored where /usr/bin/chromium is missing.
 */
import assert from "node:assert/strict";
import { NETWORK } from "../support/tolerances.ts";
import { assertAllClose } from "../support/reference/compare.ts";
import { f32Array, Random } from "../support/reference/random.ts";
import { randomResnetWeights, resnetTrainStep } from "../support/reference/resnet.ts";
import { buildArchitecture } from "../../src/model/architecture.ts";
import { parameterSpecs, stateSpecs } from "../../src/model/parameters.ts";
import type { ResNetConfig } from "../../src/model/config.ts";
import { serveBundlePage } from "./bundle_page.ts";
import { browserTestGuard, launchChromium } from "./chromium.ts";

Deno.test({
  name:
    "browser (needs /usr/bin/chromium and -A): the bundle trains one step of a whole ResNet in " +
    "Chromium with each kernel family, matching the f64 reference",
  ...browserTestGuard(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const config: ResNetConfig = {
      block: "basic",
      blocksPerStage: [1, 1, 1, 1],
      widthMultiplier: 1 / 16,
      classes: 10,
    };
    const random = new Random(99);
    const reference = randomResnetWeights(config, random);
    const batch = 2;
    const input = f32Array(batch * 32 * 32 * 3, () => random.normal());
    const labels = Array.from({ length: batch }, () => random.integer(10));
    const expected = resnetTrainStep(
      config,
      reference,
      input,
      { n: batch, h: 32, w: 32, c: 3 },
      labels,
    );

    const architecture = buildArchitecture(config);
    const pick = (names: string[]) =>
      Object.fromEntries(names.map((name) => [name, Array.from(reference.get(name)!)]));
    const bnNames = [
      ...new Set(
        stateSpecs(architecture).map((spec) => spec.name.replace(/\.running_(mean|var)$/, "")),
      ),
    ];

    const html = await Deno.readTextFile(new URL("./f64_step.html", import.meta.url));
    const server = await serveBundlePage(html);
    const browser = await launchChromium();
    try {
      const { page: tab, errors: consoleErrors } = await browser.newPage();
      await tab.goto(server.address);
      await tab.waitForFunction(() => (globalThis as { ready?: boolean }).ready === true);
      // Both kernel families: the CPU one SwiftShader gets (with its subgroups), and the GPU one
      // that browsers on real GPUs get, compiled by the browser's own WGSL compiler (Tint).
      for (const family of ["cpu", "gpu"] as const) {
        await t.step(`${family} family`, async () => {
          const result = await tab.evaluate(
            (args) =>
              (globalThis as unknown as { trainStep(a: unknown): Promise<unknown> }).trainStep(
                args,
              ),
            {
              config,
              parameters: pick(parameterSpecs(architecture).map((spec) => spec.name)),
              state: pick(stateSpecs(architecture).map((spec) => spec.name)),
              counters: bnNames.map((bn) => reference.get(`${bn}.num_batches_tracked`)?.[0] ?? 0),
              input: Array.from(input),
              labels,
              family,
            },
          ) as {
            adapter: string;
            kernels: string;
            error?: string;
            loss: number;
            logits: number[];
            gradients: Record<string, number[]>;
          };
          console.log(`browser adapter: ${result.adapter}; kernels: ${result.kernels}`);
          assert.match(result.kernels, new RegExp(`^${family} family`));
          assert.equal(result.error, undefined);
          assertAllClose(result.logits, expected.logits, NETWORK, "logits in the browser");
          assertAllClose([result.loss], [expected.loss], NETWORK, "loss in the browser");
          for (const [name, gradient] of expected.gradients) {
            assertAllClose(
              result.gradients[name],
              gradient,
              NETWORK,
              `gradient of ${name} in the browser`,
            );
          }
        });
      }
      assert.deepEqual(consoleErrors, []);
    } finally {
      await browser.close();
      await server.close();
    }
  },
});
