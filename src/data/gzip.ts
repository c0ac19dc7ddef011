/**
 * Gunzip in memory. node:zlib's synchronous gunzip is used rather than DecompressionStream
 * because it is about three times faster on the 170 MB official archive (0.9 s against 2.9 s).
 */
import { gunzipSync } from "node:zlib";
import { DataError } from "./cifar.ts";
import { isGzip } from "./gzip_stream.ts";

export { isGzip };

export function gunzip(bytes: Uint8Array, fileName: string): Uint8Array {
  if (!isGzip(bytes)) throw new DataError(fileName, "not a gzip file (bad magic bytes)");
  try {
    const out = gunzipSync(bytes);
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  } catch (error) {
    throw new DataError(fileName, `corrupt gzip data (${(error as Error).message})`);
  }
}
