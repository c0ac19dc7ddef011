/**
 * `deno task build`: the browser bundles src/build/bundle.ts lists, minified, each with its source
 * map, and their sizes as a server sends them: raw and gzip-compressed. The library
 * `dist/webgpu-resnet.js` of `src/browser.ts` (the runtime, kernels, ops and model without Deno's
 * file system, with the WGSL kernels inlined as text), and the training page's `dist/app.js` of
 * `web/main.ts`.
 */
import * as esbuild from "esbuild";
import { browserBundles, bundleOptions } from "./src/build/bundle.ts";

async function gzipSize(bytes: Uint8Array<ArrayBuffer>): Promise<number> {
  const compressed = new Blob([bytes]).stream().pipeThrough(new CompressionStream("gzip"));
  return (await new Response(compressed).arrayBuffer()).byteLength;
}

const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;

for (const { entryPoint, outfile } of browserBundles) {
  await esbuild.build({ ...bundleOptions(entryPoint, { minify: true }), outfile });
  const bytes = await Deno.readFile(outfile);
  console.log(
    `wrote ${outfile} (${kib(bytes.length)}, ${kib(await gzipSize(bytes))} gzip-compressed) ` +
      `and its source map ${outfile}.map`,
  );
}
await esbuild.stop();
