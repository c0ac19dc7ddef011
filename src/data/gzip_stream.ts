/**
 * Gunzip with the platform's DecompressionStream, for the browser, which has no node:zlib: the
 * same checks and the same one-line errors as src/data/gzip.ts (which the commands keep: node:zlib
 * is about three times faster in Deno). Platform-free.
 */
import { DataError } from "./cifar.ts";

/** A gzip stream starts with the magic bytes 1f 8b. */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

export async function gunzipStream(bytes: Uint8Array, fileName: string): Promise<Uint8Array> {
  if (!isGzip(bytes)) throw new DataError(fileName, "not a gzip file (bad magic bytes)");
  try {
    const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
      .pipeThrough(new DecompressionStream("gzip"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  } catch (error) {
    throw new DataError(fileName, `corrupt gzip data (${(error as Error).message})`);
  }
}
