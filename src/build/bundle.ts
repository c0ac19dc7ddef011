/**
 * The esbuild settings for browser bundles, shared by `deno task build` and the test that proves
 * the bundle carries the shaders unchanged. WGSL files load as text, exactly as Deno's
 * `with { type: "text" }` imports read them.
 */
import type * as esbuild from "esbuild";

export function bundleOptions(entryPoint: string): esbuild.BuildOptions {
  return {
    entryPoints: [entryPoint],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    loader: { ".wgsl": "text" },
    logLevel: "silent",
  };
}

/**
 * Bundles `entryPoint` in memory and returns the JavaScript. esbuild is loaded here, not at
 * import: loading it reads the environment, which bare `deno test` does not allow.
 */
export async function bundleToString(entryPoint: string): Promise<string> {
  const esbuild = await import("esbuild");
  const result = await esbuild.build({ ...bundleOptions(entryPoint), write: false });
  await esbuild.stop();
  return result.outputFiles![0].text;
}
