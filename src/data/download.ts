/**
 * Fetches the official binary archive when the data set is missing: streamed to disk with a
 * progress line, checked against its published MD5, written atomically, then unpacked.
 */
import { createHash } from "node:crypto";
import { basename, dirname, join, posix, resolve } from "node:path";
import { DataError } from "./cifar.ts";
import { BINARY_LAYOUT } from "./cifar_binary.ts";
import { gunzip } from "./gzip.ts";
import { readTar } from "./tar.ts";
import { writeAtomically, writeFileAtomic } from "../io/atomic.ts";
import { formatDuration } from "../util/format.ts";
import { exists } from "../io/files.ts";

export interface ArchiveSource {
  url: string;
  /** Hex MD5 of the whole archive, as published next to it. */
  md5: string;
}

export const OFFICIAL_BINARY_ARCHIVE: ArchiveSource = {
  url: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
  md5: "c32a1d4ab5d03f1284b67883e8d87530",
};

/** Where progress goes; Deno.stderr is one. */
export interface ProgressOutput {
  isTerminal(): boolean;
  writeSync(bytes: Uint8Array): number;
}

export interface DownloadOptions {
  /** The archive to fetch; tests point this at a local server. */
  source?: ArchiveSource;
  progress?: ProgressOutput;
}

/**
 * Downloads the binary archive into `dir` as cifar-10-binary.tar.gz and unpacks its files into
 * `dir`/cifar-10-batches-bin/, which it returns. `dir` is created when missing. On any failure,
 * Ctrl-C included, what it created is removed again: nothing partial is left behind, and no
 * folder the user did not have before.
 */
export async function downloadCifar10(dir: string, opts: DownloadOptions = {}): Promise<string> {
  const created = new CreatedPaths();
  const interrupt = new AbortController();
  // While the download runs, Ctrl-C cancels it (and removes its files) rather than killing the
  // process, which would leave a partial archive of up to 170 MB behind.
  const onInterrupt = () => {
    created.removeAllSync(); // at once, in case another listener ends the process
    interrupt.abort();
  };
  const listening = addInterruptListener(onInterrupt);
  try {
    await created.mkdir(dir);
    await removeStaleParts(dir);
    const archivePath = join(dir, BINARY_LAYOUT.archive);
    const source = opts.source ?? OFFICIAL_BINARY_ARCHIVE;
    await downloadVerified(source, archivePath, opts.progress, created, interrupt.signal);
    interrupt.signal.throwIfAborted();
    const folder = await unpackBinaryArchive(archivePath, dir, created);
    interrupt.signal.throwIfAborted();
    return folder;
  } catch (error) {
    await created.removeAll();
    if (interrupt.signal.aborted) {
      throw new DataError(
        dir,
        "download interrupted (Ctrl-C); its files were removed",
        "run the command again to download again",
      );
    }
    throw error;
  } finally {
    if (listening) Deno.removeSignalListener("SIGINT", onInterrupt);
  }
}

/** Listens for Ctrl-C where the platform lets a program do so; false where it does not. */
function addInterruptListener(listener: () => void): boolean {
  try {
    Deno.addSignalListener("SIGINT", listener);
    return true;
  } catch {
    return false;
  }
}

/**
 * The files and folders a download created, newest last, to be removed again on failure. A
 * temporary file is recorded before it is created, so that Ctrl-C finds it too.
 */
class CreatedPaths {
  private readonly paths: string[] = [];

  add(path: string): void {
    this.paths.push(path);
  }

  /** Creates `dir` and any missing parents, recording the topmost one created. */
  async mkdir(dir: string): Promise<void> {
    let topmost: string | undefined;
    for (let path = resolve(dir); !(await exists(path)); path = dirname(path)) {
      topmost = path;
      if (dirname(path) === path) break;
    }
    if (topmost === undefined) return;
    this.add(topmost);
    await Deno.mkdir(dir, { recursive: true });
  }

  async removeAll(): Promise<void> {
    for (const path of this.paths.splice(0).reverse()) {
      await Deno.remove(path, { recursive: true }).catch(() => {}); // it may be gone already
    }
  }

  removeAllSync(): void {
    for (const path of this.paths.splice(0).reverse()) {
      try {
        Deno.removeSync(path, { recursive: true });
      } catch {
        // it may be gone already, or not created yet
      }
    }
  }
}

/** A partial archive that has not grown for this long was left by a killed download. */
const STALE_PART_MS = 60_000;

/**
 * Removes partial archives (".cifar-10-binary.tar.gz.<uuid>.tmp", as writeAtomically names
 * them) that a download killed outright (SIGKILL, a power loss) left in `dir`. One still being
 * written by another download is recent, and left alone.
 */
async function removeStaleParts(dir: string): Promise<void> {
  const part = new RegExp(
    `^\\.${BINARY_LAYOUT.archive.replaceAll(".", "\\.")}\\.[0-9a-f-]{36}\\.tmp$`,
  );
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.isFile || !part.test(entry.name)) continue;
    const path = join(dir, entry.name);
    const { mtime } = await Deno.stat(path);
    if (mtime && Date.now() - mtime.getTime() > STALE_PART_MS) {
      await Deno.remove(path).catch(() => {});
    }
  }
}

async function downloadVerified(
  source: ArchiveSource,
  path: string,
  out: ProgressOutput = Deno.stderr,
  created: CreatedPaths,
  signal: AbortSignal,
): Promise<void> {
  const byHand = `download it by hand from ${source.url} and save it as ${path}`;
  writeLine(out, `downloading ${source.url} to ${path}`);
  if (!(await exists(path))) created.add(path); // removed again if anything after it fails
  await writeAtomically(path, async (partialPath) => {
    created.add(partialPath);
    let md5: string;
    let progress: ProgressLine | undefined;
    try {
      const response = await fetch(source.url, { signal });
      if (!response.ok || !response.body) {
        await response.body?.cancel();
        throw new Error(`HTTP ${response.status} ${response.statusText}`);
      }
      const line = new ProgressLine(basename(path), contentLength(response), out);
      progress = line;
      const hash = createHash("md5");
      const file = await Deno.open(partialPath, { write: true, createNew: true });
      // pipeTo closes the file when the body ends, and on failure too.
      await response.body.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, controller) {
            hash.update(chunk);
            line.advance(chunk.length);
            controller.enqueue(chunk);
          },
        }),
      ).pipeTo(file.writable, { signal });
      line.finish();
      md5 = hash.digest("hex");
    } catch (error) {
      progress?.endLine();
      throw new DataError(
        path,
        `could not download ${source.url} (${(error as Error).message})`,
        byHand,
      );
    }
    if (md5 !== source.md5) {
      throw new DataError(
        path,
        `the download from ${source.url} has MD5 ${md5}, expected ${source.md5} ` +
          "(damaged in transit, or the file changed)",
        `try again, or ${byHand}`,
      );
    }
  });
}

function contentLength(response: Response): number | undefined {
  const length = Number(response.headers.get("content-length"));
  return length > 0 ? length : undefined;
}

/** Writes the archive's cifar-10-batches-bin/ files into `dir`/cifar-10-batches-bin/. */
async function unpackBinaryArchive(
  archivePath: string,
  dir: string,
  created: CreatedPaths,
): Promise<string> {
  const members = readTar(gunzip(await Deno.readFile(archivePath), archivePath), archivePath);
  const folder = join(dir, BINARY_LAYOUT.folder);
  await created.mkdir(folder);
  for (const [member, bytes] of members) {
    // Only direct children of the expected folder: member names cannot point elsewhere.
    if (posix.dirname(member) !== BINARY_LAYOUT.folder) continue;
    const path = join(folder, posix.basename(member));
    if (!(await exists(path))) created.add(path);
    await writeFileAtomic(path, bytes);
  }
  return folder;
}

function writeLine(out: ProgressOutput, text: string): void {
  out.writeSync(new TextEncoder().encode(`${text}\n`));
}

/**
 * On a terminal, one line redrawn in place a few times a second; in a log, a plain line every
 * ten seconds, so that CI logs show progress without thousands of lines.
 */
class ProgressLine {
  private done = 0;
  private readonly startedAt = performance.now();
  private shownAt = -Infinity;
  private readonly terminal: boolean;

  constructor(
    private readonly label: string,
    private readonly total: number | undefined,
    private readonly out: ProgressOutput,
  ) {
    this.terminal = out.isTerminal();
  }

  advance(bytes: number): void {
    this.done += bytes;
    const now = performance.now();
    if (now - this.shownAt >= (this.terminal ? 200 : 10_000)) this.show(now);
  }

  finish(): void {
    this.show(performance.now());
    this.endLine();
  }

  /** Ends a line redrawn in place, so that what is printed next starts on a line of its own. */
  endLine(): void {
    if (this.terminal && this.shownAt !== -Infinity) {
      this.out.writeSync(new TextEncoder().encode("\n"));
      this.shownAt = -Infinity;
    }
  }

  private show(now: number): void {
    this.shownAt = now;
    const line = formatProgress(this.label, this.done, this.total, (now - this.startedAt) / 1000);
    if (this.terminal) {
      // \x1b[K clears what a longer previous line left on the right.
      this.out.writeSync(new TextEncoder().encode(`\r${line}\x1b[K`));
    } else {
      writeLine(this.out, line);
    }
  }
}

/** E.g. "x.tar.gz: 52.3 / 170.5 MB (30.7%), 12.1 MB/s, ETA 0:10"; without a total, no ETA. */
export function formatProgress(
  label: string,
  done: number,
  total: number | undefined,
  seconds: number,
): string {
  const rate = seconds > 0 ? done / seconds : 0;
  const speed = `${megabytes(rate)} MB/s`;
  if (total === undefined) return `${label}: ${megabytes(done)} MB, ${speed}`;
  const percent = ((100 * done) / total).toFixed(1);
  const eta = rate > 0 ? formatDuration((total - done) / rate) : "?";
  return `${label}: ${megabytes(done)} / ${
    megabytes(total)
  } MB (${percent}%), ${speed}, ETA ${eta}`;
}

function megabytes(bytes: number): string {
  return (bytes / 1e6).toFixed(1);
}
