/**
 * What the page imports runs in a browser: the library bundle (src/browser.ts, which exports the
 * trainer, the epoch loop, the settings, checkpoints and the archive loader) holds no Deno API and
 * imports no Node module. Checked on the bundle esbuild makes with the project's browser options,
 * so a module that reaches Deno through any import, however deep, is found.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { bundleToString } from "../../src/build/bundle.ts";
import { needs } from "../support/permissions.ts";

/** Lines of `javaScript` that use the Deno namespace or import a `node:` module. */
function platformLines(javaScript: string): string[] {
  return javaScript.split("\n").filter((line) =>
    /\bDeno\s*[.?[]/.test(line) || /\b(from|import)\s*\(?\s*["']node:/.test(line) ||
    /\brequire\s*\(\s*["']node:/.test(line)
  );
}

Deno.test("platformLines finds the uses of Deno and of node: modules that a bundle could hold", () => {
  const found = platformLines([
    "const size = Deno.consoleSize().columns;",
    "const os = globalThis.Deno?.build.os;",
    'import { join } from "node:path";',
    'const zlib = await import("node:zlib");',
    'const fs = require("node:fs");',
    'const text = "Denominator: no Deno here";',
    'const note = "node:path is what the CLI uses";',
  ].join("\n"));
  assert.equal(found.length, 5, found.join("\n"));
});

Deno.test({
  name: "the library bundle (src/browser.ts) uses no Deno API and imports no node: module",
  ...needs("read", "run", "env"),
  async fn() {
    const bundle = await bundleToString(
      fileURLToPath(new URL("../../src/browser.ts", import.meta.url)),
    );
    assert.ok(bundle.includes("runTraining") && bundle.includes("cifarFromArchive"), "entry");
    assert.deepEqual(platformLines(bundle), []);
  },
});
