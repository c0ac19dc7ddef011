import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { bundleToString } from "../../src/build/bundle.ts";
import { joinSources, KERNEL_FILES, kernels } from "../../src/shaders.ts";
import { encodeSafetensors } from "../../src/io/safetensors.ts";
import { CHECKPOINT_FORMAT, decodeCheckpoint } from "../../src/model/checkpoint.ts";
import { needs } from "../support/permissions.ts";

const shadersDir = new URL("../../shaders/", import.meta.url);

/** The module that a bundle's JavaScript is, imported from a data: URL. */
async function importText<T>(javaScript: string): Promise<T> {
  const bytes = new TextEncoder().encode(javaScript);
  const base64 = btoa(Array.from(bytes, (byte) => String.fromCharCode(byte)).join(""));
  return await import(`data:text/javascript;base64,${base64}`);
}

Deno.test({
  name:
    "every WGSL file is in a registered kernel, and the esbuild bundle, readable or minified, " +
    "carries each one unchanged",
  ...needs("read", "run", "env"),
  async fn() {
    const files = new Map<string, string>();
    for await (const entry of Deno.readDir(shadersDir)) {
      if (entry.name.endsWith(".wgsl")) {
        files.set(
          entry.name.slice(0, -5),
          await Deno.readTextFile(new URL(entry.name, shadersDir)),
        );
      }
    }
    const registered = new Map(Object.values(kernels).map((kernel) => [kernel.name, kernel.code]));
    // A kernel is the file of its name, or the files KERNEL_FILES joins for it.
    const filesOf = (name: string) => KERNEL_FILES[name] ?? [name];
    const source = (name: string) =>
      joinSources(...filesOf(name).map((file) => files.get(file) ?? assert.fail(`${file}.wgsl`)));
    for (const name of Object.keys(KERNEL_FILES)) assert.ok(registered.has(name), name);
    const used = new Set([...registered.keys()].flatMap(filesOf));
    assert.deepEqual([...used].sort(), [...files.keys()].sort());
    for (const [name, code] of registered) {
      assert.equal(code, source(name), `${name} via Deno`);
    }

    const entryPoint = fileURLToPath(new URL("../../src/shaders.ts", import.meta.url));
    // Minifying must leave string contents alone: `deno task build` ships the minified bundle.
    for (const minify of [false, true]) {
      const bundle = await bundleToString(entryPoint, { minify });
      const bundled: { kernels: typeof kernels } = await importText(bundle);
      const what = minify ? "the minified bundle" : "the bundle";
      for (const kernel of Object.values(bundled.kernels)) {
        assert.equal(kernel.code, source(kernel.name), `${kernel.name} in ${what}`);
      }
      assert.equal(Object.keys(bundled.kernels).length, registered.size);
    }
  },
});

Deno.test({
  name: "the bundled checkpoint decoder refuses bad metadata with the CLI's English messages",
  ...needs("read", "run", "env"),
  async fn() {
    // The bundle holds zod/mini alone, which has no messages of its own: checkpoint.ts asks for
    // English ones (classic zod, which the CLI also loads, would install them globally).
    const bundled: { decodeCheckpoint: typeof decodeCheckpoint } = await importText(
      await bundleToString(
        fileURLToPath(new URL("../../src/model/checkpoint.ts", import.meta.url)),
      ),
    );
    const model = { block: "basic", blocksPerStage: [1, 1, 1, 1], widthMultiplier: 1, classes: 10 };
    const metadata = { format: CHECKPOINT_FORMAT, model, epoch: 1, step: 4, seed: 0 };
    const cases = [
      [
        { ...metadata, model: { ...model, widthMultiplier: 20 } },
        "bad checkpoint metadata at model.widthMultiplier: Too big: expected number to be <=16",
      ],
      [
        { ...metadata, epoch: "one" },
        "bad checkpoint metadata at epoch: Invalid input: expected number, received string",
      ],
    ] as const;
    for (const [bad, problem] of cases) {
      const bytes = encodeSafetensors(new Map(), { checkpoint: JSON.stringify(bad) });
      for (const decode of [decodeCheckpoint, bundled.decodeCheckpoint]) {
        assert.throws(() => decode(bytes, "bad.safetensors"), {
          message: `bad.safetensors: ${problem}`,
        });
      }
    }
  },
});
