/**
 * `deno task build`: the browser bundle `dist/webgpu-resnet.js` of `src/browser.ts` (the runtime,
 * kernels, ops and model without Deno's file system), with the WGSL kernels inlined as text.
 */
import * as esbuild from "esbuild";
import { bundleOptions } from "./src/build/bundle.ts";

const outfile = "dist/webgpu-resnet.js";
const result = await esbuild.build({ ...bundleOptions("src/browser.ts"), outfile, metafile: true });
await esbuild.stop();
const bytes = Object.values(result.metafile!.outputs).reduce(
  (sum, output) => sum + output.bytes,
  0,
);
console.log(`wrote ${outfile} (${(bytes / 1024).toFixed(1)} KiB)`);
