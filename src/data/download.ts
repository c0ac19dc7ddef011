/**
 * Fetches the official binary archive when the data set is missing: streamed to disk with a
 * progress line, checked against its published MD5, written atomically, then unpacked.
 */
import { createHash } from "node:crypto";
import { basename, join, posix } from "node:path";
import { DataError } from "./cifar.ts";
import { BINARY_LAYOUT } from "./cifar_binary.ts";
import { gunzip } from "./gzip.ts";
import { readTar } from "./tar.ts";
import { writeAtomically, writeFileAtomic } from "../io/atomic.ts";
import { formatDuration } from "../util/format.ts";

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
 * `dir`/cifar-10-batches-bin/, which it returns. On any failure nothing partial is left behind.
 */
export async function downloadCifar10(dir: string, opts: DownloadOptions = {}): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const archivePath = join(dir, BINARY_LAYOUT.archive);
  await downloadVerified(opts.source ?? OFFICIAL_BINARY_ARCHIVE, archivePath, opts.progress);
  return await unpackBinaryArchive(archivePath, dir);
}

async function downloadVerified(
  source: ArchiveSource,
  path: string,
  out: ProgressOutput = Deno.stderr,
): Promise<void> {
  const byHand = `download it by hand from ${source.url} and save it as ${path}`;
  writeLine(out, `downloading ${source.url} to ${path}`);
  await writeAtomically(path, async (partialPath) => {
    let md5: string;
    try {
      const response = await fetch(source.url);
      if (!response.ok || !response.body) {
        await response.body?.cancel();
        throw new Error(`HTTP ${response.status} ${response.statusText}`);
      }
      const progress = new ProgressLine(basename(path), contentLength(response), out);
      const hash = createHash("md5");
      const file = await Deno.open(partialPath, { write: true, createNew: true });
      // pipeTo closes the file when the body ends, and on failure too.
      await response.body.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, controller) {
            hash.update(chunk);
            progress.advance(chunk.length);
            controller.enqueue(chunk);
          },
        }),
      ).pipeTo(file.writable);
      progress.finish();
      md5 = hash.digest("hex");
    } catch (error) {
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
async function unpackBinaryArchive(archivePath: string, dir: string): Promise<string> {
  const members = readTar(gunzip(await Deno.readFile(archivePath), archivePath), archivePath);
  const folder = join(dir, BINARY_LAYOUT.folder);
  await Deno.mkdir(folder, { recursive: true });
  for (const [member, bytes] of members) {
    // Only direct children of the expected folder: member names cannot point elsewhere.
    if (posix.dirname(member) !== BINARY_LAYOUT.folder) continue;
    await writeFileAtomic(join(folder, posix.basename(member)), bytes);
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
    if (this.terminal) this.out.writeSync(new TextEncoder().encode("\n"));
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
