/**
 * conv2d's blocked_texture_subgroup variant where an adapter has subgroups: Deno's lavapipe offers
 * none, Chromium's SwiftShader does (4 lanes), so the variant's gradient check runs here, in
 * headless Chromium on the browser bundle, against the f64 CPU reference on the odd shapes of
 * tests/ops/conv2d_test.ts (whose finite differences check that reference). Ignored where
 * /usr/bin/chromium is missing.
 */
import assert from "node:assert/strict";
import { REDUCTION } from "../support/tolerances.ts";
import { assertAllClose } from "../support/reference/compare.ts";
import {
  conv2dBackward as referenceBackward,
  conv2dForward as referenceForward,
} from "../support/reference/conv2d.ts";
import {
  CONV2D_ODD_CASES,
  describeConv2dCase,
  randomInputs,
  referenceShape,
} from "../support/conv2d_cases.ts";
import { f32Array, Random } from "../support/reference/random.ts";
import { serveBundlePage } from "./bundle_page.ts";
import { browserTestGuard, launchChromium } from "./chromium.ts";

Deno.test({
  name: "browser (needs /usr/bin/chromium and -A): conv2d blocked_texture_subgroup on " +
    "SwiftShader's subgroups matches the f64 reference on odd shapes",
  ...browserTestGuard(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const html = await Deno.readTextFile(new URL("./conv2d_subgroup.html", import.meta.url));
    const server = await serveBundlePage(html);
    const browser = await launchChromium();
    try {
      const { page, errors } = await browser.newPage();
      await page.goto(server.address);
      await page.waitForFunction(() => (globalThis as { ready?: boolean }).ready === true);
      // SwiftShader offers subgroups and passes the probe: otherwise nothing below would test them.
      assert.equal(
        await page.evaluate(() => (globalThis as { subgroups?: boolean }).subgroups),
        true,
      );
      for (const c of CONV2D_ODD_CASES) {
        await t.step(describeConv2dCase(c), async () => {
          const shape = referenceShape(c);
          const { x, weight } = randomInputs(c);
          const y = referenceForward(x, weight, shape);
          const random = new Random(y.length);
          const dy = f32Array(y.length, () => random.uniform(-1, 1));
          const { dx, dweight } = referenceBackward(x, weight, dy, shape);
          const result = await page.evaluate(
            (args) =>
              (globalThis as unknown as { convPasses(a: unknown): Promise<unknown> })
                .convPasses(args),
            {
              variant: "blocked_texture_subgroup",
              ...c,
              x: Array.from(x),
              weight: Array.from(weight),
              dy: Array.from(dy),
            },
          ) as { kernels: string[]; y: number[]; dx: number[]; dweight: number[]; error?: string };
          assert.equal(result.error, undefined);
          assert.ok(result.kernels.includes("conv2d_texture_subgroup"), String(result.kernels));
          assert.ok(!result.kernels.includes("conv2d_texture"), String(result.kernels));
          assertAllClose(result.y, y, REDUCTION, `y, ${describeConv2dCase(c)}`);
          assertAllClose(result.dx, dx, REDUCTION, `dx, ${describeConv2dCase(c)}`);
          assertAllClose(result.dweight, dweight, REDUCTION, `dweight, ${describeConv2dCase(c)}`);
        });
      }
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
      await server.close();
    }
  },
});
