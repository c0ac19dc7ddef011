/**
 * File writes that an interrupted run does not leave half done: checkpoints are replaced whole,
 * and metrics lines are appended whole.
 */
import { basename, dirname, join } from "node:path";

/**
 * Runs `write` on a uniquely named temporary file in the same folder as `path` (a rename is only
 * atomic within one file system), then renames it over `path`, so that readers (and a crash at
 * any moment) see either the old file or the complete new one. On failure the temporary file is
 * removed and `path` is left as it was.
 */
export async function writeAtomically(
  path: string,
  write: (tempPath: string) => Promise<void>,
): Promise<void> {
  // The .tmp suffix is git-ignored, so a leftover from a killed process never shows up as a change.
  const tempPath = join(dirname(path), `.${basename(path)}.${crypto.randomUUID()}.tmp`);
  try {
    await write(tempPath);
    await Deno.rename(tempPath, path);
  } catch (error) {
    await Deno.remove(tempPath).catch(() => {}); // it may never have been created
    throw error;
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

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let written = 0; written < bytes.length;) {
    written += await file.write(bytes.subarray(written));
  }
}

/**
 * Appends `record` to a JSON-lines log as one line. The file is opened with O_APPEND and the line
 * handed to a single write call, so lines from concurrent writers never interleave, and a killed
 * process leaves whole lines (a reader should still skip an incomplete last line after a power
 * loss).
 */
export async function appendJsonLine(path: string, record: Record<string, unknown>): Promise<void> {
  // JSON.stringify without indentation escapes newlines inside strings, so this is one line.
  const line = new TextEncoder().encode(JSON.stringify(record) + "\n");
  using file = await Deno.open(path, { append: true, create: true });
  const written = await file.write(line);
  if (written !== line.length) {
    throw new Error(`${path}: wrote ${written} of ${line.length} bytes of a metrics line`);
  }
}
