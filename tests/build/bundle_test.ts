import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { bundleToString } from "../../src/build/bundle.ts";
import { kernels } from "../../src/shaders.ts";
import { needs } from "../support/permissions.ts";

const shadersDir = new URL("../../shaders/", import.meta.url);

Deno.test({
  name: "every WGSL file is registered, and the esbuild bundle carries each one unchanged",
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
    assert.deepEqual([...registered.keys()].sort(), [...files.keys()].sort());
    for (const [name, code] of registered) {
      assert.equal(code, files.get(name), `${name}.wgsl via Deno`);
    }

    const bundle = await bundleToString(
      fileURLToPath(new URL("../../src/shaders.ts", import.meta.url)),
    );
    const url = `data:text/javascript;base64,${
      btoa(
        Array.from(new TextEncoder().encode(bundle), (byte) => String.fromCharCode(byte)).join(""),
      )
    }`;
    const bundled: { kernels: typeof kernels } = await import(url);
    for (const kernel of Object.values(bundled.kernels)) {
      assert.equal(kernel.code, files.get(kernel.name), `${kernel.name}.wgsl in the bundle`);
    }
    assert.equal(Object.keys(bundled.kernels).length, files.size);
  },
});
