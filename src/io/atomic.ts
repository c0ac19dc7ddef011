/**
 * File writes that an interrupted run does not leave half done: checkpoints are replaced whole,
 * and metrics lines are appended whole. A write the operating system refuses (a full disk, a
 * read-only folder) ends in a FileWriteError: one line naming the file and the fix.
 */
import { basename, dirname, join } from "node:path";
import { UserError } from "../errors.ts";

/**
 * The file system refused a write: the message names the file meant (never a temporary one), the
 * reason and the fix. `code` is the system's error code ("ENOSPC", "EACCES", ...).
 */
export class FileWriteError extends UserError {
  override name = "FileWriteError";

  constructor(readonly path: string, readonly code: string, message: string, cause: unknown) {
    super(message, { cause });
  }
}

/** What is done to `path`, for the message: "write", "create the folder", ... */
export type WriteAction = "write" | "create the folder" | "lock";

/**
 * `error` as a FileWriteError about `path` when the file system raised it (it carries an errno
 * code such as ENOSPC); any other error (a bug, or an error of the caller's own) is returned as it
 * is.
 */
export function fileWriteError(
  path: string,
  error: unknown,
  action: WriteAction = "write",
): unknown {
  if (error instanceof FileWriteError) return error;
  if (error instanceof Deno.errors.NotCapable) {
    // Deno's own permissions, not the system's (the task's flags, or a /dev or /sys path, which
    // needs --allow-all); its message may name the temporary file.
    return new FileWriteError(
      path,
      "NotCapable",
      `cannot ${action} ${path}: Deno's permissions do not allow it: choose another path`,
      error,
    );
  }
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string" || !/^E[A-Z0-9]+$/.test(code)) return error;
  const folder = dirname(path);
  const reasons: Record<string, string> = {
    ENOSPC: "no space left on the device: free some space, or write to another disk",
    EDQUOT: "the disk quota is used up: free some space, or write to another disk",
    EFBIG: "the file is too large for the file system: write to another disk",
    EACCES: `permission denied: make ${folder} writable (chmod u+w), or write somewhere else`,
    EPERM: `not permitted: make ${folder} writable (chmod u+w), or write somewhere else`,
    EROFS: "the file system is read-only: write somewhere else",
    ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    EEXIST: "a file is in the way, where a folder should be: move it, or choose another path",
    EISDIR: "it is a folder: move it away, or choose another path",
    ENOENT:
      `the folder ${folder} does not exist (was it removed?): create it, or choose another path`,
    ENAMETOOLONG: "the name is too long: choose a shorter path",
    EMFILE: "too many open files: raise the limit (ulimit -n)",
    ENFILE: "too many open files: raise the limit (ulimit -n)",
  };
  // The system's own words without their "(os error N): open '<temporary file>'" tail.
  const message = error instanceof Error ? error.message.replace(/ \(os error \d+\).*$/s, "") : "";
  const reason = reasons[code] ??
    `${message || "failed"} (${code}): check the disk, or write somewhere else`;
  return new FileWriteError(path, code, `cannot ${action} ${path}: ${reason}`, error);
}

/**
 * Runs `write` on a uniquely named temporary file in the same folder as `path` (a rename is only
 * atomic within one file system), then renames it over `path`, so that readers (and a crash at
 * any moment) see either the old file or the complete new one. On failure the temporary file is
 * removed and `path` is left as it was; a failure of the file system is thrown as a
 * FileWriteError about `path`.
 */
export async function writeAtomically(
  path: string,
  write: (tempPath: string) => Promise<void>,
): Promise<void> {
  const tempPath = temporaryPath(path);
  pendingTemporaryFiles.add(tempPath);
  try {
    await write(tempPath);
    await Deno.rename(tempPath, path);
  } catch (error) {
    await Deno.remove(tempPath).catch(() => {}); // it may never have been created
    throw fileWriteError(path, error);
  } finally {
    pendingTemporaryFiles.delete(tempPath);
  }
}

/**
 * `.<name>.<uuid>.tmp` beside `path`. The .tmp suffix is git-ignored, so a leftover from a killed
 * process never shows up as a change.
 */
function temporaryPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.${crypto.randomUUID()}.tmp`);
}

/** The temporary files of the writes under way in this process (see removeTemporaryFiles). */
const pendingTemporaryFiles = new Set<string>();

const TEMPORARY_NAME = /^\..+\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.tmp$/;

/** Whether `name` is that of a temporary file of writeAtomically. */
export function isTemporaryName(name: string): boolean {
  return TEMPORARY_NAME.test(name);
}

/**
 * Removes the temporary files of writeAtomically in `folder`: those of writes a killed process
 * left, and those of this process's writes under way (when it is about to exit, on Ctrl-C).
 * Synchronous, so that no other code runs (and starts a write) in between. Only for a folder
 * that no other process writes to (one it holds the lock of): their writes under way would fail.
 * Returns the names removed.
 */
export function removeTemporaryFiles(folder: string): string[] {
  const removed: string[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(folder)];
  } catch {
    return removed; // no folder, no leftovers
  }
  for (const entry of entries) {
    if (!entry.isFile || !isTemporaryName(entry.name)) continue;
    try {
      Deno.removeSync(join(folder, entry.name));
      removed.push(entry.name);
    } catch {
      // Gone already (a write under way finished), or not ours to remove: left alone.
    }
  }
  return removed;
}

/**
 * Removes the temporary files of this process's writes under way, wherever they are: for a
 * process about to exit (on Ctrl-C), whose writes will not finish. Synchronous, like
 * removeTemporaryFiles.
 */
export function removePendingTemporaryFiles(): void {
  for (const path of pendingTemporaryFiles) {
    try {
      Deno.removeSync(path);
    } catch {
      // Not created yet, or renamed into place already.
    }
  }
}

/** Replaces `path` with `contents` atomically (see writeAtomically), flushed to disk first. */
export function writeFileAtomic(path: string, contents: Uint8Array | string): Promise<void> {
  const bytes = typeof contents === "string" ? new TextEncoder().encode(contents) : contents;
  return writeAtomically(path, async (tempPath) => {
    using file = await Deno.open(tempPath, { write: true, createNew: true });
    await writeAll(file, bytes);
    // Without the sync, a power loss soon after the rename can leave `path` empty on file systems
    // that delay allocating the data (ext4, XFS).
    await file.sync();
  });
}

/** Replaces `path` with a copy of `source` atomically (see writeAtomically), flushed to disk. */
export function copyFileAtomic(source: string, path: string): Promise<void> {
  return writeAtomically(path, async (tempPath) => {
    await Deno.copyFile(source, tempPath);
    using file = await Deno.open(tempPath, { write: true });
    await file.sync();
  });
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let written = 0; written < bytes.length;) {
    written += await file.write(bytes.subarray(written));
  }
}

/**
 * Appends `record` to a JSON-lines log as one line. The file is opened with O_APPEND and the line
 * handed to a single write call, so lines from concurrent writers never interleave, and a killed
 * process leaves whole lines (a reader should still skip an incomplete last line after a power
 * loss). A failure of the file system is thrown as a FileWriteError about `path`.
 */
export async function appendJsonLine(path: string, record: Record<string, unknown>): Promise<void> {
  // JSON.stringify without indentation escapes newlines inside strings, so this is one line.
  const line = new TextEncoder().encode(JSON.stringify(record) + "\n");
  let written: number;
  try {
    using file = await Deno.open(path, { append: true, create: true });
    written = await file.write(line);
  } catch (error) {
    throw fileWriteError(path, error);
  }
  if (written !== line.length) {
    // A regular file takes fewer bytes than offered only when the disk or the quota is full.
    throw new FileWriteError(
      path,
      "ENOSPC",
      `cannot write ${path}: it took ${written} of the ${line.length} bytes of a line (is the ` +
        "disk full?): free some space, or write to another disk",
      undefined,
    );
  }
}
