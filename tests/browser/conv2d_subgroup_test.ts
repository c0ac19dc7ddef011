/**
 * conv2d variants in Chromium, on the browser bundle, against the f64 CPU reference on odd shapes
 * (tests/support/conv2d_cases.ts; tests/ops/conv2d_test.ts checks that reference by finite
 * differences). blocked_texture_subgroup needs subgroups: Deno's lavapipe offers none, Chromium's
 * SwiftShader does (4 lanes), so its gradient check runs only here. winograd runs in Deno too; here
 * its transforms go through Chromium's WGSL compiler (Tint), which no other browser test reaches
 * (the networks there are narrower than the layers the rules give it). Ignored where
 * /usr/bin/chromium is missing.
 */
import assert from "node:assert/strict";
import type { Conv2dVariant } from "../../src/ops/conv2d.ts";
import { REDUCTION } from "../support/tolerances.ts";
import { assertAllClose } from "../support/reference/compare.ts";
import {
  conv2dBackward as referenceBackward,
  conv2dForward as referenceForward,
} from "../support/reference/conv2d.ts";
import {
  CONV2D_ODD_CASES,
  type Conv2dCase,
  describeConv2dCase,
  randomInputs,
  referenceShape,
  WINOGRAD_CASES,
} from "../support/conv2d_cases.ts";
import { f32Array, Random } from "../support/reference/random.ts";
import { serveBundlePage } from "./bundle_page.ts";
import { browserTestGuard, launchChromium } from "./chromium.ts";

type Page = Awaited<ReturnType<Awaited<ReturnType<typeof launchChromium>>["newPage"]>>["page"];

/**
 * Opens the conv page in Chromium, runs `check` on it, and fails on any page error.
 */
async function onConvPage(check: (page: Page) => Promise<void>): Promise<void> {
  const html = await Deno.readTextFile(new URL("./conv2d_subgroup.html", import.meta.url));
  const server = await serveBundlePage(html);
  const browser = await launchChromium();
  try {
    const { page, errors } = await browser.newPage();
    await page.goto(server.address);
    await page.waitForFunction(() => (globalThis as { ready?: boolean }).ready === true);
    await check(page);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await server.close();
  }
}

/**
 * One step per case: `variant`'s forward and backward in the page against the f64 reference,
 * having run the kernel `kernels.ran` names (or its `_elements` build, which stores a channel
 * count that is not a multiple of 4) and neither the kernel `kernels.not` names nor its build.
 */
async function checkCases(
  t: Deno.TestContext,
  page: Page,
  variant: Conv2dVariant,
  cases: readonly Conv2dCase[],
  kernels: { ran: string; not?: string },
): Promise<void> {
  const builds = (name: string) => [name, `${name}_elements`];
  for (const c of cases) {
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
        { variant, ...c, x: Array.from(x), weight: Array.from(weight), dy: Array.from(dy) },
      ) as { kernels: string[]; y: number[]; dx: number[]; dweight: number[]; error?: string };
      assert.equal(result.error, undefined);
      const ran = new Set(result.kernels);
      assert.ok(builds(kernels.ran).some((name) => ran.has(name)), String(result.kernels));
      if (kernels.not) {
        assert.ok(builds(kernels.not).every((name) => !ran.has(name)), String(result.kernels));
      }
      assertAllClose(result.y, y, REDUCTION, `y, ${describeConv2dCase(c)}`);
      assertAllClose(result.dx, dx, REDUCTION, `dx, ${describeConv2dCase(c)}`);
      assertAllClose(result.dweight, dweight, REDUCTION, `dweight, ${describeConv2dCase(c)}`);
    });
  }
}

Deno.test({
  name: "browser (needs /usr/bin/chromium and -A): conv2d blocked_texture_subgroup on " +
    "SwiftShader's subgroups matches the f64 reference on odd shapes",
  ...browserTestGuard(),
  sanitizeOps: false,
  sanitizeResources: false,
  fn: (t) =>
    onConvPage(async (page) => {
      // SwiftShader offers subgroups and passes the probe: otherwise nothing below would test them.
      assert.equal(
        await page.evaluate(() => (globalThis as { subgroups?: boolean }).subgroups),
        true,
      );
      await checkCases(t, page, "blocked_texture_subgroup", CONV2D_ODD_CASES, {
        ran: "conv2d_texture_subgroup",
        not: "conv2d_texture",
      });
    }),
});

Deno.test({
  name: "browser (needs /usr/bin/chromium and -A): conv2d winograd, compiled by Chromium, " +
    "matches the f64 reference on odd shapes",
  ...browserTestGuard(),
  sanitizeOps: false,
  sanitizeResources: false,
  fn: (t) =>
    onConvPage((page) =>
      checkCases(t, page, "winograd", WINOGRAD_CASES, { ran: "conv2d_winograd" })
    ),
});
