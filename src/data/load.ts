/**
 * The one entry point for CIFAR-10: finds the data set at a path in whichever form it comes (the
 * binary or the python version, unpacked or as an archive), downloads it when asked to, and
 * checks every file before returning it. This is the file-system half; the parsing and the
 * checks, which the browser shares, are src/data/archive.ts.
 */
import { join, resolve } from "node:path";
import {
  archiveFiles,
  cifarFromArchive,
  type DataFiles,
  detectLayout,
  LAYOUTS,
  readDataset,
} from "./archive.ts";
import {
  checkRecordsPerFile,
  type CifarDataset,
  DataError,
  DEFAULT_DATA_FOLDER,
  RECORDS_PER_FILE,
} from "./cifar.ts";
import { BINARY_LAYOUT } from "./cifar_binary.ts";
import { PYTHON_LAYOUT } from "./cifar_python.ts";
import { downloadCifar10, type DownloadOptions, OFFICIAL_BINARY_ARCHIVE } from "./download.ts";
import { gunzip } from "./gzip.ts";
import { statIfExists } from "../io/files.ts";

export { type CifarDataset, type CifarSplit, DataError, DEFAULT_DATA_FOLDER } from "./cifar.ts";
export { parseBinaryBatch } from "./cifar_binary.ts";
export { parsePythonBatch } from "./cifar_python.ts";
export { readTar } from "./tar.ts";

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
    return await cifarFromArchive(await Deno.readFile(location), location, {
      gunzip,
      recordsPerFile,
    });
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
  if (archive === undefined) return undefined;
  const path = join(folder, archive);
  return await archiveFiles(await Deno.readFile(path), path, gunzip);
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
