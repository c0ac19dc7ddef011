/**
 * CIFAR-10 from the bytes of its files: an archive held in memory (the page's download or dropped
 * file, or an archive the commands read from disk), or a folder's files that src/data/load.ts
 * reads. Every file is checked as it is parsed, with the same one-line errors everywhere.
 * Platform-free: gunzip is passed in (node:zlib in Deno, DecompressionStream in a browser).
 */
import {
  checkRecordsPerFile,
  type CifarDataset,
  type CifarLayout,
  type CifarSplit,
  concatSplits,
  DataError,
  DEFAULT_CLASS_NAMES,
  RECORDS_PER_FILE,
} from "./cifar.ts";
import { BINARY_LAYOUT } from "./cifar_binary.ts";
import { PYTHON_LAYOUT } from "./cifar_python.ts";
import { describeFileKind } from "./file_kind.ts";
import { isGzip } from "./gzip_stream.ts";
import { looksLikeTar, readTar } from "./tar.ts";

/** Gunzips `bytes`; `name` names them in errors. */
export type Gunzip = (bytes: Uint8Array, name: string) => Uint8Array | Promise<Uint8Array>;

/** In order of preference: the binary files parse fastest. */
export const LAYOUTS: readonly CifarLayout[] = [BINARY_LAYOUT, PYTHON_LAYOUT];

/** What a data location may be, for the messages about one that is something else. */
const EXPECTED =
  `expected a folder holding ${BINARY_LAYOUT.folder}/ or ${PYTHON_LAYOUT.folder}/, ` +
  `or their archive ${BINARY_LAYOUT.archive} or ${PYTHON_LAYOUT.archive}`;

/**
 * A .tar.gz or .tar of either CIFAR-10 version, as bytes, checked as the commands check it.
 * `name` names the archive in errors; `recordsPerFile` is RECORDS_PER_FILE but in tests.
 */
export async function cifarFromArchive(
  bytes: Uint8Array,
  name: string,
  options: { gunzip: Gunzip; recordsPerFile?: number },
): Promise<CifarDataset> {
  const recordsPerFile = options.recordsPerFile ?? RECORDS_PER_FILE;
  checkRecordsPerFile(recordsPerFile);
  return await readDataset(await archiveFiles(bytes, name, options.gunzip), recordsPerFile);
}

/** The files of one layout, found in a folder on disk or in an archive. */
export interface DataFiles {
  layout: CifarLayout;
  /** The folder or archive, for messages about the set as a whole. */
  where: string;
  names: ReadonlySet<string>;
  /** Folders found where files were looked for (none in an archive), to name a misplaced one. */
  folders: ReadonlySet<string>;
  read(name: string): Promise<Uint8Array>;
  /** How messages name one file: its path, or the archive and the member's path in it. */
  nameOf(name: string): string;
}

/** Parses and checks every file of the set: the training and test batches, and the class names. */
export async function readDataset(files: DataFiles, recordsPerFile: number): Promise<CifarDataset> {
  const { layout } = files;
  const absent = [...layout.trainFiles, layout.testFile].filter((name) => !files.names.has(name));
  const folders = absent.filter((name) => files.folders.has(name));
  if (folders.length > 0) {
    throw new DataError(
      files.where,
      `${folders.join(", ")} ${folders.length === 1 ? "is a folder" : "are folders"}, expected ` +
        `the ${layout.name}'s batch ${folders.length === 1 ? "file" : "files"} of that name`,
    );
  }
  if (absent.length > 0) {
    throw new DataError(files.where, `${absent.join(", ")} missing from the ${layout.name}`);
  }
  const readSplit = async (names: readonly string[]): Promise<CifarSplit> => {
    const parts: CifarSplit[] = [];
    for (const name of names) {
      parts.push(layout.parseBatch(await files.read(name), files.nameOf(name), recordsPerFile));
    }
    return concatSplits(parts);
  };
  const hasMeta = files.names.has(layout.metaFile);
  return {
    train: await readSplit(layout.trainFiles),
    test: await readSplit([layout.testFile]),
    classNames: hasMeta
      ? layout.parseClassNames(await files.read(layout.metaFile), files.nameOf(layout.metaFile))
      : [...DEFAULT_CLASS_NAMES],
  };
}

/** A layout is recognised by any one of its batch files, so that a missing one can be named. */
export function detectLayout(names: { has(name: string): boolean }): CifarLayout | undefined {
  return LAYOUTS.find((layout) =>
    [...layout.trainFiles, layout.testFile].some((name) => names.has(name))
  );
}

/**
 * Unpacks a tar or tar.gz archive held in memory and finds the folder in it that holds a layout's
 * files. Bytes that are no tar archive (an image, a zip) are named for what they are.
 */
export async function archiveFiles(
  bytes: Uint8Array,
  name: string,
  gunzip: Gunzip,
): Promise<DataFiles> {
  const compressed = isGzip(bytes);
  const tar = compressed ? await gunzip(bytes, name) : bytes;
  if (!looksLikeTar(tar)) throw notAnArchive(name, tar, compressed);
  const members = readTar(tar, name);
  const byFolder = new Map<string, Map<string, Uint8Array>>();
  for (const [member, data] of members) {
    const slash = member.lastIndexOf("/");
    const folder = slash === -1 ? "" : member.slice(0, slash);
    if (!byFolder.has(folder)) byFolder.set(folder, new Map());
    byFolder.get(folder)!.set(member.slice(slash + 1), data);
  }
  for (const folder of [...byFolder.keys()].sort()) {
    const files = byFolder.get(folder)!;
    const layout = detectLayout(files);
    if (layout) {
      return {
        layout,
        where: name,
        names: new Set(files.keys()),
        folders: new Set(),
        read: (file) => Promise.resolve(files.get(file)!),
        nameOf: (file) => `${name} (${folder === "" ? file : `${folder}/${file}`})`,
      };
    }
  }
  throw new DataError(
    name,
    "holds no CIFAR-10 batch files (not a CIFAR-10 archive)",
    `use the official ${BINARY_LAYOUT.archive} or ${PYTHON_LAYOUT.archive}`,
  );
}

/** "is a PNG image, not CIFAR-10 data"; "holds gzip-compressed text, not a tar archive". */
function notAnArchive(name: string, bytes: Uint8Array, compressed: boolean): DataError {
  const kind = describeFileKind(bytes);
  if (compressed) {
    return new DataError(
      name,
      `holds gzip-compressed ${kind ? kind.replace(/^an? /, "") : "data"}, not a tar archive`,
      EXPECTED,
    );
  }
  if (kind === "a zip archive") {
    return new DataError(
      name,
      "is a zip archive, which the loader does not read",
      `unzip it and give the folder, or use the official ${BINARY_LAYOUT.archive}`,
    );
  }
  return new DataError(
    name,
    `is ${kind ?? "no archive the loader knows"}, not CIFAR-10 data`,
    EXPECTED,
  );
}
