/**
 * The browser bundles validate with zod's tree-shakable build, zod/mini (about 17 KiB of the
 * minified library bundle). Classic zod (`import { z } from "zod"`) or every one of zod's locales
 * (`z.locales`) would bring back hundreds of KiB; each bundle `deno task build` writes must ship
 * none of their files. Checked on esbuild's metafile, not on a size that moves with every change.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import type * as esbuild from "esbuild";
import { browserBundles, bundleOptions } from "../../src/build/bundle.ts";
import { needs } from "../support/permissions.ts";

const root = new URL("../../", import.meta.url);

/** Classic zod (v4's classic build, v3) and every locale but the English one zod/mini is given. */
const HEAVY_ZOD = /\/zod\/(v3\/|v4\/classic\/|v4\/locales\/(?!en\.js$))/;

/** The files of `HEAVY_ZOD` that put code into the bundle, as paths inside the zod package. */
function heavyZodFiles(metafile: esbuild.Metafile): string[] {
  const [output] = Object.values(metafile.outputs);
  return Object.entries(output.inputs)
    .filter(([path, { bytesInOutput }]) => bytesInOutput > 0 && HEAVY_ZOD.test(path))
    .map(([path]) => path.slice(path.lastIndexOf("/zod/") + 1));
}

/** Files by folder: "zod/v4/classic/ (12 files)". */
function describeFiles(files: string[]): string {
  const counts = Map.groupBy(files, (file) => file.slice(0, file.lastIndexOf("/") + 1));
  return [...counts].map(([folder, { length }]) => `${folder} (${length} files)`).join(", ");
}

/** The project's modules that import classic zod by its bare name. */
function classicZodImporters(metafile: esbuild.Metafile): string[] {
  return Object.entries(metafile.inputs)
    .filter(([path, input]) =>
      !path.includes("node_modules/") && input.imports.some(({ original }) => original === "zod")
    )
    .map(([path]) => path);
}

Deno.test({
  name: "the browser bundles hold no classic zod and no zod locale but English",
  ...needs("read", "run", "env"),
  async fn() {
    const esbuild = await import("esbuild");
    const metafileOf = async (options: esbuild.BuildOptions) =>
      (await esbuild.build({ ...options, write: false, metafile: true })).metafile!;
    try {
      // The control: the check finds classic zod in a bundle that imports it.
      const classic = await metafileOf({
        ...bundleOptions(""),
        entryPoints: undefined,
        stdin: { contents: 'export { z } from "zod";', resolveDir: fileURLToPath(root) },
      });
      assert.ok(heavyZodFiles(classic).some((file) => file.startsWith("zod/v4/classic/")));

      for (const { entryPoint, outfile } of browserBundles) {
        const metafile = await metafileOf(bundleOptions(fileURLToPath(new URL(entryPoint, root))));
        const heavy = heavyZodFiles(metafile);
        const importers = classicZodImporters(metafile);
        assert.deepEqual(
          heavy,
          [],
          `${outfile} (of ${entryPoint}) ships ${describeFiles(heavy)}: hundreds of KiB. ` +
            `Import schemas from "zod/mini"` +
            (importers.length > 0 ? ` (classic "zod" comes from ${importers.join(", ")})` : "") +
            ', and English messages as { en } from "zod/locales", not z.locales (every language)',
        );
      }
    } finally {
      await esbuild.stop();
    }
  },
});
