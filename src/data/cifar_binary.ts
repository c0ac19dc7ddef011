/**
 * The CIFAR-10 "binary version": each batch file is a run of records of one label byte followed
 * by the image's IMAGE_BYTES pixel bytes, and batches.meta.txt lists the class names.
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

export const BINARY_RECORD_BYTES = 1 + IMAGE_BYTES;

/** Splits one batch file into images and labels; refuses a file of the wrong size or a bad label. */
export function parseBinaryBatch(
  bytes: Uint8Array,
  fileName: string,
  recordsPerFile: number = RECORDS_PER_FILE,
): CifarSplit {
  if (bytes.length !== recordsPerFile * BINARY_RECORD_BYTES) {
    const kind = describeFileKind(bytes);
    // A label byte (0..9) starts a batch, and no format that describeFileKind knows.
    if (kind !== undefined && kind !== "text" && kind !== "JSON text") {
      throw new DataError(
        fileName,
        `is ${kind}, expected a batch of the binary version (${recordsPerFile} records of ` +
          `${BINARY_RECORD_BYTES} bytes)`,
      );
    }
    throw new DataError(
      fileName,
      `${bytes.length} bytes is not ${recordsPerFile} records of ${BINARY_RECORD_BYTES} bytes ` +
        "(truncated or corrupt)",
    );
  }
  const images = new Uint8Array(recordsPerFile * IMAGE_BYTES);
  const labels = new Uint8Array(recordsPerFile);
  for (let i = 0; i < recordsPerFile; i++) {
    const record = i * BINARY_RECORD_BYTES;
    labels[i] = bytes[record];
    images.set(bytes.subarray(record + 1, record + BINARY_RECORD_BYTES), i * IMAGE_BYTES);
  }
  checkLabels(labels, fileName);
  return { images, labels, count: recordsPerFile };
}

/** batches.meta.txt: one class name a line, followed by blank lines in the official file. */
export function parseClassNamesText(bytes: Uint8Array, fileName: string): string[] {
  const names = new TextDecoder().decode(bytes).split("\n").map((line) => line.trim());
  return checkClassNames(names.filter((name) => name.length > 0), fileName);
}

export const BINARY_LAYOUT: CifarLayout = {
  name: "binary version",
  folder: "cifar-10-batches-bin",
  archive: "cifar-10-binary.tar.gz",
  trainFiles: [1, 2, 3, 4, 5].map((n) => `data_batch_${n}.bin`),
  testFile: "test_batch.bin",
  metaFile: "batches.meta.txt",
  parseBatch: parseBinaryBatch,
  parseClassNames: parseClassNamesText,
};
