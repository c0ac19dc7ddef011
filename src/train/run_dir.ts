/**
 * A training run's folder: metrics.jsonl (one JSON line per epoch), last.safetensors (rewritten
 * every epoch), best.safetensors (the best test accuracy so far) and chart.svg. Every file is
 * replaced whole or appended to by whole lines, so a run stopped at any moment leaves a folder
 * that --resume can continue. One process writes to a folder at a time (a lock file, .lock).
 */
import { dirname, join, resolve } from "node:path";
import { z } from "zod";
import {
  appendJsonLine,
  copyFileAtomic,
  fileWriteError,
  removeTemporaryFiles,
  writeFileAtomic,
} from "../io/atomic.ts";
import { UsageError, UserError } from "../errors.ts";
import { renderTrainingChart } from "./chart.ts";
import { exists } from "../io/files.ts";
import { bestEpoch, type EpochRecord } from "./history.ts";
import type { RunStore } from "./run_store.ts";

const METRICS = "metrics.jsonl";
const LAST = "last.safetensors";
const BEST = "best.safetensors";
const CHART = "chart.svg";
/** Held (flock) by the one run writing to the folder; it holds that run's process id. */
const LOCK = ".lock";
const RUN_FILES = [METRICS, LAST, BEST, CHART];

/** Another process holds the run folder's lock. */
export class RunFolderInUseError extends UserError {
  override name = "RunFolderInUseError";
}

export interface RunDirectoryOptions {
  /** The chart's title. */
  chartTitle: string;
  /**
   * The run goes on in this folder (--resume of a run in it), so its files are its own; otherwise
   * a folder that holds a run's files is refused.
   */
  continuing: boolean;
  /**
   * The checkpoint a resumed run starts from: when the best epoch so far is not in the folder's
   * best.safetensors, restart() takes it from there, or from the best.safetensors beside it.
   */
  resumeSource?: string;
}

/**
 * A run folder, held by one process at a time: open() takes its lock (a killed process's lock
 * is released by the system) and removes the temporary files killed writes left; release()
 * gives it back, removing what this run made when it saved no epoch.
 */
export class RunDirectory implements RunStore {
  readonly metricsPath: string;
  readonly lastCheckpointPath: string;
  readonly bestCheckpointPath: string;
  readonly chartPath: string;
  readonly lockPath: string;

  readonly #resumeSource?: string;
  readonly #continuing: boolean;
  #lock?: Deno.FsFile;
  /** Folders open() made, innermost first: removed again if no epoch is saved. */
  #createdFolders: string[] = [];
  /** The run's files that were there before open(): never removed. */
  #foundFiles = new Set<string>();
  #epochsSaved = 0;
  /** The epochs of this run's history that best.safetensors and last.safetensors hold, if any. */
  #bestEpoch?: number;
  #lastEpoch?: number;
  #released = false;

  private constructor(
    readonly path: string,
    readonly chartTitle: string,
    continuing: boolean,
    resumeSource?: string,
  ) {
    this.metricsPath = join(path, METRICS);
    this.lastCheckpointPath = join(path, LAST);
    this.bestCheckpointPath = join(path, BEST);
    this.chartPath = join(path, CHART);
    this.lockPath = join(path, LOCK);
    this.#continuing = continuing;
    this.#resumeSource = resumeSource;
  }

  /**
   * Opens `path` for a run: creates the folder if needed, takes its lock (refusing a folder
   * another process is running in) and removes the temporary files of writes a killed run left.
   * A folder that already holds a run is refused unless `continuing` says this is that run going
   * on: its files would be overwritten. Call release() when the run ends, however it ends.
   */
  static async open(path: string, options: RunDirectoryOptions): Promise<RunDirectory> {
    const run = new RunDirectory(
      path,
      options.chartTitle,
      options.continuing,
      options.resumeSource,
    );
    run.#createdFolders = await createFolder(path);
    try {
      await run.#takeLock();
      for (const name of RUN_FILES) {
        if (await exists(join(path, name))) run.#foundFiles.add(name);
      }
      if (!options.continuing) {
        const found = [LAST, METRICS, BEST, CHART].find((name) => run.#foundFiles.has(name));
        if (found !== undefined) {
          throw new UsageError(
            `${path} already holds a run (${join(path, found)}): continue it with --resume ` +
              `${path}, or choose another --run-dir`,
          );
        }
      }
      removeTemporaryFiles(path);
    } catch (error) {
      run.release();
      throw error;
    }
    return run;
  }

  /** Epochs saved by this process (a last.safetensors written). */
  get epochsSaved(): number {
    return this.#epochsSaved;
  }

  /**
   * The file that holds `epoch` of this run (its checkpoint written at the end of that epoch):
   * best.safetensors or last.safetensors, or undefined when neither does.
   */
  checkpointOf(epoch: number): string | undefined {
    if (this.#bestEpoch === epoch) return this.bestCheckpointPath;
    if (this.#lastEpoch === epoch) return this.lastCheckpointPath;
    return undefined;
  }

  /** The epoch of this run that best.safetensors holds, if it holds one. */
  get bestCheckpointEpoch(): number | undefined {
    return this.#bestEpoch;
  }

  /**
   * Makes the folder say what the checkpoint a run resumes from says: metrics.jsonl and the
   * chart, dropping lines of epochs written after it (a run resumed from best.safetensors, or one
   * stopped between its checkpoint and its metrics line); and best.safetensors, which must hold
   * the best epoch of `history`. A run stopped between writing last.safetensors and
   * best.safetensors, or resumed into another folder, lacks it: it is copied from the checkpoint
   * resumed from, or from the best.safetensors beside that checkpoint, whichever holds it.
   */
  async restart(history: readonly EpochRecord[]): Promise<void> {
    await writeFileAtomic(
      this.metricsPath,
      history.map((record) => JSON.stringify(record) + "\n").join(""),
    );
    await this.#writeChart(history);
    this.#lastEpoch = await epochHeldBy(this.lastCheckpointPath, history);
    this.#bestEpoch = await epochHeldBy(this.bestCheckpointPath, history);
    const best = bestEpoch(history);
    if (best === undefined || this.#bestEpoch === best.epoch) return;
    const source = this.#resumeSource;
    if (source === undefined) return;
    for (const candidate of [source, join(dirname(source), BEST)]) {
      if (resolve(candidate) === resolve(this.bestCheckpointPath)) continue;
      if (await epochHeldBy(candidate, history) === best.epoch) {
        await copyFileAtomic(candidate, this.bestCheckpointPath);
        this.#bestEpoch = best.epoch;
        return;
      }
    }
  }

  /**
   * Records a finished epoch: the checkpoint first (so a metrics line never runs ahead of a
   * checkpoint), also as best.safetensors when `best`, then the metrics line and the chart.
   */
  async saveEpoch(
    checkpoint: Uint8Array,
    history: readonly EpochRecord[],
    best: boolean,
  ): Promise<void> {
    const { epoch } = history[history.length - 1];
    await writeFileAtomic(this.lastCheckpointPath, checkpoint);
    this.#lastEpoch = epoch;
    this.#epochsSaved++;
    if (best) {
      await writeFileAtomic(this.bestCheckpointPath, checkpoint);
      this.#bestEpoch = epoch;
    }
    await appendJsonLine(this.metricsPath, history[history.length - 1]);
    await this.#writeChart(history);
  }

  /**
   * Ends this process's hold on the folder, however the run ended (also from a Ctrl-C handler:
   * it is synchronous, so no write starts while it runs): removes the temporary files of writes
   * under way; if no epoch was saved, the files this run made in a folder new to the run and
   * the folders that open() made (a run continuing in its folder keeps what restart() made
   * agree with its checkpoint); then the lock. Calling it again does nothing.
   */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    if (this.#lock) removeTemporaryFiles(this.path);
    if (this.#epochsSaved === 0 && !this.#continuing && this.#lock) {
      for (const name of RUN_FILES) {
        if (!this.#foundFiles.has(name)) removeIfThere(join(this.path, name));
      }
    }
    if (this.#lock) {
      // Removed while still held: a process that opened it meanwhile sees it gone, and retries.
      // Windows removes no open file: there it is closed first.
      if (Deno.build.os === "windows") this.#lock.close();
      removeIfThere(this.lockPath);
      if (Deno.build.os !== "windows") this.#lock.close();
      this.#lock = undefined;
    }
    if (this.#epochsSaved === 0) {
      for (const folder of this.#createdFolders) {
        try {
          Deno.removeSync(folder); // only if empty: anything else put there stays
        } catch {
          break;
        }
      }
    }
  }

  async #takeLock(): Promise<void> {
    // A lock file that another run removes (on release) between this open and this lock is no
    // longer the folder's: open it again. Rarely needed more than once.
    for (let attempt = 0; attempt < 10; attempt++) {
      let file: Deno.FsFile;
      try {
        file = await Deno.open(this.lockPath, { read: true, write: true, create: true });
      } catch (error) {
        throw fileWriteError(this.lockPath, error, "lock");
      }
      try {
        if (!await file.tryLock(true)) throw await this.#inUse();
        if (await isSameFile(file, this.lockPath)) {
          await file.truncate(0);
          await file.write(new TextEncoder().encode(`${Deno.pid}\n`));
          this.#lock = file;
          return;
        }
      } catch (error) {
        file.close();
        throw fileWriteError(this.lockPath, error, "lock");
      }
      file.close();
    }
    throw await this.#inUse();
  }

  async #inUse(): Promise<RunFolderInUseError> {
    const pid = await readPid(this.lockPath);
    const holder = pid === undefined ? "it is starting" : `process ${pid}`;
    return new RunFolderInUseError(
      `${this.path} is in use by another training run (${holder}): wait for it to end, or ` +
        "choose another --run-dir",
    );
  }

  async #writeChart(history: readonly EpochRecord[]): Promise<void> {
    await writeFileAtomic(this.chartPath, renderTrainingChart(history, this.chartTitle));
  }
}

/**
 * Creates `path` and its missing parents; returns the folders it made, innermost first (none if
 * it was there).
 */
async function createFolder(path: string): Promise<string[]> {
  const made: string[] = [];
  try {
    for (let folder = resolve(path); !await exists(folder);) {
      made.push(folder);
      const parent = dirname(folder);
      if (parent === folder) break;
      folder = parent;
    }
    await Deno.mkdir(path, { recursive: true });
  } catch (error) {
    throw fileWriteError(path, error, "create the folder");
  }
  return made;
}

/**
 * The epoch of `history` that the checkpoint at `path` holds: its metadata names that epoch, and
 * its history agrees with `history` up to it (so it is this run's). Undefined for a missing or
 * unreadable file, or one of another run. Reads only the file's header.
 */
async function epochHeldBy(
  path: string,
  history: readonly EpochRecord[],
): Promise<number | undefined> {
  const metadata = await readCheckpointMetadata(path);
  const parsed = heldEpochSchema.safeParse(metadata);
  if (!parsed.success) return undefined;
  const { epoch, training } = parsed.data;
  if (epoch < 1 || epoch > history.length || training.history.length !== epoch) return undefined;
  for (let i = 0; i < epoch; i++) {
    if (JSON.stringify(training.history[i]) !== JSON.stringify(history[i])) return undefined;
  }
  return epoch;
}

const heldEpochSchema = z.object({
  epoch: z.number().int(),
  training: z.object({ history: z.array(z.unknown()) }),
});

/**
 * The parsed `checkpoint` metadata in the header of a safetensors file (see src/io/safetensors.ts:
 * a u64 header length, then the JSON header), without reading the tensors; undefined if there is
 * none or the file cannot be read.
 */
async function readCheckpointMetadata(path: string): Promise<unknown> {
  try {
    using file = await Deno.open(path, { read: true });
    const length = new Uint8Array(8);
    if (!await readFull(file, length)) return undefined;
    const headerLength = new DataView(length.buffer).getBigUint64(0, true);
    if (headerLength > 100_000_000n) return undefined;
    const header = new Uint8Array(Number(headerLength));
    if (!await readFull(file, header)) return undefined;
    const json = JSON.parse(new TextDecoder().decode(header));
    const text = json?.__metadata__?.checkpoint;
    return typeof text === "string" ? JSON.parse(text) : undefined;
  } catch {
    return undefined;
  }
}

async function readFull(file: Deno.FsFile, into: Uint8Array): Promise<boolean> {
  for (let filled = 0; filled < into.length;) {
    const read = await file.read(into.subarray(filled));
    if (read === null) return false;
    filled += read;
  }
  return true;
}

/** The process id a lock file holds, if it holds one yet. */
async function readPid(path: string): Promise<number | undefined> {
  try {
    const pid = Number((await Deno.readTextFile(path)).trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Whether the open `file` is still the one at `path` (systems without inode numbers: yes). */
async function isSameFile(file: Deno.FsFile, path: string): Promise<boolean> {
  let current: Deno.FileInfo;
  try {
    current = await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
  const opened = await file.stat();
  if (opened.ino === null || current.ino === null) return true;
  return opened.ino === current.ino && opened.dev === current.dev;
}

function removeIfThere(path: string): void {
  try {
    Deno.removeSync(path);
  } catch {
    // Not there, or not removable: nothing more to do on the way out.
  }
}

/** Where --resume continues from: a run folder's last checkpoint, or a checkpoint file. */
export interface ResumeTarget {
  checkpointPath: string;
  /** The folder the checkpoint is in: the run goes on there unless --run-dir says otherwise. */
  runDir: string;
}

export async function resumeTarget(path: string): Promise<ResumeTarget> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new UsageError(`--resume ${path}: no such run folder or checkpoint file`);
    }
    throw error;
  }
  if (!info.isDirectory) return { checkpointPath: path, runDir: dirname(path) };
  const checkpointPath = join(path, LAST);
  if (!await exists(checkpointPath)) {
    throw new UsageError(
      `--resume ${path}: the folder has no ${LAST} (no epoch of that run finished)`,
    );
  }
  return { checkpointPath, runDir: path };
}
