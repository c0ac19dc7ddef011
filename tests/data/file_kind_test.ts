import assert from "node:assert/strict";
import { encode } from "fast-png";
import { describeFileKind } from "../../src/data/file_kind.ts";
import { encodeSafetensors } from "../../src/io/safetensors.ts";
import { looksLikeTar } from "../../src/data/tar.ts";
import { binaryBatch, gzip, makeSplit, makeTar, pythonBatch } from "../support/data_fixtures.ts";

const text = (s: string) => new TextEncoder().encode(s);

Deno.test("describeFileKind names the formats a user may give by mistake", async () => {
  const png = encode({ width: 2, height: 2, data: new Uint8Array(12), channels: 3 });
  const tar = makeTar([{ name: "a.txt", data: text("hello") }]);
  const safetensors = encodeSafetensors(
    new Map([["w", { dtype: "F32", shape: [1], data: Float32Array.of(1) }]]),
  );
  const cases: [Uint8Array, string | undefined][] = [
    [png, "a PNG image"],
    [Uint8Array.of(0xff, 0xd8, 0xff, 0xe0, 0, 16), "a JPEG image"],
    [Uint8Array.of(0x50, 0x4b, 0x03, 0x04, 10, 0), "a zip archive"],
    [await gzip(text("x")), "gzip-compressed data"],
    [tar, "a tar archive"],
    [text("BZh91AY&SY"), "bzip2-compressed data"],
    [safetensors, "a safetensors file"],
    [pythonBatch(makeSplit(2, 1), { style: "py2" }), "a Python pickle"],
    [text('{"epoch":1}\n{"epoch":2}\n'), "JSON text"],
    [text("airplane\nautomobile\n"), "text"],
    [text("a" + "é".repeat(300)), "text"], // the 512-byte sample ends inside an é
    [new Uint8Array(0), "an empty file"],
    // A batch of the binary version starts with a label byte: nothing known.
    [binaryBatch(makeSplit(2, 1)), undefined],
    [Uint8Array.of(0, 1, 2, 3), undefined],
  ];
  for (const [bytes, kind] of cases) assert.equal(describeFileKind(bytes), kind);
});

Deno.test("looksLikeTar tells a tar archive from other files, damaged or not", () => {
  const tar = makeTar([{ name: "a.bin", data: new Uint8Array(700) }]);
  assert.ok(looksLikeTar(tar));
  assert.ok(looksLikeTar(tar.subarray(0, 1024)), "a truncated archive still starts as one");
  assert.ok(looksLikeTar(new Uint8Array(1024)), "an empty archive is its end marker");
  const v7 = tar.slice(); // an old archive without the ustar magic, its checksum recomputed
  v7.fill(0, 257, 265);
  v7.fill(0x20, 148, 156);
  const sum = v7.subarray(0, 512).reduce((total, byte) => total + byte, 0);
  v7.set(text(sum.toString(8).padStart(6, "0") + "\0 "), 148);
  assert.ok(looksLikeTar(v7));
  assert.ok(!looksLikeTar(text("hello")));
  assert.ok(!looksLikeTar(new Uint8Array(600).fill(65)));
});
