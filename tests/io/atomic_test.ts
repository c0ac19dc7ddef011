import assert from "node:assert/strict";
import { join } from "node:path";
import {
  appendJsonLine,
  copyFileAtomic,
  FileWriteError,
  isTemporaryName,
  removeTemporaryFiles,
  writeAtomically,
  writeFileAtomic,
} from "../../src/io/atomic.ts";
import { UsageError } from "../../src/errors.ts";
import { needs } from "../support/permissions.ts";
import {
  canDenyWrites,
  deniedFolder,
  hasDevFull,
  runAllowingAll,
} from "../support/write_denial.ts";
import { listDir, withTempDir } from "../support/files.ts";

Deno.test({
  name: "writeFileAtomic creates and then replaces a file, leaving no temporary files",
  ...needs("read", "write"),
  fn: () =>
    withTempDir("io_atomic_test_", async (dir) => {
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
    withTempDir("io_atomic_test_", async (dir) => {
      // Renaming a file over a non-empty directory fails after the temporary file is written.
      const target = join(dir, "checkpoint");
      await Deno.mkdir(target);
      await Deno.writeTextFile(join(target, "inside"), "kept");
      await assert.rejects(writeFileAtomic(target, "new contents"));
      assert.equal(await Deno.readTextFile(join(target, "inside")), "kept");
      assert.deepEqual(await listDir(dir), ["checkpoint"]);

      const missing = join(dir, "missing", "file");
      await assert.rejects(writeFileAtomic(missing, "x"), {
        name: "FileWriteError",
        code: "ENOENT",
        message: `cannot write ${missing}: the folder ${join(dir, "missing")} does not exist ` +
          "(was it removed?): create it, or choose another path",
      });
      assert.deepEqual(await listDir(dir), ["checkpoint"]);
    }),
});

Deno.test({
  name: "appendJsonLine appends whole lines, also from concurrent writers",
  ...needs("read", "write"),
  fn: () =>
    withTempDir("io_atomic_test_", async (dir) => {
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

/** Asserts that `promise` rejects with a one-line FileWriteError that names no temporary file. */
async function assertWriteError(
  promise: Promise<unknown>,
  expected: { code: string; message: string },
): Promise<void> {
  let caught: unknown;
  await promise.catch((error) => caught = error);
  assert.ok(caught instanceof FileWriteError, `a FileWriteError, got ${caught}`);
  assert.deepEqual({ code: caught.code, message: caught.message }, expected);
}

const ATOMIC = new URL("../../src/io/atomic.ts", import.meta.url).href;

/**
 * Runs `writes` (TypeScript: `await`s of the helpers in atomic.ts, given `dir`) in a child
 * process with --allow-all, which /dev and /sys paths need; returns each error thrown, as
 * {name, code, message}, and the folder's files after.
 */
async function writesInChild(dir: string, writes: string[]) {
  const output = await runAllowingAll(`
    import * as atomic from ${JSON.stringify(ATOMIC)};
    const dir = ${JSON.stringify(dir)};
    const errors = [];
    for (const write of [${writes.map((write) => `async () => { ${write} }`).join(", ")}]) {
      try {
        await write();
        errors.push(null);
      } catch (error) {
        errors.push({ name: error.name, code: error.code, message: error.message });
      }
    }
    const files = [...Deno.readDirSync(dir)].map((entry) => entry.name).sort();
    console.log(JSON.stringify({ errors, files }));
  `);
  assert.equal(output.code, 0, output.stderr);
  return JSON.parse(output.stdout) as {
    errors: ({ name: string; code: string; message: string } | null)[];
    files: string[];
  };
}

Deno.test({
  name: "a full disk: one line naming the file written and the fix (ENOSPC from /dev/full)",
  ignore: needs("read", "write", "run").ignore || !hasDevFull,
  fn: () =>
    withTempDir("io_atomic_test_", async (dir) => {
      // The metrics log's path leads to /dev/full, which refuses every write as a full disk does;
      // and writeAtomically's own write hits the full disk after creating its temporary file.
      const metrics = join(dir, "metrics.jsonl");
      const checkpoint = join(dir, "last.safetensors");
      await Deno.symlink("/dev/full", metrics);
      const { errors, files } = await writesInChild(dir, [
        `await atomic.appendJsonLine(${JSON.stringify(metrics)}, { epoch: 1 });`,
        `await atomic.writeAtomically(${JSON.stringify(checkpoint)}, async (tempPath) => {
          await Deno.writeTextFile(tempPath, "partial");
          await Deno.writeFile("/dev/full", new Uint8Array(1 << 16));
        });`,
      ]);
      const fix = "no space left on the device: free some space, or write to another disk";
      assert.deepEqual(errors, [
        { name: "FileWriteError", code: "ENOSPC", message: `cannot write ${metrics}: ${fix}` },
        { name: "FileWriteError", code: "ENOSPC", message: `cannot write ${checkpoint}: ${fix}` },
      ]);
      assert.deepEqual(files, ["metrics.jsonl"], "no temporary file left");
    }),
});

Deno.test({
  name: "a folder that denies new files: one line naming the file, not the temporary one",
  ignore: needs("read", "write", "run").ignore || !canDenyWrites,
  fn: () =>
    withTempDir("io_atomic_test_", async (dir) => {
      const denied = (await deniedFolder(dir))!;
      const path = join(denied, "metrics.jsonl");
      const { errors } = await writesInChild(dir, [
        `await atomic.writeFileAtomic(${JSON.stringify(path)}, "{}\\n");`,
        `await atomic.appendJsonLine(${JSON.stringify(path)}, { epoch: 1 });`,
      ]);
      for (const error of errors) {
        assert.ok(error !== null);
        assert.equal(error.name, "FileWriteError");
        assert.match(error.code, /^(EACCES|EPERM)$/);
        assert.match(
          error.message,
          new RegExp(
            `^cannot write ${path}: (permission denied|not permitted): make ${denied} ` +
              "writable \\(chmod u\\+w\\), or write somewhere else$",
          ),
        );
      }
    }),
});

Deno.test({
  name: "a path through a file: one line naming the path",
  ...needs("read", "write"),
  fn: () =>
    withTempDir("io_atomic_test_", async (dir) => {
      const file = join(dir, "a-file");
      await Deno.writeTextFile(file, "");
      const path = join(file, "chart.svg");
      await assertWriteError(writeFileAtomic(path, "<svg/>"), {
        code: "ENOTDIR",
        message: `cannot write ${path}: a part of the path is a file, not a folder: choose ` +
          "another path",
      });
    }),
});

Deno.test({
  name: "errors that are not the file system's pass through writeAtomically as they are",
  ...needs("read", "write"),
  fn: () =>
    withTempDir("io_atomic_test_", async (dir) => {
      const own = new UsageError("the caller's own error");
      await assert.rejects(writeAtomically(join(dir, "x"), () => Promise.reject(own)), own);
      const bug = new TypeError("a bug");
      await assert.rejects(writeAtomically(join(dir, "x"), () => Promise.reject(bug)), bug);
      assert.deepEqual(await listDir(dir), []);
    }),
});

Deno.test({
  name: "copyFileAtomic copies whole, leaving no temporary file",
  ...needs("read", "write"),
  fn: () =>
    withTempDir("io_atomic_test_", async (dir) => {
      const bytes = new Uint8Array(1 << 20).map((_, i) => i % 253);
      await Deno.writeFile(join(dir, "last.safetensors"), bytes);
      await Deno.writeTextFile(join(dir, "best.safetensors"), "older");
      await copyFileAtomic(join(dir, "last.safetensors"), join(dir, "best.safetensors"));
      assert.deepEqual(await Deno.readFile(join(dir, "best.safetensors")), bytes);
      assert.deepEqual(await listDir(dir), ["best.safetensors", "last.safetensors"]);
    }),
});

Deno.test({
  name: "removeTemporaryFiles removes the leftovers of writeAtomically, and nothing else",
  ...needs("read", "write"),
  fn: () =>
    withTempDir("io_atomic_test_", async (dir) => {
      const leftovers = [
        `.last.safetensors.${crypto.randomUUID()}.tmp`,
        `.metrics.jsonl.${crypto.randomUUID()}.tmp`,
      ];
      const others = [
        ".lock",
        ".keep",
        "notes.tmp",
        ".chart.svg.not-a-uuid.tmp",
        "last.safetensors",
      ];
      for (const name of [...leftovers, ...others]) await Deno.writeTextFile(join(dir, name), "");
      // What writeAtomically names them, exactly.
      let named = "";
      await writeAtomically(join(dir, "chart.svg"), async (tempPath) => {
        named = tempPath.slice(dir.length + 1);
        await Deno.writeTextFile(tempPath, "<svg/>");
      });
      assert.ok(isTemporaryName(named), named);
      assert.ok(!others.some(isTemporaryName));

      assert.deepEqual(removeTemporaryFiles(dir).sort(), leftovers.sort());
      assert.deepEqual(await listDir(dir), [...others, "chart.svg"].sort());
      assert.deepEqual(removeTemporaryFiles(join(dir, "missing")), []);
    }),
});
