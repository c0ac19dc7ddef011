/**
 * Debian's headless Chromium for the browser tests, driven by playwright-core. Without a GPU it
 * offers WebGPU on SwiftShader with these flags (../shared/notes/cpu-adapter.md); every launch
 * gets a fresh profile, removed on close.
 */
import type { BrowserContext, Page } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";

/** The flags Chromium needs for WebGPU without a GPU; `--enable-unsafe-webgpu` is the key one. */
export const WEBGPU_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu-sandbox",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--enable-unsafe-webgpu",
];

/**
 * The browser tests' guard: they run under `deno test -A` (playwright-core reads /proc/sys as it
 * loads, which Deno allows only with every permission) where Chromium is installed, and are
 * ignored elsewhere. Bare `deno test` and the restricted permissions of the main test command
 * report them as ignored.
 */
export function browserTestGuard(): { ignore: boolean } {
  const everything = ["read", "write", "net", "env", "sys", "run", "ffi"] as const;
  const all = everything.every((name) => Deno.permissions.querySync({ name }).state === "granted");
  if (!all) return { ignore: true };
  try {
    return { ignore: !Deno.statSync(CHROMIUM).isFile };
  } catch {
    return { ignore: true };
  }
}

export interface Browser {
  context: BrowserContext;
  /** A new tab whose console errors and uncaught exceptions are collected in `errors`. */
  newPage(): Promise<{ page: Page; errors: string[] }>;
  close(): Promise<void>;
}

export async function launchChromium(args = WEBGPU_ARGS): Promise<Browser> {
  // Loaded here, not at import: playwright reads the environment as it loads, which bare
  // `deno test` does not allow (the tests are ignored there, but their modules still load).
  const { chromium } = await import("playwright-core");
  const profile = await Deno.makeTempDir();
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args,
    acceptDownloads: true,
  });
  return {
    context,
    async newPage() {
      const page = await context.newPage();
      const errors: string[] = [];
      page.on("console", (message) => {
        if (message.type() === "error") errors.push(message.text());
      });
      page.on("pageerror", (error) => errors.push(String(error)));
      return { page, errors };
    },
    async close() {
      await context.close();
      await Deno.remove(profile, { recursive: true });
    },
  };
}
