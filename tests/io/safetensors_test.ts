import assert from "node:assert/strict";
import {
  CheckpointError,
  decodeSafetensors,
  encodeSafetensors,
  NotSafetensorsError,
  type Tensor,
} from "../../src/io/safetensors.ts";

const SOURCE = "runs/test/model.safetensors";

/** Builds a file per the spec by hand: u64 LE header length, the header as given, then data. */
function handBuiltFile(headerText: string, data: number[] = []): Uint8Array {
  const header = new TextEncoder().encode(headerText);
  const file = new Uint8Array(8 + header.length + data.length);
  new DataView(file.buffer).setBigUint64(0, BigInt(header.length), true);
  file.set(header, 8);
  file.set(data, 8 + header.length);
  return file;
}

function assertRefused(bytes: Uint8Array, problem: RegExp): void {
  assert.throws(() => decodeSafetensors(bytes, SOURCE), (error: unknown) => {
    assert.ok(error instanceof CheckpointError);
    assert.ok(error.message.startsWith(`${SOURCE}: `), error.message);
    assert.match(error.message, problem);
    assert.ok(!error.message.includes("\n"), "one line");
    return true;
  });
}

Deno.test("safetensors round-trips every dtype, shapes, names in order and metadata", () => {
  const tensors = new Map<string, Tensor>([
    ["conv1.weight", {
      dtype: "F32",
      shape: [2, 3],
      data: Float32Array.of(1, -2, 3.5, 0, -0, 1e-30),
    }],
    ["scale", { dtype: "F64", shape: [], data: Float64Array.of(Math.PI) }],
    ["bytes", { dtype: "U8", shape: [3], data: Uint8Array.of(0, 128, 255) }],
    ["step", { dtype: "I64", shape: [2], data: BigInt64Array.of(-(2n ** 62n), 2n ** 62n + 1n) }],
    ["labels", { dtype: "I32", shape: [1, 2], data: Int32Array.of(-2147483648, 2147483647) }],
    ["empty", { dtype: "F32", shape: [0, 4], data: new Float32Array(0) }],
  ]);
  const metadata = { format: "pt", epoch: "12", note: 'quotes " and \u00e9' };

  const file = encodeSafetensors(tensors, metadata);
  const headerLength = Number(new DataView(file.buffer).getBigUint64(0, true));
  assert.equal(headerLength % 8, 0, "header padded to a multiple of 8");

  const decoded = decodeSafetensors(file, SOURCE);
  assert.deepEqual([...decoded.tensors.keys()], [...tensors.keys()]);
  assert.deepEqual(decoded.tensors, tensors);
  assert.deepEqual(decoded.metadata, metadata);
});

Deno.test("safetensors decoding copies data into aligned buffers even at odd file offsets", () => {
  // One U8 byte before the F64 puts the F64 data at an odd file offset.
  const file = encodeSafetensors(
    new Map<string, Tensor>([
      ["odd", { dtype: "U8", shape: [1], data: Uint8Array.of(7) }],
      ["value", { dtype: "F64", shape: [1], data: Float64Array.of(-1.25) }],
    ]),
  );
  const value = decodeSafetensors(file, SOURCE).tensors.get("value")!;
  assert.equal(value.data.byteOffset, 0);
  assert.equal(value.data.buffer.byteLength, 8, "its own buffer, not a view of the file");
  assert.deepEqual(value.data, Float64Array.of(-1.25));
});

Deno.test("safetensors encoding matches a file built by hand per the spec", () => {
  const header = '{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
  assert.equal(header.length, 54);
  // 1.0f = 0x3f800000 and -2.0f = 0xc0000000, little-endian; header padded with 2 spaces to 56.
  const expected = handBuiltFile(header + "  ", [0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0]);
  assert.deepEqual(expected.subarray(0, 8), Uint8Array.of(56, 0, 0, 0, 0, 0, 0, 0));

  const tensors = new Map<string, Tensor>([
    ["w", { dtype: "F32", shape: [2], data: Float32Array.of(1, -2) }],
  ]);
  assert.deepEqual(encodeSafetensors(tensors), expected);
  assert.deepEqual(decodeSafetensors(expected, SOURCE).tensors, tensors);
});

Deno.test("safetensors decoding orders tensors by their data, whatever the header's key order", () => {
  const header = '{"second":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},' +
    '"first":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}';
  const { tensors } = decodeSafetensors(handBuiltFile(header.padEnd(104, " "), [10, 20]), SOURCE);
  assert.deepEqual([...tensors.entries()], [
    ["first", { dtype: "U8", shape: [1], data: Uint8Array.of(10) }],
    ["second", { dtype: "U8", shape: [1], data: Uint8Array.of(20) }],
  ]);
});

Deno.test("safetensors encoding puts metadata first and encodes a subarray's own bytes only", () => {
  const backing = Uint8Array.of(9, 1, 2, 9);
  const file = encodeSafetensors(
    new Map<string, Tensor>([["b", { dtype: "U8", shape: [2], data: backing.subarray(1, 3) }]]),
    { k: "v" },
  );
  const header = '{"__metadata__":{"k":"v"},"b":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}';
  assert.deepEqual(file, handBuiltFile(header.padEnd(80, " "), [1, 2]));
});

Deno.test("safetensors encoding refuses tensors whose data does not match", () => {
  const encode = (name: string, tensor: Tensor) => encodeSafetensors(new Map([[name, tensor]]));
  assert.throws(
    () => encode("w", { dtype: "F32", shape: [3], data: new Float32Array(2) }),
    /tensor "w": shape \[3\] does not match 2 elements/,
  );
  assert.throws(
    () => encode("w", { dtype: "F32", shape: [2], data: new Int32Array(2) } as unknown as Tensor),
    /tensor "w": data is not a Float32Array/,
  );
  assert.throws(
    () => encode("__metadata__", { dtype: "U8", shape: [0], data: new Uint8Array(0) }),
    /reserved/,
  );
});

Deno.test("safetensors decoding accepts an empty file body and a header with only metadata", () => {
  assert.deepEqual(decodeSafetensors(handBuiltFile("{}"), SOURCE), {
    tensors: new Map(),
    metadata: {},
  });
  assert.deepEqual(decodeSafetensors(handBuiltFile('{"__metadata__":{"a":"b"}}  '), SOURCE), {
    tensors: new Map(),
    metadata: { a: "b" },
  });
});

Deno.test("safetensors decoding refuses malformed files, naming the problem", () => {
  const entry = (dtype: string, shape: string, offsets: string) =>
    `{"dtype":"${dtype}","shape":${shape},"data_offsets":${offsets}}`;
  const eight = [1, 2, 3, 4, 5, 6, 7, 8];
  const cases: [string, Uint8Array, RegExp][] = [
    ["too short", Uint8Array.of(1, 0, 0), /too short/],
    [
      "header beyond file",
      Uint8Array.of(100, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0x7d),
      /header length 100 goes beyond the end of the 10-byte file/,
    ],
    [
      "header length near 2^64",
      Uint8Array.of(255, 255, 255, 255, 255, 255, 255, 255, 0x7b, 0x7d),
      /header length 18446744073709551615 goes beyond/,
    ],
    [
      "header not UTF-8",
      Uint8Array.of(2, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe),
      /header is not valid UTF-8/,
    ],
    ["header not JSON", handBuiltFile("{tensors}"), /header is not valid JSON/],
    ["header an array", handBuiltFile("[1, 2]"), /header is not a JSON object/],
    ["header null", handBuiltFile("null"), /header is not a JSON object/],
    ["entry not an object", handBuiltFile('{"w":[0,8]}'), /tensor "w": header entry is not/],
    [
      "unknown dtype",
      handBuiltFile(`{"w":${entry("F16", "[4]", "[0,8]")}}`, eight),
      /tensor "w": unknown dtype "F16" \(supported: F64, F32, I64, I32, U8\)/,
    ],
    [
      "shape not integers",
      handBuiltFile(`{"w":${entry("U8", "[2.5]", "[0,8]")}}`, eight),
      /tensor "w": shape is not an array of non-negative integers/,
    ],
    [
      "negative shape",
      handBuiltFile(`{"w":${entry("U8", "[-8]", "[0,8]")}}`, eight),
      /shape is not an array/,
    ],
    [
      "offsets not a pair",
      handBuiltFile(`{"w":${entry("U8", "[8]", "[0]")}}`, eight),
      /data_offsets is not a pair of non-negative integers/,
    ],
    [
      "shape and offsets disagree",
      handBuiltFile(`{"w":${entry("F32", "[3]", "[0,8]")}}`, eight),
      /tensor "w": shape \[3\] of F32 needs 12 bytes but data_offsets \[0, 8\] hold 8/,
    ],
    [
      "offsets out of order",
      handBuiltFile(`{"w":${entry("U8", "[0]", "[8,0]")}}`, eight),
      /tensor "w": data_offsets \[8, 0\] are out of order/,
    ],
    [
      "offsets overlap",
      handBuiltFile(
        `{"a":${entry("U8", "[6]", "[0,6]")},"b":${entry("U8", "[4]", "[4,8]")}}`,
        eight,
      ),
      /tensor "b": data_offsets \[4, 8\] overlap another/,
    ],
    [
      "offsets beyond data",
      handBuiltFile(`{"w":${entry("F32", "[4]", "[0,16]")}}`, eight),
      /tensor "w": data_offsets \[0, 16\] go beyond the 8 data bytes/,
    ],
    [
      "gap between tensors",
      handBuiltFile(
        `{"a":${entry("U8", "[2]", "[0,2]")},"b":${entry("U8", "[4]", "[4,8]")}}`,
        eight,
      ),
      /data bytes 2\.\.4 belong to no tensor/,
    ],
    [
      "trailing bytes",
      handBuiltFile(`{"w":${entry("F32", "[1]", "[0,4]")}}`, eight),
      /data bytes 4\.\.8 belong to no tensor/,
    ],
    [
      "metadata not an object",
      handBuiltFile('{"__metadata__":"epoch 3"}'),
      /"__metadata__" is not an object/,
    ],
    [
      "metadata value not a string",
      handBuiltFile('{"__metadata__":{"epoch":3}}'),
      /"__metadata__" value "epoch" is not a string/,
    ],
  ];
  for (const [what, bytes, problem] of cases) {
    try {
      assertRefused(bytes, problem);
    } catch (error) {
      throw new Error(`case "${what}": ${(error as Error).message}`);
    }
  }
});

Deno.test("a file that is no safetensors file is named for what it is, not for its header", () => {
  const text = (s: string) => new TextEncoder().encode(s);
  const metrics = text(
    '{"epoch":1,"step":4,"trainLoss":2.3,"trainAccuracy":0.1,"testLoss":2.3}\n'.repeat(18),
  );
  const png = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 73, 72);
  const zip = new Uint8Array(64);
  zip.set([0x50, 0x4b, 0x03, 0x04]);
  const cases: [string, Uint8Array, string][] = [
    ["a metrics log", metrics, "not a safetensors file (it is JSON text)"],
    ["a PNG image", png, "not a safetensors file (it is a PNG image)"],
    [
      "a PyTorch .pt file",
      zip,
      "not a safetensors file (it is a zip archive, as PyTorch's torch.save writes: save the " +
      "state dict with safetensors.torch.save_file)",
    ],
    [
      "random bytes",
      Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8, 200, 201),
      "not a safetensors file (its first 8 bytes are no header length that fits the file)",
    ],
    ["a few bytes", text("hi\n"), "too short for a safetensors file (3 bytes, need at least 8)"],
  ];
  for (const [what, bytes, problem] of cases) {
    assert.throws(() => decodeSafetensors(bytes, SOURCE), (error: unknown) => {
      assert.ok(error instanceof NotSafetensorsError, `${what}: ${error}`);
      assert.equal(error.message, `${SOURCE}: ${problem}`, what);
      return true;
    });
  }
  // A real file cut short is damaged, not something else: it says so.
  const file = encodeSafetensors(
    new Map([["w", { dtype: "F32", shape: [4], data: new Float32Array(4) }]]),
  );
  const cut = file.subarray(0, 20);
  assert.throws(() => decodeSafetensors(cut, SOURCE), (error: unknown) => {
    assert.ok(error instanceof CheckpointError && !(error instanceof NotSafetensorsError));
    assert.match(
      error.message,
      /header length \d+ goes beyond the end of the 20-byte file \(truncated\)$/,
    );
    return true;
  });
});
