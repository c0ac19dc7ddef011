/**
 * The train command and its run folder, run as a user runs it (`deno run` in a subprocess): flag
 * combinations refused before any work, one run per folder, no leftovers after a failure or a
 * Ctrl-C, best.safetensors that holds what the last line says, and write errors in one line.
 * The tests that train use a generated CIFAR-10 and a tiny model, as tests/cli/train_e2e_test.ts
 * does; the others need no data and no GPU.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  assertOneLineError,
  assertSucceeded,
  cliCommand,
  type Output,
  outputLines,
  readCheckpoint,
  readMetrics,
  RECORDS_PER_FILE,
  REPOSITORY,
  runCommand,
  TASK_PERMISSIONS,
  TINY_RUN,
} from "../support/cli.ts";
import { exists, listDir } from "../support/files.ts";
import { binaryFiles, writeFiles } from "../support/data_fixtures.ts";
import { needs } from "../support/permissions.ts";
import { canDenyWrites, deniedFolder } from "../support/write_denial.ts";

/**
 * A generated CIFAR-10, made once for the tests that need the command to get past its data (which
 * it loads before it opens the run folder) and removed when the tests end.
 */
let sharedData: Promise<string> | undefined;
function generatedData(): Promise<string> {
  sharedData ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "run_folder_test_data_" });
    globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
    const data = join(dir, "cifar-10-batches-bin");
    await writeFiles(data, binaryFiles(RECORDS_PER_FILE));
    return data;
  })();
  return sharedData;
}

/** A started train process: its output read as it comes. */
class RunningTrain {
  readonly process: Deno.ChildProcess;
  readonly stdout: string[] = [];
  readonly stderr: string[] = [];
  readonly #done: Promise<unknown>;
  #waiters: { pattern: RegExp; resolve: () => void }[] = [];

  constructor(args: string[], tempDir: string) {
    this.process = cliCommand("train", args, tempDir).spawn();
    this.#done = Promise.all([
      this.#collect(this.process.stdout, this.stdout),
      this.#collect(this.process.stderr, this.stderr),
    ]);
  }

  async #collect(stream: ReadableStream<Uint8Array>, into: string[]): Promise<void> {
    let pending = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      pending += chunk;
      const parts = pending.split("\n");
      pending = parts.pop()!;
      into.push(...parts.filter((line) => line.length > 0));
      this.#waiters = this.#waiters.filter(({ pattern, resolve }) => {
        if (!into.some((line) => pattern.test(line))) return true;
        resolve();
        return false;
      });
    }
    if (pending.length > 0) into.push(pending);
  }

  /** Resolves once a line of stdout or stderr matches `pattern`. */
  lineMatching(pattern: RegExp): Promise<void> {
    if ([...this.stdout, ...this.stderr].some((line) => pattern.test(line))) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#waiters.push({ pattern, resolve }));
  }

  async finished(): Promise<Output> {
    const status = await this.process.status;
    await this.#done;
    return { code: status.code, stdout: this.stdout, stderr: this.stderr };
  }
}

/**
 * Checks the final line's promise: the file it names holds the epoch it names, and that epoch is
 * the best of the run's metrics.
 */
async function assertBestLineTrue(output: Output, runDir: string): Promise<number> {
  const line = output.stdout.find((line) => line.startsWith("best test accuracy"));
  assert.ok(line, output.stdout.join("\n"));
  const match = line.match(/^best test accuracy ([\d.]+)% after epoch (\d+): (.+)$/);
  assert.ok(match, line);
  const [, percent, epochText, path] = match;
  const epoch = Number(epochText);
  const metrics = await readMetrics(runDir);
  const best = metrics.reduce((a, b) => b.testAccuracy > a.testAccuracy ? b : a);
  assert.equal(epoch, best.epoch);
  assert.equal(percent, (best.testAccuracy * 100).toFixed(2));
  assert.ok(await exists(path), `${path}, named by "${line}", exists`);
  const held = (await readCheckpoint(path)).metadata;
  assert.equal(held?.epoch, epoch, `${path} holds epoch ${epoch}`);
  assert.deepEqual(held?.training?.history, metrics.slice(0, epoch));
  return epoch;
}

function leftover(name: string): string {
  return `.${name}.${crypto.randomUUID()}.tmp`;
}

Deno.test({
  name: "flag combinations are refused before the data, the run folder and the GPU",
  ...needs("read", "write", "run", "env"),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "run_folder_test_" });
    try {
      // No data there: a command that got as far as loading it would say so instead.
      const noData = ["--data", join(dir, "no-such-data.tar.gz")];
      const runDir = join(dir, "runs", "x");
      const cases: [string[], RegExp][] = [
        // One step in all: one-cycle needs two.
        [["--limit", "128", "--epochs", "1"], /one-cycle schedule: .* \(1 epochs of 1 steps\)/],
        [
          [
            "--limit",
            "128",
            "--batch-size",
            "64",
            "--epochs",
            "1",
            "--schedule",
            "cosine",
            "--warmup",
            "0.75",
          ],
          /^error: cosine schedule: .*\(1 epochs of 2 steps\): use more epochs or images/,
        ],
        [
          ["--limit", "100", "--batch-size", "128"],
          /^error: --batch-size 128 is more than the 100 training images: use a smaller/,
        ],
        [["--limit", "60000"], /^error: --limit 60000 is more than the 50000 training images$/],
        [["--test-limit", "10001"], /^error: --test-limit 10001 is more than the 10000 test/],
        [["--epochs", "2", "--stop-after", "3"], /^error: --stop-after 3 must come after/],
      ];
      for (const [flags, expected] of cases) {
        const output = await runCommand("train", [...flags, ...noData, "--run-dir", runDir], dir);
        assert.match(assertOneLineError(output), expected);
        assert.deepEqual(output.stdout, [], "nothing printed: no adapter was asked for");
        assert.ok(!await exists(join(dir, "runs")), "no run folder made");
      }

      // A run that fails later (here: the data) leaves no folder either.
      const output = await runCommand("train", [...noData, "--run-dir", runDir], dir);
      assert.match(assertOneLineError(output), /no-such-data\.tar\.gz/);
      assert.deepEqual(await listDir(dir), []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a run folder in use: the second run stops with one line; a killed holder frees it",
  ...needs("read", "write", "run", "env"),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "run_folder_test_" });
    const runDir = join(dir, "run");
    const data = ["--data", await generatedData()];
    // Another process holding the folder, as a training run does while it runs.
    const holder = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `import { RunDirectory } from "./src/train/run_dir.ts";
        await RunDirectory.open(${JSON.stringify(runDir)}, { chartTitle: "", continuing: false });
        console.log("locked");
        await new Promise((resolve) => setTimeout(resolve, 600_000));`,
      ],
      cwd: REPOSITORY,
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    try {
      const reader = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
      assert.equal((await reader.read()).value?.trim(), "locked");
      reader.releaseLock();
      const output = await runCommand("train", [...TINY_RUN, ...data, "--run-dir", runDir], dir);
      assert.equal(
        assertOneLineError(output),
        `error: ${runDir} is in use by another training run (process ${holder.pid}): wait for ` +
          "it to end, or choose another --run-dir",
      );
      assert.deepEqual(output.stdout, []);
      assert.deepEqual(await listDir(runDir), [".lock"], "the holder's lock file untouched");

      holder.kill("SIGKILL");
      await holder.status;
      // Killed, the holder left its lock file; its lock went with it. The next run takes the
      // folder, fails while planning (a batch whose activations exceed a binding), and leaves the
      // folder (which it did not make) empty.
      const tooLarge = ["--width", "1", "--limit", "600", "--batch-size", "600"];
      const next = await runCommand("train", [...tooLarge, ...data, "--run-dir", runDir], dir);
      assert.match(assertOneLineError(next), /over this device's limit .* per buffer/);
      assert.deepEqual(await listDir(runDir), []);
    } finally {
      try {
        holder.kill("SIGKILL");
      } catch {
        // Already killed.
      }
      await holder.status;
      await holder.stdout.cancel().catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "Ctrl-C during a write: the temporary file and the lock are removed, the run kept",
  ...needs("read", "write", "run", "env"),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "run_folder_test_" });
    const runDir = join(dir, "run");
    await Deno.mkdir(runDir);
    await Deno.writeTextFile(join(runDir, "last.safetensors"), "epoch 1");
    // The train command's handler, installed as train installs it, around a checkpoint write
    // that has created its temporary file and not finished: where Ctrl-C lands in a long write.
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `import { RunDirectory } from "./src/train/run_dir.ts";
        import { releaseOnInterrupt } from "./src/cli/train.ts";
        import { writeAtomically } from "./src/io/atomic.ts";
        const runDir = await RunDirectory.open(${JSON.stringify(runDir)}, {
          chartTitle: "",
          continuing: true,
        });
        releaseOnInterrupt(runDir, () => "what next");
        await writeAtomically(runDir.lastCheckpointPath, async (tempPath) => {
          await Deno.writeTextFile(tempPath, "half of epoch 2");
          console.log("writing");
          await new Promise((resolve) => setTimeout(resolve, 600_000));
        });`,
      ],
      cwd: REPOSITORY,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    try {
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      assert.equal((await reader.read()).value?.trim(), "writing");
      reader.releaseLock();
      assert.equal((await listDir(runDir)).filter((name) => name.endsWith(".tmp")).length, 1);
      child.kill("SIGINT");
      const status = await child.status;
      const stderr = new TextDecoder().decode(
        new Uint8Array(await new Response(child.stderr).arrayBuffer()),
      );
      assert.equal(status.code, 130);
      assert.deepEqual(outputLines(stderr), ["stopped by SIGINT: what next"]);
      assert.deepEqual(await listDir(runDir), ["last.safetensors"]);
      assert.equal(await Deno.readTextFile(join(runDir, "last.safetensors")), "epoch 1");
    } finally {
      try {
        child.kill("SIGKILL");
      } catch {
        // Exited already.
      }
      await child.status;
      await child.stdout.cancel().catch(() => {});
      await child.stderr.cancel().catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a run folder that cannot be written: one line naming the path and the fix",
  ...needs("read", "write", "run", "env"),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "run_folder_test_" });
    try {
      const data = ["--data", await generatedData()];
      const file = join(dir, "a-file");
      await Deno.writeTextFile(file, "");
      const output = await runCommand("train", [...data, "--run-dir", join(file, "run")], dir);
      assert.equal(
        assertOneLineError(output),
        `error: cannot create the folder ${join(file, "run")}: a part of the path is a file, ` +
          "not a folder: choose another path",
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a run folder that denies new files: one line naming the path and the fix",
  ignore: needs("read", "write", "run", "env").ignore || !canDenyWrites,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "run_folder_test_" });
    try {
      const denied = (await deniedFolder(dir))!;
      // Deno asks for --allow-all for /sys paths, the folder that denies root.
      const permissions = denied.startsWith("/sys/") ? ["--allow-all"] : TASK_PERMISSIONS;
      const data = ["--data", await generatedData()];
      const output = await runCommand("train", [...data, "--run-dir", denied], dir, permissions);
      assert.match(
        assertOneLineError(output),
        new RegExp(
          `^error: cannot lock ${join(denied, ".lock")}: (permission denied|not permitted): ` +
            `make ${denied} writable \\(chmod u\\+w\\), or write somewhere else$`,
        ),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "training runs: one per folder, best.safetensors as the last line says, no leftovers",
  ...needs("read", "write", "run", "env"),
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "run_folder_test_" });
    const data = join(dir, "cifar-10-batches-bin");
    await writeFiles(data, binaryFiles(RECORDS_PER_FILE));
    const tiny = [...TINY_RUN, "--data", data];
    const a = join(dir, "a");
    try {
      await t.step("two runs started at once into one folder: one trains, one stops", async () => {
        const args = [...tiny, "--epochs", "3", "--stop-after", "1", "--run-dir", a];
        const runs = [new RunningTrain(args, dir), new RunningTrain(args, dir)];
        const outputs = await Promise.all(runs.map((run) => run.finished()));
        const winner = outputs.findIndex((output) => output.code === 0);
        assert.ok(winner >= 0, outputs.map((output) => output.stderr.join("\n")).join("\n"));
        const loser = outputs[1 - winner];
        // The loser may look between the winner's lock and its writing of its pid into the lock
        // file: the line then says the holder is starting.
        const holders = [`process ${runs[winner].process.pid}`, "it is starting"];
        assert.ok(
          holders.map((holder) =>
            `error: ${a} is in use by another training run (${holder}): wait for it to end, or ` +
            "choose another --run-dir"
          ).includes(assertOneLineError(loser)),
          loser.stderr.join("\n"),
        );
        assert.deepEqual(loser.stdout, []);
        assert.deepEqual((await readMetrics(a)).map((record) => record.epoch), [1]);
        assert.deepEqual(await listDir(a), [
          "best.safetensors",
          "chart.svg",
          "last.safetensors",
          "metrics.jsonl",
        ]);
      });

      await t.step("--resume into another folder writes best.safetensors there", async () => {
        const b = join(dir, "b");
        const output = await runCommand("train", [
          "--resume",
          a,
          "--run-dir",
          b,
          "--stop-after",
          "2",
        ], dir);
        assertSucceeded(output);
        // Where epoch 1 stays the best (as on the adapters tried), b's best.safetensors is a's.
        await assertBestLineTrue(output, b);
      });

      await t.step("killed between last and best, with leftovers: resumed, all true", async () => {
        // What a kill between the renames of last.safetensors and best.safetensors after epoch
        // 1 leaves, with the temporary files of killed writes.
        await Deno.remove(join(a, "best.safetensors"));
        const leftovers = [leftover("last.safetensors"), leftover("metrics.jsonl")];
        for (const name of leftovers) await Deno.writeTextFile(join(a, name), "partial");
        const output = await runCommand("train", ["--resume", a, "--stop-after", "2"], dir);
        assertSucceeded(output);
        await assertBestLineTrue(output, a);
        assert.deepEqual(await listDir(a), [
          "best.safetensors",
          "chart.svg",
          "last.safetensors",
          "metrics.jsonl",
        ]);
      });

      await t.step("Ctrl-C before the first epoch ends: nothing left", async () => {
        const c = join(dir, "runs", "c");
        const run = new RunningTrain([...tiny, "--epochs", "2", "--run-dir", c], dir);
        // The header is printed once the GPU is set up, before the first step.
        await run.lineMatching(/^run: /);
        run.process.kill("SIGINT");
        const output = await run.finished();
        assert.equal(output.code, 130, output.stderr.join("\n"));
        assert.deepEqual(output.stderr, [
          "stopped by SIGINT: no epoch had finished, nothing was kept",
        ]);
        assert.ok(!await exists(join(dir, "runs")), "the folders it made are gone");
      });

      await t.step("Ctrl-C of a resumed run: its folder as it was, and how to go on", async () => {
        const before = await Deno.readFile(join(a, "last.safetensors"));
        const run = new RunningTrain(["--resume", a], dir);
        await run.lineMatching(/^run: /);
        run.process.kill("SIGINT");
        const output = await run.finished();
        assert.equal(output.code, 130, output.stderr.join("\n"));
        const last = join(a, "last.safetensors");
        assert.deepEqual(output.stderr, [
          `stopped by SIGINT: no new epoch had finished; continue with deno task train --resume ${a}`,
        ]);
        assert.deepEqual(await listDir(a), [
          "best.safetensors",
          "chart.svg",
          "last.safetensors",
          "metrics.jsonl",
        ]);
        assert.deepEqual(await Deno.readFile(last), before);
        assert.deepEqual((await readMetrics(a)).map((record) => record.epoch), [1, 2]);
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
