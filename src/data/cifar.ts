/**
 * The in-memory form of CIFAR-10 that every loader produces, whatever the layout on disk, and the
 * checks that both layouts share.
 */
import { UserError } from "../errors.ts";

/**
 * Where the commands look for CIFAR-10 (and download it) unless told otherwise; what a page's
 * checkpoint names as its data, for `deno task train --resume`.
 */
export const DEFAULT_DATA_FOLDER = "./data";

/** Bytes of one 32x32 RGB image: 1024 red, then 1024 green, then 1024 blue, each plane row by row. */
export const IMAGE_BYTES = 3 * 32 * 32;
export const CLASS_COUNT = 10;
/** Records in each official batch file; tests pass a smaller count to keep fixtures small. */
export const RECORDS_PER_FILE = 10000;

export const DEFAULT_CLASS_NAMES: readonly string[] = [
  "airplane",
  "automobile",
  "bird",
  "cat",
  "deer",
  "dog",
  "frog",
  "horse",
  "ship",
  "truck",
];

/** `count` images of IMAGE_BYTES each, back to back, with one label (0..9) per image. */
export interface CifarSplit {
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
}

export interface CifarDataset {
  train: CifarSplit;
  test: CifarSplit;
  classNames: string[];
}

/**
 * One on-disk layout of the data set (binary or python version): which files it has and how to
 * parse them. The loader finds the files; the layout turns their bytes into splits.
 */
export interface CifarLayout {
  /** Human name for messages, e.g. "binary version". */
  name: string;
  /** The folder the official archive unpacks to, e.g. "cifar-10-batches-bin". */
  folder: string;
  /** File name of the official archive, e.g. "cifar-10-binary.tar.gz". */
  archive: string;
  trainFiles: readonly string[];
  testFile: string;
  /** The class-names file; optional, DEFAULT_CLASS_NAMES stand in when it is absent. */
  metaFile: string;
  parseBatch(bytes: Uint8Array, fileName: string, recordsPerFile: number): CifarSplit;
  parseClassNames(bytes: Uint8Array, fileName: string): string[];
}

const REDOWNLOAD = "re-download the data set";

/**
 * A problem with the data on disk. The message is one line: the file, what is wrong with it, and
 * what to do about it, so that a user can act on it without reading code.
 */
export class DataError extends UserError {
  constructor(
    readonly file: string,
    readonly problem: string,
    readonly fix: string = REDOWNLOAD,
  ) {
    super(oneLine(`${file}: ${problem}; ${fix}`));
    this.name = "DataError";
  }
}

/** Messages from the platform (fetch, zlib) can hold newlines; a DataError stays on one line. */
export function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ").trim();
}

export function checkRecordsPerFile(recordsPerFile: number): void {
  if (!Number.isInteger(recordsPerFile) || recordsPerFile <= 0) {
    throw new RangeError(`recordsPerFile must be a positive integer, got ${recordsPerFile}`);
  }
}

/** Refuses a label outside 0..9, naming the file and the record, as a corrupt file would have. */
export function checkLabels(labels: ArrayLike<number>, fileName: string): void {
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i];
    if (!Number.isInteger(label) || label < 0 || label >= CLASS_COUNT) {
      throw new DataError(
        fileName,
        `record ${i} has label ${label}, expected 0..${CLASS_COUNT - 1} (corrupt file)`,
      );
    }
  }
}

/** Class names must be one non-empty name per class; anything else means a damaged meta file. */
export function checkClassNames(names: string[], fileName: string): string[] {
  if (names.length !== CLASS_COUNT || names.some((name) => name.length === 0)) {
    throw new DataError(
      fileName,
      `expected ${CLASS_COUNT} class names, found ${JSON.stringify(names)} (corrupt file)`,
    );
  }
  return names;
}

/** Joins the per-file splits of one set (e.g. the five training batches) into one split. */
export function concatSplits(parts: CifarSplit[]): CifarSplit {
  const count = parts.reduce((sum, part) => sum + part.count, 0);
  const images = new Uint8Array(count * IMAGE_BYTES);
  const labels = new Uint8Array(count);
  let done = 0;
  for (const part of parts) {
    images.set(part.images, done * IMAGE_BYTES);
    labels.set(part.labels, done);
    done += part.count;
  }
  return { images, labels, count };
}
