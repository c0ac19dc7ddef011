/**
 * Driving the training page (web/) through playwright: typing settings into its form and waiting
 * for its status lines, for the browser tests and tools/browser_screenshots.ts.
 */
import type { Page } from "playwright-core";

/** Waits until the element of `selector` shows `text` (a string it contains, or a pattern). */
export async function waitForText(
  page: Page,
  selector: string,
  text: string | RegExp,
  timeout: number,
): Promise<void> {
  await page.locator(selector).filter({ hasText: text }).waitFor({ timeout });
}

/** Types `values` (flag name without dashes: text) into the settings form. */
export async function setSettings(page: Page, values: Record<string, string>): Promise<void> {
  for (const [name, value] of Object.entries(values)) {
    const field = page.locator(`#setting-${name}`);
    if (!await field.isVisible()) await page.click("#settings-form details > summary");
    await field.fill(value);
  }
}
