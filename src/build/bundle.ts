/**
 * The esbuild settings for browser bundles, shared by `deno task build`, the dev server and the
 * tests that prove a bundle carries the shaders unchanged and no classic zod. WGSL files load as
 * text, exactly as Deno's `with { type: "text" }` imports read them.
 */
import type * as esbuild from "esbuild";

/** A bundle `deno task build` writes: an entry module (from the repository root) and its file. */
export interface BrowserBundle {
  entryPoint: string;
  outfile: string;
}

/** What `deno task build` writes, each with its source map beside it (`<outfile>.map`). */
export const browserBundles: readonly BrowserBundle[] = [
  { entryPoint: "src/browser.ts", outfile: "dist/webgpu-resnet.js" },
  { entryPoint: "web/main.ts", outfile: "dist/app.js" },
];

export interface BundleSettings {
  /**
   * Minify, with a source map back to the TypeScript: linked (`<outfile>.map`, named on the
   * bundle's last line) when esbuild writes the bundle to a file, inline when it stays in memory.
   * What `deno task build` ships. Off by default: the tests and the dev server get readable
   * JavaScript without a map.
   */
  minify?: boolean;
}

export function bundleOptions(
  entryPoint: string,
  { minify = false }: BundleSettings = {},
): esbuild.BuildOptions {
  return {
    entryPoints: [entryPoint],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    loader: { ".wgsl": "text" },
    logLevel: "silent",
    ...(minify ? { minify: true, sourcemap: "linked" } : {}),
  };
}

/**
 * Bundles `entryPoint` in memory and returns the JavaScript (readable unless `minify`). esbuild is
 * loaded here, not at import: loading it reads the environment, which bare `deno test` does not
 * allow.
 */
export async function bundleToString(
  entryPoint: string,
  settings: BundleSettings = {},
): Promise<string> {
  const esbuild = await import("esbuild");
  const options = bundleOptions(entryPoint, settings);
  // In memory there is no file to link a map from.
  const sourcemap = options.sourcemap && "inline";
  const result = await esbuild.build({ ...options, sourcemap, write: false });
  await esbuild.stop();
  return result.outputFiles![0].text;
}
