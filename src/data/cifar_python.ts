/**
 * The CIFAR-10 "python version": each batch file is a pickled dict whose `data` is a numpy uint8
 * array of one row per image (the same 3072-byte image layout as the binary version) and whose
 * `labels` is a list of ints; batches.meta is a pickled dict with `label_names`.
 */
import {
  checkClassNames,
  checkLabels,
  type CifarLayout,
  type CifarSplit,
  DataError,
  IMAGE_BYTES,
  RECORDS_PER_FILE,
} from "./cifar.ts";
import { describeFileKind } from "./file_kind.ts";
import { NumpyArray, type PickleDict, pickleText, type PickleValue, readPickle } from "./pickle.ts";

/** The opcode that starts every pickle of protocol 2 and later. */
const PROTO = 0x80;

export function parsePythonBatch(
  bytes: Uint8Array,
  fileName: string,
  recordsPerFile: number = RECORDS_PER_FILE,
): CifarSplit {
  const batch = readDict(bytes, fileName);
  const labels = batch.get("labels");
  if (!Array.isArray(labels) || labels.length !== recordsPerFile) {
    const found = Array.isArray(labels) ? `${labels.length} labels` : "no list";
    throw new DataError(
      fileName,
      `'labels' is ${found}, expected ${recordsPerFile} (corrupt file)`,
    );
  }
  checkLabels(labels as number[], fileName);
  return {
    images: readImages(batch.get("data"), fileName, recordsPerFile),
    labels: Uint8Array.from(labels as number[]),
    count: recordsPerFile,
  };
}

export function parsePythonMeta(bytes: Uint8Array, fileName: string): string[] {
  const names = readDict(bytes, fileName).get("label_names");
  const texts = Array.isArray(names) ? names.map(pickleText) : [];
  if (texts.length === 0 || texts.some((text) => text === undefined)) {
    throw new DataError(fileName, "'label_names' is not a list of strings (corrupt file)");
  }
  return checkClassNames(texts as string[], fileName);
}

function readDict(bytes: Uint8Array, fileName: string): PickleDict {
  // Pickles of protocol 2 and later (all this reader takes) start with the PROTO opcode, 0x80.
  const kind = bytes[0] === PROTO ? undefined : describeFileKind(bytes);
  if (kind !== undefined) {
    throw new DataError(fileName, `is ${kind}, expected a pickle of the python version`);
  }
  const value = readPickle(bytes, fileName);
  if (!(value instanceof Map)) throw new DataError(fileName, "pickle holds no dict (corrupt file)");
  return value;
}

function readImages(data: PickleValue | undefined, fileName: string, records: number): Uint8Array {
  if (!(data instanceof NumpyArray)) {
    throw new DataError(fileName, "'data' is not a numpy array (corrupt file)");
  }
  const problem = imageArrayProblem(data, records);
  if (problem) throw new DataError(fileName, `'data' ${problem} (corrupt file)`);
  // A copy, so that the parsed split does not keep the whole pickle's buffer alive.
  return data.data!.slice();
}

/** The image rows must be exactly what the official files hold: C-order uint8, N x 3072. */
function imageArrayProblem(array: NumpyArray, records: number): string | undefined {
  const dtype = array.dtype?.descriptor ?? "none";
  if (array.dtype?.name !== "u1") return `has dtype ${dtype}, expected |u1 (uint8)`;
  const shape = array.shape.join("x");
  if (shape !== `${records}x${IMAGE_BYTES}`) {
    return `has shape ${shape}, expected ${records}x${IMAGE_BYTES}`;
  }
  if (array.fortranOrder) return "is in Fortran (column-major) order, expected row-major";
  const expected = records * IMAGE_BYTES;
  if (array.data?.length !== expected) {
    return `holds ${array.data?.length ?? 0} bytes, expected ${expected}`;
  }
  return undefined;
}

export const PYTHON_LAYOUT: CifarLayout = {
  name: "python version",
  folder: "cifar-10-batches-py",
  archive: "cifar-10-python.tar.gz",
  trainFiles: [1, 2, 3, 4, 5].map((n) => `data_batch_${n}`),
  testFile: "test_batch",
  metaFile: "batches.meta",
  parseBatch: parsePythonBatch,
  parseClassNames: parsePythonMeta,
};
