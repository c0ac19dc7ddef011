/**
 * The commands run as a user runs them, for the CLI tests: `deno run src/cli/<command>.ts` in a
 * subprocess, with the permissions the deno.json tasks grant, on a generated CIFAR-10.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Checkpoint, decodeCheckpoint } from "../../src/model/checkpoint.ts";
import { type EpochRecord, epochRecordSchema } from "../../src/train/history.ts";

export const REPOSITORY = fileURLToPath(new URL("../..", import.meta.url));
/** The loader takes only full-size batch files, as the official ones are. */
export const RECORDS_PER_FILE = 10000;
/** TINY_RUN's evaluation: the first 256 test images, in batches of 32. */
export const TINY_EVAL = ["--eval-batch-size", "32", "--test-limit", "256"];
/** A run that takes seconds: ResNet-18 at width 1/16, 4 steps of 16 images, 256 test images. */
export const TINY_RUN = ["--width", "0.0625", "--limit", "64", "--batch-size", "16", ...TINY_EVAL];
/** The permissions `deno task train` and `deno task eval` grant. */
export const TASK_PERMISSIONS = ["--allow-read", "--allow-write", "--allow-env"];

export interface Output {
  code: number;
  stdout: string[];
  stderr: string[];
}

/** The non-empty lines of a command's output. */
export function outputLines(text: string): string[] {
  return text.split("\n").filter((line) => line.length > 0);
}

/** `deno run src/cli/<command>.ts args...`, to spawn or to run to its end. */
export function cliCommand(
  command: string,
  args: string[],
  tempDir: string,
  permissions = TASK_PERMISSIONS,
): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...permissions, `src/cli/${command}.ts`, ...args],
    cwd: REPOSITORY,
    // Mesa warns on stderr without a runtime folder.
    env: { XDG_RUNTIME_DIR: tempDir },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** Runs a command to its end. */
export async function runCommand(
  command: string,
  args: string[],
  tempDir: string,
  permissions = TASK_PERMISSIONS,
): Promise<Output> {
  const output = await cliCommand(command, args, tempDir, permissions).output();
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return {
    code: output.code,
    stdout: outputLines(text(output.stdout)),
    stderr: outputLines(text(output.stderr)),
  };
}

/** `eval` of a checkpoint on the CIFAR-10 in `data`, on TINY_RUN's test images; `extra` flags. */
export function runTinyEval(
  checkpoint: string,
  data: string,
  tempDir: string,
  extra: string[] = [],
): Promise<Output> {
  return runCommand(
    "eval",
    ["--checkpoint", checkpoint, "--data", data, ...TINY_EVAL, ...extra],
    tempDir,
  );
}

export function assertSucceeded(output: Output): void {
  assert.equal(output.code, 0, [...output.stdout, ...output.stderr].join("\n"));
}

/** Exit code 1 and exactly one line on stderr, `error: ...`, which is returned. */
export function assertOneLineError(output: Output): string {
  const all = [...output.stdout, ...output.stderr].join("\n");
  assert.equal(output.code, 1, all);
  assert.equal(output.stderr.length, 1, all);
  assert.match(output.stderr[0], /^error: /);
  return output.stderr[0];
}

/** A run folder's metrics.jsonl, each line checked. */
export async function readMetrics(runDir: string): Promise<EpochRecord[]> {
  const text = await Deno.readTextFile(join(runDir, "metrics.jsonl"));
  return text.trimEnd().split("\n").map((line) => epochRecordSchema.parse(JSON.parse(line)));
}

export async function readCheckpoint(path: string): Promise<Checkpoint> {
  return decodeCheckpoint(await Deno.readFile(path), path);
}
