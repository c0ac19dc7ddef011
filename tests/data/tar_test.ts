import assert from "node:assert/strict";
import { DataError } from "../../src/data/cifar.ts";
import { gunzip, isGzip } from "../../src/data/gzip.ts";
import { readTar } from "../../src/data/tar.ts";
import { gzip, makeTar, paxRecord } from "../support/data_fixtures.ts";

const bytes = (...values: number[]) => Uint8Array.from(values);
const text = (value: string) => new TextEncoder().encode(value);

Deno.test("readTar returns regular files of a GNU archive and skips folders", () => {
  const big = new Uint8Array(1500).map((_, i) => i % 251);
  const tar = makeTar([
    { name: "cifar-10-batches-bin/" },
    { name: "cifar-10-batches-bin/a.bin", data: bytes(1, 2, 3) },
    { name: "./cifar-10-batches-bin/big.bin", data: big },
    { name: "empty", data: new Uint8Array(0) },
  ]);
  const files = readTar(tar);
  assert.deepEqual([...files.keys()], [
    "cifar-10-batches-bin/a.bin",
    "cifar-10-batches-bin/big.bin",
    "empty",
  ]);
  assert.deepEqual(files.get("cifar-10-batches-bin/a.bin"), bytes(1, 2, 3));
  assert.deepEqual(files.get("cifar-10-batches-bin/big.bin"), big);
  assert.equal(files.get("empty")!.length, 0);
});

Deno.test("readTar joins a POSIX ustar prefix to the name", () => {
  const long = `${"d".repeat(80)}/${"e".repeat(60)}/file.bin`;
  assert.deepEqual([...readTar(makeTar([{ name: long, data: bytes(7) }], "ustar")).keys()], [long]);
});

Deno.test("readTar takes a long path from a GNU long-name or a pax header", () => {
  const gnuLong = `${"g".repeat(120)}/data_batch_1.bin`;
  const paxLong = `${"p".repeat(150)}/test_batch.bin`;
  const tar = makeTar([
    { name: "././@LongLink", type: "L", data: text(`${gnuLong}\0`) },
    { name: gnuLong.slice(0, 100), data: bytes(1) },
    { name: "PaxHeaders/x", type: "x", data: paxRecord("path", paxLong) },
    { name: paxLong.slice(0, 100), data: bytes(2) },
    { name: "short", data: bytes(3) },
  ]);
  assert.deepEqual([...readTar(tar)], [[gnuLong, bytes(1)], [paxLong, bytes(2)], [
    "short",
    bytes(3),
  ]]);
});

Deno.test("readTar refuses a damaged header and a truncated archive", () => {
  const tar = makeTar([{ name: "a.bin", data: new Uint8Array(2000) }]);
  const damaged = tar.slice();
  damaged[10] ^= 0xff;
  assert.throws(
    () => readTar(damaged, "x.tar"),
    /^DataError: x\.tar: not a tar archive, or corrupt: bad header checksum at byte 0;/,
  );
  assert.throws(() => readTar(tar.subarray(0, 1024), "x.tar"), /runs past the end \(truncated\)/);
  assert.throws(() => readTar(tar.subarray(0, 2560), "x.tar"), /without its end marker/);
  assert.throws(() => readTar(new Uint8Array(512).fill(65)), DataError);
});

Deno.test("gunzip undoes CompressionStream and refuses what is not gzip", async () => {
  const data = new Uint8Array(100_000).map((_, i) => (i * 31) % 256);
  const packed = await gzip(data);
  assert.ok(isGzip(packed));
  assert.deepEqual(gunzip(packed, "a.tar.gz"), data);
  assert.throws(
    () => gunzip(data, "a.tar.gz"),
    /^DataError: a\.tar\.gz: not a gzip file \(bad magic bytes\);/,
  );
  assert.throws(
    () => gunzip(packed.subarray(0, packed.length - 20), "a.tar.gz"),
    /^DataError: a\.tar\.gz: corrupt gzip data \(/,
  );
});
