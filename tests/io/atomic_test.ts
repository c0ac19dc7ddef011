import assert from "node:assert/strict";
import { join } from "node:path";
import { appendJsonLine, writeFileAtomic } from "../../src/io/atomic.ts";
import { needs } from "../support/permissions.ts";

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "io_atomic_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function listDir(dir: string): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(dir))).map((entry) => entry.name).sort();
}

Deno.test({
  name: "writeFileAtomic creates and then replaces a file, leaving no temporary files",
  ...needs("read", "write"),
  fn: () =>
    withTempDir(async (dir) => {
      const path = join(dir, "model.safetensors");
      await writeFileAtomic(path, Uint8Array.of(1, 2, 3));
      assert.deepEqual(await Deno.readFile(path), Uint8Array.of(1, 2, 3));

      await writeFileAtomic(path, "replaced é");
      assert.equal(await Deno.readTextFile(path), "replaced é");

      const large = new Uint8Array(3 << 20).map((_, i) => i % 251);
      await writeFileAtomic(path, large);
      assert.deepEqual(await Deno.readFile(path), large);
      assert.deepEqual(await listDir(dir), ["model.safetensors"]);
    }),
});

Deno.test({
  name: "writeFileAtomic leaves the target untouched and removes its temporary file on failure",
  ...needs("read", "write"),
  fn: () =>
    withTempDir(async (dir) => {
      // Renaming a file over a non-empty directory fails after the temporary file is written.
      const target = join(dir, "checkpoint");
      await Deno.mkdir(target);
      await Deno.writeTextFile(join(target, "inside"), "kept");
      await assert.rejects(writeFileAtomic(target, "new contents"));
      assert.equal(await Deno.readTextFile(join(target, "inside")), "kept");
      assert.deepEqual(await listDir(dir), ["checkpoint"]);

      await assert.rejects(
        writeFileAtomic(join(dir, "missing", "file"), "x"),
        Deno.errors.NotFound,
      );
      assert.deepEqual(await listDir(dir), ["checkpoint"]);
    }),
});

Deno.test({
  name: "appendJsonLine appends whole lines, also from concurrent writers",
  ...needs("read", "write"),
  fn: () =>
    withTempDir(async (dir) => {
      const path = join(dir, "metrics.jsonl");
      await appendJsonLine(path, { epoch: 1, note: "two\nlines" });
      await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          appendJsonLine(path, { epoch: i + 2, pad: "x".repeat(i * 50) })),
      );

      const text = await Deno.readTextFile(path);
      assert.ok(text.endsWith("\n"));
      const records = text.trimEnd().split("\n").map((line) =>
        JSON.parse(line)
      );
      assert.equal(records.length, 41);
      assert.deepEqual(records[0], { epoch: 1, note: "two\nlines" });
      const epochs = records.map((record) => record.epoch).sort((a, b) => a - b);
      assert.deepEqual(epochs, Array.from({ length: 41 }, (_, i) => i + 1));
    }),
});
