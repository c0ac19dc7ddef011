/**
 * The archive loader the page uses: an archive held in memory, gunzipped by node:zlib (the
 * commands) or by DecompressionStream (the browser), gives the same data set, and the same errors
 * for a damaged or a wrong file.
 */
import assert from "node:assert/strict";
import { cifarFromArchive, type Gunzip } from "../../src/data/archive.ts";
import { DataError, DEFAULT_CLASS_NAMES } from "../../src/data/cifar.ts";
import { gunzip } from "../../src/data/gzip.ts";
import { gunzipStream } from "../../src/data/gzip_stream.ts";
import {
  archiveEntries,
  binaryFiles,
  expectedDataset,
  gzip,
  makeTar,
  pythonFiles,
} from "../support/data_fixtures.ts";

const RECORDS = 3;
const GUNZIPS: [string, Gunzip][] = [["node:zlib", gunzip], ["DecompressionStream", gunzipStream]];

/** Loads `bytes` through each gunzip; the results, or the DataErrors, in GUNZIPS' order. */
async function throughBoth(bytes: Uint8Array, name: string) {
  return await Promise.all(GUNZIPS.map(async ([, unzip]) => {
    try {
      return await cifarFromArchive(bytes, name, { gunzip: unzip, recordsPerFile: RECORDS });
    } catch (error) {
      if (error instanceof DataError) return error;
      throw error;
    }
  }));
}

/** Loads `bytes` through each gunzip; both must refuse them with the same message. */
async function sameRefusal(bytes: Uint8Array, name: string): Promise<string> {
  const [zlib, stream] = await throughBoth(bytes, name);
  assert.ok(zlib instanceof DataError, `node:zlib loaded ${name}`);
  assert.ok(stream instanceof DataError, `DecompressionStream loaded ${name}`);
  assert.equal(stream.message, zlib.message);
  return zlib.message;
}

Deno.test("both CIFAR-10 archives load the same through either gunzip", async () => {
  const expected = expectedDataset(RECORDS);
  const archives = {
    "cifar-10-binary.tar.gz": makeTar(archiveEntries("cifar-10-batches-bin", binaryFiles(RECORDS))),
    "cifar-10-python.tar.gz": makeTar(
      archiveEntries("cifar-10-batches-py", pythonFiles(RECORDS, "py3")),
    ),
  };
  for (const [name, tar] of Object.entries(archives)) {
    const loaded = await throughBoth(await gzip(tar), name);
    for (const [i, dataset] of loaded.entries()) {
      assert.ok(!(dataset instanceof DataError), `${GUNZIPS[i][0]}: ${dataset}`);
      assert.deepEqual(dataset.train, expected.train, `${name} through ${GUNZIPS[i][0]}`);
      assert.deepEqual(dataset.test, expected.test, `${name} through ${GUNZIPS[i][0]}`);
      assert.deepEqual(dataset.classNames, DEFAULT_CLASS_NAMES);
    }
    // An uncompressed tar needs no gunzip.
    const [zlib, stream] = await throughBoth(tar, name.replace(/\.gz$/, ""));
    assert.deepEqual(stream, zlib);
  }
});

Deno.test("a truncated or corrupt gzip is refused the same way by either gunzip", async () => {
  const name = "cifar-10-binary.tar.gz";
  const gzipped = await gzip(makeTar(archiveEntries("cifar-10-batches-bin", binaryFiles(RECORDS))));
  const corrupt = gzipped.slice();
  // Inside the deflate data, past the 10-byte header.
  for (const at of [12, 40, 80]) corrupt[at] ^= 0xff;
  for (const damaged of [gzipped.subarray(0, gzipped.length - 100), corrupt]) {
    const errors = (await throughBoth(damaged, name)).map((error) => {
      assert.ok(error instanceof DataError, "a damaged archive loaded");
      return error;
    });
    // The parenthesis is the platform's own words, which the two implementations word apart.
    for (const error of errors) {
      assert.equal(error.file, name);
      assert.match(error.problem, /^corrupt gzip data \(.+\)$/);
      assert.equal(error.fix, "re-download the data set");
    }
  }
  // Gunzipped whole but cut inside the tar: the tar reader's error, the same through both.
  const cut = await gzip(
    makeTar(archiveEntries("cifar-10-batches-bin", binaryFiles(RECORDS))).subarray(0, 5000),
  );
  assert.match(await sameRefusal(cut, name), /runs past the end \(truncated\)/);
});

Deno.test("a file that is no CIFAR-10 archive is named for what it is, the same by either gunzip", async () => {
  const png = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, ...new Uint8Array(600));
  const text = new TextEncoder().encode("not an archive\n".repeat(100));
  const zip = Uint8Array.of(0x50, 0x4b, 0x03, 0x04, ...new Uint8Array(600));
  const otherTar = makeTar([{ name: "notes/readme.txt", data: text }]);
  const cases: [Uint8Array, string, RegExp][] = [
    [png, "cat.png", /^cat\.png: is a PNG image, not CIFAR-10 data; expected a folder/],
    [await gzip(text), "x.tar.gz", /^x\.tar\.gz: holds gzip-compressed text, not a tar archive/],
    [zip, "x.zip", /^x\.zip: is a zip archive, which the loader does not read/],
    [await gzip(otherTar), "x.tar.gz", /^x\.tar\.gz: holds no CIFAR-10 batch files/],
  ];
  for (const [bytes, name, expected] of cases) {
    assert.match(await sameRefusal(bytes, name), expected);
  }
});

Deno.test("gunzipStream refuses bytes that are not gzip as gunzip does", async () => {
  const text = new TextEncoder().encode("plain text");
  const expected = {
    name: "DataError",
    message: "notes.txt: not a gzip file (bad magic bytes); re-download the data set",
  };
  assert.throws(() => gunzip(text, "notes.txt"), expected);
  await assert.rejects(gunzipStream(text, "notes.txt"), expected);
});
