import assert from "node:assert/strict";
import { DataError, DEFAULT_CLASS_NAMES, IMAGE_BYTES } from "../../src/data/cifar.ts";
import { parsePythonBatch, parsePythonMeta } from "../../src/data/cifar_python.ts";
import { makeSplit, type PickleStyle, pythonBatch, pythonMeta } from "../support/data_fixtures.ts";

const STYLES: PickleStyle[] = ["py2", "py3"];

for (const style of STYLES) {
  Deno.test(`parsePythonBatch reads a ${style} batch pickle`, () => {
    // 1100 records: the labels and filenames lists take two APPENDS batches, the memo
    // LONG_BINPUT, and the data a 4-byte-length BINSTRING or BINBYTES.
    const split = makeSplit(1100, 4);
    const parsed = parsePythonBatch(pythonBatch(split, { style }), "data_batch_1", 1100);
    assert.equal(parsed.count, 1100);
    assert.deepEqual(parsed.labels, split.labels);
    assert.deepEqual(parsed.images, split.images);
  });

  Deno.test(`parsePythonMeta reads the ${style} batches.meta label names`, () => {
    assert.deepEqual(
      parsePythonMeta(pythonMeta(DEFAULT_CLASS_NAMES, style), "batches.meta"),
      DEFAULT_CLASS_NAMES,
    );
  });
}

/** Parses a 3-record py2 batch whose pickle was built with `damage`, expecting `message`. */
function assertRefused(damage: Parameters<typeof pythonBatch>[1], message: string): void {
  const bytes = pythonBatch(makeSplit(3, 1), damage);
  assert.throws(
    () => parsePythonBatch(bytes, "/data/cifar-10-batches-py/data_batch_5", 3),
    (error) =>
      error instanceof DataError &&
      error.message ===
        `/data/cifar-10-batches-py/data_batch_5: ${message}; re-download the data set`,
  );
}

Deno.test("parsePythonBatch refuses data that is not uint8", () => {
  assertRefused(
    { style: "py2", array: { dtype: "f4", byteOrder: "<" } },
    "'data' has dtype <f4, expected |u1 (uint8) (corrupt file)",
  );
});

Deno.test("parsePythonBatch refuses data of the wrong shape", () => {
  assertRefused(
    { style: "py3", array: { shape: [3, 32, 32, 3] } },
    "'data' has shape 3x32x32x3, expected 3x3072 (corrupt file)",
  );
  assertRefused(
    { style: "py2", array: { shape: [4, IMAGE_BYTES] } },
    "'data' has shape 4x3072, expected 3x3072 (corrupt file)",
  );
});

Deno.test("parsePythonBatch refuses data in Fortran order", () => {
  assertRefused(
    { style: "py2", array: { fortranOrder: true } },
    "'data' is in Fortran (column-major) order, expected row-major (corrupt file)",
  );
});

Deno.test("parsePythonBatch refuses data bytes that do not fill the shape", () => {
  assertRefused(
    { style: "py2", array: { data: new Uint8Array(3 * IMAGE_BYTES - 1) } },
    "'data' holds 9215 bytes, expected 9216 (corrupt file)",
  );
});

Deno.test("parsePythonBatch refuses bad labels", () => {
  assertRefused(
    { style: "py2", labels: [1, 2] },
    "'labels' is 2 labels, expected 3 (corrupt file)",
  );
  assertRefused(
    { style: "py3", labels: [1, 2, 300] },
    "record 2 has label 300, expected 0..9 (corrupt file)",
  );
});

Deno.test("parsePythonBatch refuses a truncated pickle, naming the file", () => {
  const bytes = pythonBatch(makeSplit(3, 1), { style: "py2" });
  assert.throws(
    () => parsePythonBatch(bytes.subarray(0, 4000), "data_batch_1", 3),
    /^DataError: data_batch_1: pickle BINSTRING at byte \d+ needs 9216 bytes but \d+ remain \(truncated\); re-download the data set$/,
  );
});

Deno.test("parsePythonBatch refuses a pickle that is no batch dict", () => {
  const list = Uint8Array.of(0x80, 0x02, 0x5d, 0x2e); // PROTO 2, EMPTY_LIST, STOP
  assert.throws(() => parsePythonBatch(list, "test_batch", 3), /test_batch: pickle holds no dict/);
  const meta = pythonMeta(DEFAULT_CLASS_NAMES, "py2");
  assert.throws(() => parsePythonBatch(meta, "test_batch", 3), /'labels' is no list, expected 3/);
  assert.throws(
    () => parsePythonMeta(pythonBatch(makeSplit(3, 1), { style: "py2" }), "batches.meta"),
    /batches\.meta: 'label_names' is not a list of strings/,
  );
});
