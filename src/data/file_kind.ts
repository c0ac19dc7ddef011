/**
 * What a file is, from its first bytes, for the messages about a file that is not what was
 * expected: "is a PNG image, not a tar archive" says more than a parser's complaint about its
 * bytes. Pure, so the browser bundle can carry it.
 */

/** The formats told apart by their leading magic bytes, most specific first. */
const MAGIC: readonly [kind: string, offset: number, magic: readonly number[] | string][] = [
  ["a PNG image", 0, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]],
  ["a JPEG image", 0, [0xff, 0xd8, 0xff]],
  ["a GIF image", 0, "GIF8"],
  ["a WebP image", 8, "WEBP"],
  ["a zip archive", 0, [0x50, 0x4b, 0x03, 0x04]],
  ["an empty zip archive", 0, [0x50, 0x4b, 0x05, 0x06]],
  ["gzip-compressed data", 0, [0x1f, 0x8b]],
  ["bzip2-compressed data", 0, "BZh"],
  ["xz-compressed data", 0, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ["zstd-compressed data", 0, [0x28, 0xb5, 0x2f, 0xfd]],
  ["a 7z archive", 0, [0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c]],
  ["a RAR archive", 0, "Rar!"],
  ["a PDF document", 0, "%PDF"],
  ["a NumPy .npy array", 0, [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]],
  ["an HDF5 file", 0, [0x89, 0x48, 0x44, 0x46]],
  ["an ELF executable", 0, [0x7f, 0x45, 0x4c, 0x46]],
  // Both "ustar\0" (POSIX) and "ustar  \0" (GNU) start so.
  ["a tar archive", 257, "ustar"],
];

/** Text is judged on this many leading bytes. */
const TEXT_SAMPLE = 512;

/**
 * A phrase naming what `bytes` hold ("a PNG image", "a zip archive", "JSON text", "an empty
 * file"), or undefined when nothing known matches.
 */
export function describeFileKind(bytes: Uint8Array): string | undefined {
  if (bytes.length === 0) return "an empty file";
  for (const [kind, offset, magic] of MAGIC) {
    if (startsWith(bytes, offset, magic)) return kind;
  }
  if (bytes[0] === 0x80 && bytes[1] >= 2 && bytes[1] <= 5) return "a Python pickle";
  if (isSafetensors(bytes)) return "a safetensors file";
  const text = leadingText(bytes);
  if (text !== undefined) return /^\s*[{[]/.test(text) ? "JSON text" : "text";
  return undefined;
}

function startsWith(bytes: Uint8Array, offset: number, magic: readonly number[] | string): boolean {
  const expected = typeof magic === "string" ? [...magic].map((c) => c.charCodeAt(0)) : magic;
  if (bytes.length < offset + expected.length) return false;
  return expected.every((byte, i) => bytes[offset + i] === byte);
}

/** An 8-byte little-endian header length that fits the file, then a JSON object. */
function isSafetensors(bytes: Uint8Array): boolean {
  if (bytes.length < 10) return false;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return view.getBigUint64(0, true) <= BigInt(bytes.length - 8) && bytes[8] === 0x7b;
}

/** The leading bytes as text, when they are UTF-8 without control characters but tab and newline. */
function leadingText(bytes: Uint8Array): string | undefined {
  const sample = bytes.subarray(0, TEXT_SAMPLE);
  let text: string;
  try {
    // A sample cut inside a multi-byte character is still text: stream mode leaves the tail.
    text = new TextDecoder("utf-8", { fatal: true }).decode(sample, {
      stream: bytes.length > TEXT_SAMPLE,
    });
  } catch {
    return undefined;
  }
  // deno-lint-ignore no-control-regex
  return /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/.test(text) ? undefined : text;
}
