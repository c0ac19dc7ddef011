/**
 * The one entry point for CIFAR-10: finds the data set at a path in whichever form it comes (the
 * binary or the python version, unpacked or as an archive), downloads it when asked to, and
 * checks every file before returning it.
 */
import { join, posix, resolve } from "node:path";
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
import { downloadCifar10, type DownloadOptions, OFFICIAL_BINARY_ARCHIVE } from "./download.ts";
import { describeFileKind } from "./file_kind.ts";
import { gunzip, isGzip } from "./gzip.ts";
import { looksLikeTar, readTar } from "./tar.ts";

export { type CifarDataset, type CifarSplit, DataError } from "./cifar.ts";
export { parseBinaryBatch } from "./cifar_binary.ts";
export { parsePythonBatch } from "./cifar_python.ts";
export { readTar } from "./tar.ts";

/** In order of preference: the binary files parse fastest. */
const LAYOUTS: readonly CifarLayout[] = [BINARY_LAYOUT, PYTHON_LAYOUT];

/** Where the commands look for CIFAR-10 (and download it) unless told otherwise. */
export const DEFAULT_DATA_FOLDER = "./data";

/** What --data may name, for the messages about a path that names something else. */
const EXPECTED =
  `expected a folder holding ${BINARY_LAYOUT.folder}/ or ${PYTHON_LAYOUT.folder}/, ` +
  `or their archive ${BINARY_LAYOUT.archive} or ${PYTHON_LAYOUT.archive}`;

export interface LoadOptions extends DownloadOptions {
  /** Download the official binary archive into `location` when no data is found there. */
  download?: boolean;
  /**
   * Whether a `location` that does not exist may be created to download into. By default only
   * DEFAULT_DATA_FOLDER may: any other missing path is more likely mistyped than meant to receive
   * a 170 MB download into a new folder, so it is refused, and the message says to create the
   * folder to download there.
   */
  createFolder?: boolean;
  /** Records each batch file must hold: RECORDS_PER_FILE, except in tests with small files. */
  recordsPerFile?: number;
}

/**
 * Loads the training and test sets from `location`: a folder that holds the batch files, or
 * holds their folder or archive; or the path of an archive (.tar.gz or .tar) of either version.
 */
export async function loadCifar10(location: string, opts: LoadOptions = {}): Promise<CifarDataset> {
  const recordsPerFile = opts.recordsPerFile ?? RECORDS_PER_FILE;
  checkRecordsPerFile(recordsPerFile);
  const info = await statIfExists(location);
  if (info && !info.isDirectory) {
    return await readDataset(await readArchive(location), recordsPerFile);
  }
  let files = info ? await findInFolder(location) : undefined;
  if (!files && opts.download) {
    if (!info) checkMayCreate(location, opts.createFolder ?? isDefaultFolder(location));
    await downloadCifar10(location, opts);
    files = await findInFolder(location);
  }
  if (!files) {
    if (!info) throw missingLocation(location);
    throw new DataError(
      location,
      `no CIFAR-10 data found (looked for the files of ${BINARY_LAYOUT.folder}/ or ` +
        `${PYTHON_LAYOUT.folder}/, here or one folder down, and for their archives)`,
      `load with download enabled, or download ${OFFICIAL_BINARY_ARCHIVE.url} and save it there`,
    );
  }
  return await readDataset(files, recordsPerFile);
}

function isDefaultFolder(location: string): boolean {
  return resolve(location) === resolve(DEFAULT_DATA_FOLDER);
}

/** A missing path named as an archive, or any other unless `mayCreate`, is not downloaded into. */
function checkMayCreate(location: string, mayCreate: boolean): void {
  if (ARCHIVE_NAME.test(location)) throw missingLocation(location);
  if (!mayCreate) {
    throw new DataError(
      location,
      "no such file or folder",
      `check the path; to download CIFAR-10 there, create the folder first (mkdir -p ${location})`,
    );
  }
}

const ARCHIVE_NAME = /\.(tar|tar\.gz|tgz)$/;

function missingLocation(location: string): DataError {
  return new DataError(
    location,
    "no such file or folder",
    ARCHIVE_NAME.test(location)
      ? `check the path, or download ${OFFICIAL_BINARY_ARCHIVE.url} and save it there`
      : "check the path",
  );
}

async function statIfExists(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/** The files of one layout, found in a folder on disk or in an archive. */
interface DataFiles {
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

async function readDataset(files: DataFiles, recordsPerFile: number): Promise<CifarDataset> {
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
function detectLayout(names: { has(name: string): boolean }): CifarLayout | undefined {
  return LAYOUTS.find((layout) =>
    [...layout.trainFiles, layout.testFile].some((name) => names.has(name))
  );
}

/** Looks in the folder, then in each subfolder, then for an official archive in the folder. */
async function findInFolder(folder: string): Promise<DataFiles | undefined> {
  const top = await listFolder(folder);
  const here = folderFiles(folder, top);
  if (here) return here;
  for (const sub of top.folders) {
    const path = join(folder, sub);
    const found = folderFiles(path, await listFolder(path));
    if (found) return found;
  }
  const archive = LAYOUTS.map((layout) => layout.archive).find((name) => top.files.has(name));
  return archive ? await readArchive(join(folder, archive)) : undefined;
}

function folderFiles(folder: string, listing: FolderListing): DataFiles | undefined {
  const { files: names, folders } = listing;
  // A folder named as a batch file counts too, so that it is reported as misplaced.
  const layout = detectLayout({ has: (name) => names.has(name) || folders.includes(name) });
  if (!layout) return undefined;
  return {
    layout,
    where: folder,
    names,
    folders: new Set(folders),
    read: (name) => Deno.readFile(join(folder, name)),
    nameOf: (name) => join(folder, name),
  };
}

interface FolderListing {
  files: Set<string>;
  /** Sorted. */
  folders: string[];
}

async function listFolder(folder: string): Promise<FolderListing> {
  const files = new Set<string>();
  const folders: string[] = [];
  for await (const entry of Deno.readDir(folder)) {
    // A symlinked folder (e.g. to a shared data disk) counts as a folder.
    const isFolder = entry.isDirectory ||
      (entry.isSymlink && (await Deno.stat(join(folder, entry.name))).isDirectory);
    if (isFolder) folders.push(entry.name);
    else files.add(entry.name);
  }
  return { files, folders: folders.sort() };
}

/**
 * Reads a tar or tar.gz archive whole and finds the folder in it that holds a layout's files. A
 * file that is no tar archive (an image, a zip) is named for what it is.
 */
async function readArchive(path: string): Promise<DataFiles> {
  const bytes = await Deno.readFile(path);
  const compressed = isGzip(bytes);
  const tar = compressed ? gunzip(bytes, path) : bytes;
  if (!looksLikeTar(tar)) throw notAnArchive(path, tar, compressed);
  const members = readTar(tar, path);
  const byFolder = new Map<string, Map<string, Uint8Array>>();
  for (const [member, data] of members) {
    const folder = posix.dirname(member);
    if (!byFolder.has(folder)) byFolder.set(folder, new Map());
    byFolder.get(folder)!.set(posix.basename(member), data);
  }
  for (const folder of [...byFolder.keys()].sort()) {
    const files = byFolder.get(folder)!;
    const layout = detectLayout(files);
    if (layout) {
      return {
        layout,
        where: path,
        names: new Set(files.keys()),
        folders: new Set(),
        read: (name) => Promise.resolve(files.get(name)!),
        nameOf: (name) => `${path} (${posix.join(folder, name)})`,
      };
    }
  }
  throw new DataError(
    path,
    "holds no CIFAR-10 batch files (not a CIFAR-10 archive)",
    `use the official ${BINARY_LAYOUT.archive} or ${PYTHON_LAYOUT.archive}`,
  );
}

/** "is a PNG image, not CIFAR-10 data"; "holds gzip-compressed text, not a tar archive". */
function notAnArchive(path: string, bytes: Uint8Array, compressed: boolean): DataError {
  const kind = describeFileKind(bytes);
  if (compressed) {
    return new DataError(
      path,
      `holds gzip-compressed ${kind ? kind.replace(/^an? /, "") : "data"}, not a tar archive`,
      EXPECTED,
    );
  }
  if (kind === "a zip archive") {
    return new DataError(
      path,
      "is a zip archive, which the loader does not read",
      `unzip it and give the folder, or use the official ${BINARY_LAYOUT.archive}`,
    );
  }
  return new DataError(
    path,
    `is ${kind ?? "no archive the loader knows"}, not CIFAR-10 data`,
    EXPECTED,
  );
}
