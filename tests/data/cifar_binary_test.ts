import assert from "node:assert/strict";
import { concatSplits, DataError, DEFAULT_CLASS_NAMES, IMAGE_BYTES } from "../../src/data/cifar.ts";
import { parseBinaryBatch, parseClassNamesText } from "../../src/data/cifar_binary.ts";
import { binaryBatch, binaryFiles, makeSplit } from "../support/data_fixtures.ts";

Deno.test("parseBinaryBatch splits records into labels and images", () => {
  const split = makeSplit(7, 3);
  const parsed = parseBinaryBatch(binaryBatch(split), "data_batch_1.bin", 7);
  assert.equal(parsed.count, 7);
  assert.deepEqual(parsed.labels, split.labels);
  assert.deepEqual(parsed.images, split.images);
});

Deno.test("parseBinaryBatch keeps each image's red, green and blue planes in file order", () => {
  const record = new Uint8Array(1 + IMAGE_BYTES);
  record[0] = 9;
  record[1] = 11; // first red pixel
  record[1 + 1024] = 22; // first green pixel
  record[1 + 2048 + 1023] = 33; // last blue pixel
  const parsed = parseBinaryBatch(record, "test_batch.bin", 1);
  assert.deepEqual([parsed.labels[0], parsed.images[0], parsed.images[1024], parsed.images[3071]], [
    9,
    11,
    22,
    33,
  ]);
});

Deno.test("parseBinaryBatch refuses a truncated file, naming it and the expected size", () => {
  const bytes = binaryBatch(makeSplit(10, 1)).subarray(0, 30729);
  assert.throws(
    () => parseBinaryBatch(bytes, "data_batch_3.bin", 10),
    (error) =>
      error instanceof DataError &&
      error.message ===
        "data_batch_3.bin: 30729 bytes is not 10 records of 3073 bytes (truncated or corrupt); " +
          "re-download the data set",
  );
});

Deno.test("parseBinaryBatch refuses whole records in the wrong number", () => {
  const bytes = binaryBatch(makeSplit(9, 1));
  assert.throws(
    () => parseBinaryBatch(bytes, "data_batch_2.bin", 10),
    /data_batch_2\.bin: 27657 bytes is not 10 records of 3073 bytes/,
  );
});

Deno.test("parseBinaryBatch wants 10000 records unless told otherwise", () => {
  assert.throws(
    () => parseBinaryBatch(binaryBatch(makeSplit(2, 1)), "test_batch.bin"),
    /6146 bytes is not 10000 records/,
  );
});

Deno.test("parseBinaryBatch refuses a label outside 0..9, naming the record", () => {
  const bytes = binaryBatch(makeSplit(5, 1));
  bytes[3 * 3073] = 10;
  assert.throws(
    () => parseBinaryBatch(bytes, "data_batch_4.bin", 5),
    (error) =>
      error instanceof DataError &&
      error.message ===
        "data_batch_4.bin: record 3 has label 10, expected 0..9 (corrupt file); " +
          "re-download the data set",
  );
});

Deno.test("parseClassNamesText reads batches.meta.txt and refuses a damaged one", () => {
  const meta = binaryFiles(1).get("batches.meta.txt")!;
  assert.deepEqual(parseClassNamesText(meta, "batches.meta.txt"), DEFAULT_CLASS_NAMES);
  const windows = new TextEncoder().encode(DEFAULT_CLASS_NAMES.join("\r\n"));
  assert.deepEqual(parseClassNamesText(windows, "batches.meta.txt"), DEFAULT_CLASS_NAMES);
  assert.throws(
    () => parseClassNamesText(new TextEncoder().encode("cat\ndog\n"), "batches.meta.txt"),
    /batches\.meta\.txt: expected 10 class names, found \["cat","dog"\]/,
  );
});

Deno.test("concatSplits joins batches in order", () => {
  const [a, b] = [makeSplit(2, 1), makeSplit(3, 2)];
  const joined = concatSplits([a, b]);
  assert.equal(joined.count, 5);
  assert.deepEqual(joined.labels, Uint8Array.of(...a.labels, ...b.labels));
  assert.deepEqual(joined.images.subarray(2 * IMAGE_BYTES), b.images);
});
