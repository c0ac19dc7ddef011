/**
 * The run folder without a GPU: its lock, the leftovers it removes, what a run that saved nothing
 * leaves (nothing), best.safetensors reconciled with the history on resume, and its write errors.
 * Checkpoints here are safetensors files with a checkpoint's metadata and one tensor that tells
 * them apart: the run folder reads only their headers.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { bestLine } from "../../src/cli/train.ts";
import { FileWriteError } from "../../src/io/atomic.ts";
import { encodeSafetensors } from "../../src/io/safetensors.ts";
import { CHECKPOINT_FORMAT } from "../../src/model/checkpoint.ts";
import { resnetConfig } from "../../src/model/config.ts";
import {
  RunDirectory,
  type RunDirectoryOptions,
  RunFolderInUseError,
} from "../../src/train/run_dir.ts";
import { needs } from "../support/permissions.ts";
import { canDenyWrites, deniedFolder, runAllowingAll } from "../support/write_denial.ts";
import { exists, listDir, withTempDir } from "../support/files.ts";
import type { EpochRecord } from "../../src/train/history.ts";
import { makeHistory } from "../support/history.ts";

const RUN_DIR_MODULE = new URL("../../src/train/run_dir.ts", import.meta.url).href;

const NEW_RUN: RunDirectoryOptions = { chartTitle: "test run", continuing: false };

/** The bytes of a training checkpoint at the end of epoch history.length; `marker` tells it apart. */
function checkpointBytes(history: EpochRecord[], marker = history.length): Uint8Array {
  const metadata = {
    format: CHECKPOINT_FORMAT,
    model: resnetConfig("resnet18", 0.0625),
    epoch: history.length,
    step: history.at(-1)?.step ?? 0,
    seed: 0,
    training: { history },
  };
  const tensors = new Map([["marker", {
    dtype: "F32" as const,
    shape: [1],
    data: Float32Array.of(marker),
  }]]);
  return encodeSafetensors(tensors, { checkpoint: JSON.stringify(metadata) });
}

/** A run folder as a run leaves it after `history` (its files written directly). */
async function writeRun(dir: string, history: EpochRecord[], bestEpoch: number): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeFile(join(dir, "last.safetensors"), checkpointBytes(history));
  const best = history.slice(0, bestEpoch);
  await Deno.writeFile(join(dir, "best.safetensors"), checkpointBytes(best));
  await Deno.writeTextFile(
    join(dir, "metrics.jsonl"),
    history.map((record) => JSON.stringify(record) + "\n").join(""),
  );
  await Deno.writeTextFile(join(dir, "chart.svg"), "<svg/>");
}

/** The epoch a checkpoint file holds, from its marker tensor. */
async function markerOf(path: string): Promise<number> {
  const bytes = await Deno.readFile(path);
  return new Float32Array(bytes.slice(bytes.length - 4).buffer)[0];
}

Deno.test({
  name: "open makes the folder and takes its lock; a run that saved nothing leaves nothing",
  ...needs("read", "write"),
  fn: () =>
    withTempDir("run_dir_test_", async (dir) => {
      const path = join(dir, "runs", "first");
      const run = await RunDirectory.open(path, NEW_RUN);
      assert.deepEqual(await listDir(path), [".lock"]);
      assert.equal(await Deno.readTextFile(join(path, ".lock")), `${Deno.pid}\n`);
      run.release();
      assert.deepEqual(await listDir(dir), [], "the folders it made are gone");
      run.release(); // again: nothing more

      // A folder that was there stays, without the lock file.
      const made = join(dir, "made-by-hand");
      await Deno.mkdir(made);
      (await RunDirectory.open(made, NEW_RUN)).release();
      assert.deepEqual(await listDir(made), []);

      // So does anything put into the folder meanwhile, with the folder.
      const shared = join(dir, "shared");
      const sharedRun = await RunDirectory.open(shared, NEW_RUN);
      await Deno.writeTextFile(join(shared, "notes.txt"), "mine");
      sharedRun.release();
      assert.deepEqual(await listDir(shared), ["notes.txt"]);
    }),
});

Deno.test({
  name: "a folder in use is refused with one line naming the process; free again on release",
  ...needs("read", "write"),
  fn: () =>
    withTempDir("run_dir_test_", async (dir) => {
      const first = await RunDirectory.open(dir, NEW_RUN);
      await assert.rejects(RunDirectory.open(dir, NEW_RUN), (error: unknown) => {
        assert.ok(error instanceof RunFolderInUseError);
        assert.equal(
          error.message,
          `${dir} is in use by another training run (process ${Deno.pid}): wait for it to end, ` +
            "or choose another --run-dir",
        );
        return true;
      });
      // The refused open took nothing from the holder.
      assert.equal(await Deno.readTextFile(join(dir, ".lock")), `${Deno.pid}\n`);
      first.release();
      assert.deepEqual(await listDir(dir), []);
      (await RunDirectory.open(dir, NEW_RUN)).release();
    }),
});

Deno.test({
  name: "the lock of a killed process does not stick",
  ...needs("read", "write", "run"),
  fn: () =>
    withTempDir("run_dir_test_", async (dir) => {
      const path = join(dir, "run");
      const holder = new Deno.Command(Deno.execPath(), {
        args: [
          "eval",
          `import { RunDirectory } from ${JSON.stringify(RUN_DIR_MODULE)};
          await RunDirectory.open(${JSON.stringify(path)}, { chartTitle: "", continuing: false });
          console.log("locked");
          await new Promise((resolve) => setTimeout(resolve, 600_000));`,
        ],
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      try {
        const lines = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
        assert.equal((await lines.read()).value?.trim(), "locked");
        lines.releaseLock();
        await assert.rejects(
          RunDirectory.open(path, NEW_RUN),
          new RegExp(`in use by another training run \\(process ${holder.pid}\\)`),
        );
      } finally {
        holder.kill("SIGKILL");
        await holder.status;
        await holder.stdout.cancel().catch(() => {});
      }
      // Killed, it left its lock file (holding its pid), but the system released the lock.
      assert.deepEqual(await listDir(path), [".lock"]);
      const run = await RunDirectory.open(path, NEW_RUN);
      assert.equal(await Deno.readTextFile(join(path, ".lock")), `${Deno.pid}\n`);
      run.release();
    }),
});

Deno.test({
  name: "open removes the temporary files killed writes left, and nothing else",
  ...needs("read", "write"),
  fn: () =>
    withTempDir("run_dir_test_", async (dir) => {
      await writeRun(dir, makeHistory([0.1, 0.2]), 2);
      const leftovers = [
        `.last.safetensors.${crypto.randomUUID()}.tmp`,
        `.metrics.jsonl.${crypto.randomUUID()}.tmp`,
      ];
      for (const name of [...leftovers, ".keep", "notes.tmp"]) {
        await Deno.writeTextFile(join(dir, name), "");
      }
      const run = await RunDirectory.open(dir, { ...NEW_RUN, continuing: true });
      assert.deepEqual(await listDir(dir), [
        ".keep",
        ".lock",
        "best.safetensors",
        "chart.svg",
        "last.safetensors",
        "metrics.jsonl",
        "notes.tmp",
      ]);
      run.release();
      // A resumed run that saved nothing new keeps the run's files.
      assert.deepEqual(await listDir(dir), [
        ".keep",
        "best.safetensors",
        "chart.svg",
        "last.safetensors",
        "metrics.jsonl",
        "notes.tmp",
      ]);
    }),
});

Deno.test({
  name: "a folder that holds any file of a run is refused to a new run, and left as it was",
  ...needs("read", "write"),
  fn: () =>
    withTempDir("run_dir_test_", async (dir) => {
      for (const name of ["last.safetensors", "metrics.jsonl", "best.safetensors", "chart.svg"]) {
        const path = join(dir, name.replace(".", "-"));
        await Deno.mkdir(path);
        await Deno.writeTextFile(join(path, name), "");
        await assert.rejects(RunDirectory.open(path, NEW_RUN), {
          name: "UsageError",
          message: `${path} already holds a run (${join(path, name)}): continue it with ` +
            `--resume ${path}, or choose another --run-dir`,
        });
        assert.deepEqual(await listDir(path), [name]);
      }
    }),
});

Deno.test({
  name: "saveEpoch: last and best hold their epochs, and the final line names the right one",
  ...needs("read", "write"),
  fn: () =>
    withTempDir("run_dir_test_", async (dir) => {
      const history = makeHistory([0.3, 0.2]);
      const run = await RunDirectory.open(dir, NEW_RUN);
      await run.saveEpoch(checkpointBytes(history.slice(0, 1)), history.slice(0, 1), true);
      await run.saveEpoch(checkpointBytes(history), history, false);
      assert.equal(run.checkpointOf(1), join(dir, "best.safetensors"));
      assert.equal(run.checkpointOf(2), join(dir, "last.safetensors"));
      assert.equal(
        bestLine(history, run),
        `best test accuracy 30.00% after epoch 1: ${join(dir, "best.safetensors")}`,
      );
      run.release();
      assert.deepEqual(await listDir(dir), [
        "best.safetensors",
        "chart.svg",
        "last.safetensors",
        "metrics.jsonl",
      ]);
      assert.equal(await markerOf(join(dir, "best.safetensors")), 1);
    }),
});

Deno.test({
  name: "resume: best.safetensors rewritten from last when a kill left it missing or stale",
  ...needs("read", "write"),
  fn: () =>
    withTempDir("run_dir_test_", async (dir) => {
      // Killed between writing last.safetensors and best.safetensors at epoch 3, its best: the
      // file holds epoch 1 (stale), or, at epoch 1, nothing (missing).
      for (const [accuracies, best] of [[[0.2, 0.1, 0.3], 1], [[0.2], 0]] as const) {
        const history = makeHistory([...accuracies]);
        const path = join(dir, `killed-${history.length}`);
        await writeRun(path, history, best);
        if (best === 0) await Deno.remove(join(path, "best.safetensors"));
        const last = join(path, "last.safetensors");
        const run = await RunDirectory.open(path, {
          ...NEW_RUN,
          continuing: true,
          resumeSource: last,
        });
        await run.restart(history);
        const bestPath = join(path, "best.safetensors");
        assert.deepEqual(await Deno.readFile(bestPath), await Deno.readFile(last));
        assert.equal(run.checkpointOf(history.length), bestPath);
        assert.equal(
          bestLine(history, run),
          `best test accuracy ${accuracies.at(-1)! * 100}.00% after epoch ${history.length}: ` +
            bestPath,
        );
        // Stopped before an epoch ends, the resumed run keeps the folder as restart() left it.
        run.release();
        assert.deepEqual(await Deno.readFile(bestPath), await Deno.readFile(last));
      }
    }),
});

Deno.test({
  name: "resume: a best.safetensors that holds the best epoch is kept",
  ...needs("read", "write"),
  fn: () =>
    withTempDir("run_dir_test_", async (dir) => {
      const history = makeHistory([0.2, 0.4, 0.3]);
      await writeRun(dir, history, 2);
      const before = await Deno.stat(join(dir, "best.safetensors"));
      const run = await RunDirectory.open(dir, {
        ...NEW_RUN,
        continuing: true,
        resumeSource: join(dir, "last.safetensors"),
      });
      await run.restart(history);
      assert.equal(run.checkpointOf(2), join(dir, "best.safetensors"));
      assert.equal(run.checkpointOf(3), join(dir, "last.safetensors"));
      assert.equal(await markerOf(join(dir, "best.safetensors")), 2);
      assert.equal((await Deno.stat(join(dir, "best.safetensors"))).ino, before.ino);
      run.release();
    }),
});

Deno.test({
  name: "resume into another folder: best.safetensors taken from the checkpoint or beside it",
  ...needs("read", "write"),
  fn: () =>
    withTempDir("run_dir_test_", async (dir) => {
      const old = join(dir, "old");
      // The best epoch is the one resumed from: copied from it.
      const rising = makeHistory([0.1, 0.3]);
      await writeRun(old, rising, 2);
      const source = join(old, "last.safetensors");
      let run = await RunDirectory.open(join(dir, "new-a"), { ...NEW_RUN, resumeSource: source });
      await run.restart(rising);
      assert.equal(await markerOf(join(dir, "new-a", "best.safetensors")), 2);
      assert.equal(run.checkpointOf(2), join(dir, "new-a", "best.safetensors"));
      run.release();

      // An earlier one: copied from the best.safetensors beside it.
      const falling = makeHistory([0.3, 0.1]);
      await writeRun(old, falling, 1);
      run = await RunDirectory.open(join(dir, "new-b"), { ...NEW_RUN, resumeSource: source });
      await run.restart(falling);
      assert.equal(await markerOf(join(dir, "new-b", "best.safetensors")), 1);
      assert.equal(run.checkpointOf(1), join(dir, "new-b", "best.safetensors"));

      // Nothing saved yet when it stops: the folders it made go, what they copied with them.
      run.release();
      assert.deepEqual(await listDir(dir), ["old"]);

      // A folder that was there stays, emptied of what the run put there.
      const emptyBefore = join(dir, "new-c");
      await Deno.mkdir(emptyBefore);
      run = await RunDirectory.open(emptyBefore, { ...NEW_RUN, resumeSource: source });
      await run.restart(falling);
      assert.deepEqual(await listDir(emptyBefore), [
        ".lock",
        "best.safetensors",
        "chart.svg",
        "metrics.jsonl",
      ]);
      run.release();
      assert.deepEqual(await listDir(emptyBefore), []);
    }),
});

Deno.test({
  name: "resume with no checkpoint of the best epoch left: the final line says so, naming none",
  ...needs("read", "write"),
  fn: () =>
    withTempDir("run_dir_test_", async (dir) => {
      const old = join(dir, "old");
      const history = makeHistory([0.3, 0.1]);
      await writeRun(old, history, 1);
      await Deno.remove(join(old, "best.safetensors"));
      const run = await RunDirectory.open(join(dir, "new"), {
        ...NEW_RUN,
        resumeSource: join(old, "last.safetensors"),
      });
      await run.restart(history);
      assert.equal(run.checkpointOf(1), undefined);
      assert.ok(!await exists(join(dir, "new", "best.safetensors")));
      assert.equal(
        bestLine(history, run),
        "best test accuracy 30.00% after epoch 1 (no checkpoint of that epoch was kept; " +
          `${join(dir, "new", "best.safetensors")} holds no epoch of this run)`,
      );

      // A best.safetensors of another run (its history differs) is not taken for this one's.
      const other = makeHistory([0.3, 0.1]);
      other[0] = { ...other[0], elapsedSeconds: 99 };
      await Deno.writeFile(join(old, "best.safetensors"), checkpointBytes(other.slice(0, 1)));
      await run.restart(history);
      assert.equal(run.checkpointOf(1), undefined);
      run.release();
    }),
});

Deno.test({
  name: "a run folder through a file: one line naming the path, nothing made",
  ...needs("read", "write"),
  fn: () =>
    withTempDir("run_dir_test_", async (dir) => {
      const file = join(dir, "a-file");
      await Deno.writeTextFile(file, "");
      const path = join(file, "runs", "x");
      await assert.rejects(RunDirectory.open(path, NEW_RUN), (error: unknown) => {
        assert.ok(error instanceof FileWriteError);
        assert.equal(
          error.message,
          `cannot create the folder ${path}: a part of the path is a file, not a folder: ` +
            "choose another path",
        );
        return true;
      });
      assert.deepEqual(await listDir(dir), ["a-file"]);
    }),
});

Deno.test({
  name: "a run folder that denies new files: one line naming the lock file and the fix",
  ignore: needs("read", "write", "run").ignore || !canDenyWrites,
  fn: () =>
    withTempDir("run_dir_test_", async (dir) => {
      const denied = (await deniedFolder(dir))!;
      // In a child with --allow-all: Deno asks for it for /sys paths.
      const output = await runAllowingAll(`
        import { RunDirectory } from ${JSON.stringify(RUN_DIR_MODULE)};
        try {
          await RunDirectory.open(${JSON.stringify(denied)}, { chartTitle: "", continuing: false });
        } catch (error) {
          console.log(JSON.stringify({ name: error.name, message: error.message }));
        }
      `);
      assert.equal(output.code, 0, output.stderr);
      const { name, message } = JSON.parse(output.stdout);
      assert.equal(name, "FileWriteError");
      const lock = join(denied, ".lock");
      assert.match(
        message,
        new RegExp(
          `^cannot lock ${lock}: (permission denied|not permitted): make ${denied} writable ` +
            "\\(chmod u\\+w\\), or write somewhere else$",
        ),
      );
    }),
});
