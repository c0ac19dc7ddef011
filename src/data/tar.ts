/**
 * A minimal reader for tar archives held in memory: ustar and GNU headers, GNU long names and pax
 * `path` records, which is what the official CIFAR-10 archives and common tar tools write. Only
 * regular files are returned; directories, links and the rest are skipped.
 */
import { DataError } from "./cifar.ts";

const BLOCK = 512;

const TYPE_FILE = new Set(["0", "\0", "7"]);
const TYPE_GNU_LONG_NAME = "L";
const TYPE_PAX_HEADER = "x";

/**
 * Regular-file members by path (without a leading "./"), each a view into `bytes` rather than a
 * copy, so reading a 180 MB archive does not double its memory.
 */
export function readTar(bytes: Uint8Array, fileName = "tar archive"): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  // A GNU long-name or pax header gives the path of the member that follows it.
  let nextName: string | undefined;
  let offset = 0;
  while (offset + BLOCK <= bytes.length) {
    const header = bytes.subarray(offset, offset + BLOCK);
    if (header.every((byte) => byte === 0)) return files; // end-of-archive marker
    checkHeaderChecksum(header, offset, fileName);
    const size = readSize(header, offset, fileName);
    const dataStart = offset + BLOCK;
    if (dataStart + size > bytes.length) {
      throw new DataError(fileName, `tar member at byte ${offset} runs past the end (truncated)`);
    }
    const data = bytes.subarray(dataStart, dataStart + size);
    const type = String.fromCharCode(header[156]);
    if (type === TYPE_GNU_LONG_NAME) {
      nextName = readString(data, 0, data.length);
    } else if (type === TYPE_PAX_HEADER) {
      nextName = readPaxPath(data) ?? nextName;
    } else {
      if (TYPE_FILE.has(type)) files.set(normalize(nextName ?? readHeaderName(header)), data);
      nextName = undefined;
    }
    offset = dataStart + Math.ceil(size / BLOCK) * BLOCK;
  }
  // Tools always end an archive with zero blocks; running out of bytes first means truncation.
  throw new DataError(
    fileName,
    `tar archive ends at byte ${offset} without its end marker (truncated)`,
  );
}

/**
 * Whether `bytes` start as a tar archive does: a header block with the ustar magic or a valid
 * checksum (old v7 archives have no magic), or the end-of-archive zero blocks of an empty one.
 * Anything else is not a tar archive at all, rather than a damaged or truncated one.
 */
export function looksLikeTar(bytes: Uint8Array): boolean {
  if (bytes.length < BLOCK) return false;
  const header = bytes.subarray(0, BLOCK);
  if (readString(header, 257, 5) === "ustar") return true;
  return header.every((byte) => byte === 0) || headerChecksumMatches(header);
}

/** Bytes up to the first NUL, as text (tar names are ASCII or UTF-8). */
function readString(bytes: Uint8Array, start: number, length: number): string {
  const field = bytes.subarray(start, start + length);
  const end = field.indexOf(0);
  return new TextDecoder().decode(end === -1 ? field : field.subarray(0, end));
}

/** POSIX ustar splits long paths into prefix and name; GNU tar reuses the prefix bytes for times. */
function readHeaderName(header: Uint8Array): string {
  const name = readString(header, 0, 100);
  const isPosixUstar = readString(header, 257, 6) === "ustar" && header[262] === 0;
  const prefix = isPosixUstar ? readString(header, 345, 155) : "";
  return prefix ? `${prefix}/${name}` : name;
}

function normalize(path: string): string {
  return path.replace(/^(\.\/)+/, "");
}

/** The checksum catches a file that is not a tar archive at all, or a damaged header. */
function checkHeaderChecksum(header: Uint8Array, offset: number, fileName: string): void {
  if (!headerChecksumMatches(header)) {
    throw new DataError(
      fileName,
      `not a tar archive, or corrupt: bad header checksum at byte ${offset}`,
    );
  }
}

/** The stored checksum is the sum of the header's bytes, its own 8 counted as spaces. */
function headerChecksumMatches(header: Uint8Array): boolean {
  const stored = parseOctal(header.subarray(148, 156));
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i];
  return stored === sum;
}

/** Sizes are octal text, or GNU base-256 (high bit set) for members of 8 GiB and more. */
function readSize(header: Uint8Array, offset: number, fileName: string): number {
  const field = header.subarray(124, 136);
  let size: number;
  if (field[0] & 0x80) {
    size = field[0] & 0x7f;
    for (let i = 1; i < field.length; i++) size = size * 256 + field[i];
  } else {
    size = parseOctal(field);
  }
  if (!Number.isSafeInteger(size)) {
    throw new DataError(fileName, `bad tar member size at byte ${offset} (corrupt)`);
  }
  return size;
}

function parseOctal(field: Uint8Array): number {
  const text = new TextDecoder().decode(field).replace(/[\0 ]+$/, "").trim();
  return /^[0-7]+$/.test(text) ? parseInt(text, 8) : NaN;
}

/** Pax records read "<length> <key>=<value>\n"; only `path` matters here. */
function readPaxPath(data: Uint8Array): string | undefined {
  for (const record of new TextDecoder().decode(data).split("\n")) {
    const match = /^\d+ path=(.*)$/.exec(record);
    if (match) return match[1];
  }
  return undefined;
}
