/**
 * The one entry point for CIFAR-10: finds the data set at a path in whichever form it comes (the
 * binary or the python version, unpacked or as an archive), downloads it when asked to, and
 * checks every file before returning it.
 */
import { join, posix } from "node:path";
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
import { gunzip, isGzip } from "./gzip.ts";
import { readTar } from "./tar.ts";

export { type CifarDataset, type CifarSplit, DataError } from "./cifar.ts";
export { parseBinaryBatch } from "./cifar_binary.ts";
export { parsePythonBatch } from "./cifar_python.ts";
export { readTar } from "./tar.ts";

/** In order of preference: the binary files parse fastest. */
const LAYOUTS: readonly CifarLayout[] = [BINARY_LAYOUT, PYTHON_LAYOUT];

export interface LoadOptions extends DownloadOptions {
  /** Download the official binary archive into `location` when no data is found there. */
  download?: boolean;
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
  let files = await findData(location);
  // A missing archive path is not downloaded into: that would make a folder of that name.
  if (!files && opts.download && !/\.(tar|tar\.gz|tgz)$/.test(location)) {
    await downloadCifar10(location, opts);
    files = await findData(location);
  }
  if (!files) {
    throw new DataError(
      location,
      `no CIFAR-10 data found (looked for the files of ${BINARY_LAYOUT.folder}/ or ` +
        `${PYTHON_LAYOUT.folder}/, here or one folder down, and for their archives)`,
      `load with download enabled, or download ${OFFICIAL_BINARY_ARCHIVE.url} and save it there`,
    );
  }
  return await readDataset(files, recordsPerFile);
}

/** The files of one layout, found in a folder on disk or in an archive. */
interface DataFiles {
  layout: CifarLayout;
  /** The folder or archive, for messages about the set as a whole. */
  where: string;
  names: ReadonlySet<string>;
  read(name: string): Promise<Uint8Array>;
  /** How messages name one file: its path, or the archive and the member's path in it. */
  nameOf(name: string): string;
}

async function readDataset(files: DataFiles, recordsPerFile: number): Promise<CifarDataset> {
  const { layout } = files;
  const missing = [...layout.trainFiles, layout.testFile].filter((name) => !files.names.has(name));
  if (missing.length > 0) {
    throw new DataError(files.where, `${missing.join(", ")} missing from the ${layout.name}`);
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

async function findData(location: string): Promise<DataFiles | undefined> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(location);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  return info.isDirectory ? await findInFolder(location) : await readArchive(location);
}

/** Looks in the folder, then in each subfolder, then for an official archive in the folder. */
async function findInFolder(folder: string): Promise<DataFiles | undefined> {
  const top = await listFolder(folder);
  const here = folderFiles(folder, top.files);
  if (here) return here;
  for (const sub of top.folders) {
    const path = join(folder, sub);
    const found = folderFiles(path, (await listFolder(path)).files);
    if (found) return found;
  }
  const archive = LAYOUTS.map((layout) => layout.archive).find((name) => top.files.has(name));
  return archive ? await readArchive(join(folder, archive)) : undefined;
}

function folderFiles(folder: string, names: Set<string>): DataFiles | undefined {
  const layout = detectLayout(names);
  if (!layout) return undefined;
  return {
    layout,
    where: folder,
    names,
    read: (name) => Deno.readFile(join(folder, name)),
    nameOf: (name) => join(folder, name),
  };
}

async function listFolder(folder: string): Promise<{ files: Set<string>; folders: string[] }> {
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

/** Reads a tar or tar.gz archive whole and finds the folder in it that holds a layout's files. */
async function readArchive(path: string): Promise<DataFiles> {
  const bytes = await Deno.readFile(path);
  const members = readTar(isGzip(bytes) ? gunzip(bytes, path) : bytes, path);
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
