import assert from "node:assert/strict";
import { encode, type ImageData, type PngEncoderOptions } from "fast-png";
import { CIFAR_IMAGE_BYTES, decodePngToCifar, ImageError } from "../../src/data/image.ts";

type Rgb = [number, number, number];

/** Encodes a PNG whose pixel (x, y) has the given samples (one per channel). */
function makePng(
  width: number,
  height: number,
  pixel: (x: number, y: number) => number[],
  options: Partial<ImageData> = {},
  encoderOptions?: PngEncoderOptions,
): Uint8Array {
  const rows: number[][] = [];
  for (let y = 0; y < height; y++) {
    rows.push(Array.from({ length: width }, (_, x) => pixel(x, y)).flat());
  }
  const depth = options.depth ?? 8;
  const samples = depth < 8 ? rows.flatMap((row) => packRow(row, depth)) : rows.flat();
  const data = depth === 16 ? Uint16Array.from(samples) : Uint8Array.from(samples);
  return encode(
    { width, height, data, channels: pixel(0, 0).length, depth, ...options },
    encoderOptions,
  );
}

/** Packs samples of 1, 2 or 4 bits into bytes, most significant bits first, as PNG stores them. */
function packRow(samples: number[], depth: number): number[] {
  const bytes = Array(Math.ceil((samples.length * depth) / 8)).fill(0);
  samples.forEach((sample, i) => {
    bytes[Math.floor((i * depth) / 8)] |= sample << (8 - depth - ((i * depth) % 8));
  });
  return bytes;
}

/** The colour of output pixel (x, y), read from CIFAR's red, green and blue planes. */
function cifarPixel(planes: Uint8Array, x: number, y: number): Rgb {
  const at = y * 32 + x;
  return [planes[at], planes[1024 + at], planes[2048 + at]];
}

function assertSolid(planes: Uint8Array, [r, g, b]: Rgb): void {
  assert.equal(planes.length, CIFAR_IMAGE_BYTES);
  assert.deepEqual(planes, Uint8Array.from({ length: 3072 }, (_, i) => [r, g, b][i >> 10]));
}

const decode = (png: Uint8Array) => decodePngToCifar(png, "test.png");

Deno.test("a solid colour stays that colour in R, G, B planes at every size", () => {
  for (const [width, height] of [[32, 32], [1, 1], [64, 48], [7, 5], [33, 31], [500, 3]]) {
    assertSolid(decode(makePng(width, height, () => [10, 200, 77])), [10, 200, 77]);
  }
});

Deno.test("a 64x64 image of 2x2 blocks shrinks to exactly the block colours", () => {
  const block = (bx: number, by: number): Rgb => [bx * 8, by * 8, 255 - (bx + by) * 4];
  const planes = decode(makePng(64, 64, (x, y) => block(x >> 1, y >> 1)));
  for (let y = 0; y < 32; y++) {
    for (let x = 0; x < 32; x++) assert.deepEqual(cifarPixel(planes, x, y), block(x, y));
  }
});

Deno.test("shrinking by a fraction averages the area each output pixel covers", () => {
  // 64x48: columns come in pairs (2:1), rows are a ramp shrunk 1.5:1.
  const ramp = (y: number) => y * 5;
  const planes = decode(makePng(64, 48, (x, y) => [x >> 1, ramp(y), 0]));
  for (let y = 0; y < 32; y++) {
    // Output row y covers input rows [1.5 y, 1.5 y + 1.5): integrate numerically, independently.
    const steps = 3000;
    let sum = 0;
    for (let s = 0; s < steps; s++) sum += ramp(Math.floor(1.5 * y + (1.5 * (s + 0.5)) / steps));
    const expected = sum / steps;
    for (let x = 0; x < 32; x++) {
      const [red, green] = cifarPixel(planes, x, y);
      assert.equal(red, x);
      assert.ok(Math.abs(green - expected) <= 0.5 + 1e-9, `row ${y}: ${green} vs ${expected}`);
    }
  }
});

Deno.test("enlarging interpolates between pixel centres and repeats the edges", () => {
  // 2x1, black then white: each input pixel's centre lands between outputs 7|8 and 23|24.
  const planes = decode(makePng(2, 1, (x) => (x === 0 ? [0, 0, 0] : [255, 255, 255])));
  const row = Array.from({ length: 32 }, (_, x) => cifarPixel(planes, x, 0)[0]);
  assert.deepEqual(row.slice(0, 8), Array(8).fill(0));
  assert.deepEqual(row.slice(24), Array(8).fill(255));
  for (let x = 1; x < 32; x++) assert.ok(row[x] >= row[x - 1], "non-decreasing");
  for (let x = 0; x < 32; x++) assert.equal(row[x] + row[31 - x], 255, "symmetric");
  for (let y = 1; y < 32; y++) {
    for (let x = 0; x < 32; x++) {
      assert.deepEqual(cifarPixel(planes, x, y), cifarPixel(planes, x, 0));
    }
  }
});

Deno.test("grayscale at 1, 8 and 16 bits fills all three planes", () => {
  const halves = decode(makePng(32, 32, (x) => [x < 16 ? 1 : 0], { depth: 1 }));
  for (let x = 0; x < 32; x++) {
    assert.deepEqual(cifarPixel(halves, x, 9), x < 16 ? [255, 255, 255] : [0, 0, 0]);
  }
  // Width 10 at 1 bit needs 2 bytes a row; only the last column, in the second byte, is white.
  const lastColumn = decode(makePng(10, 10, (x) => [x === 9 ? 1 : 0], { depth: 1 }));
  assert.deepEqual(cifarPixel(lastColumn, 0, 31), [0, 0, 0]);
  assert.deepEqual(cifarPixel(lastColumn, 31, 0), [255, 255, 255]);
  assertSolid(decode(makePng(5, 5, () => [99])), [99, 99, 99]);
  assertSolid(decode(makePng(8, 8, () => [40 * 257], { depth: 16 })), [40, 40, 40]);
});

Deno.test("16-bit samples are scaled to 8 bits with rounding", () => {
  // 1000 / 257 = 3.89; 128 * 257 is exactly 128.
  assertSolid(decode(makePng(3, 3, () => [65535, 128 * 257, 1000], { depth: 16 })), [255, 128, 4]);
});

Deno.test("alpha is composited on white", () => {
  assertSolid(decode(makePng(4, 4, () => [10, 20, 30, 0])), [255, 255, 255]);
  assertSolid(decode(makePng(4, 4, () => [10, 20, 30, 255])), [10, 20, 30]);
  // Half-transparent red: green and blue come out 255 * 127 / 255.
  assertSolid(decode(makePng(4, 4, () => [255, 0, 0, 128])), [255, 127, 127]);
  // Gray+alpha, 16 bits: black at alpha 32768 / 65535 leaves 255 * 32767 / 65535 = 127.498.
  assertSolid(decode(makePng(2, 2, () => [0, 32768], { depth: 16 })), [127, 127, 127]);
  assertSolid(decode(makePng(2, 2, () => [200, 255])), [200, 200, 200]);
});

Deno.test("palette indices map to their colours, palette transparency to white", () => {
  // fast-png writes tRNS alphas for leading palette entries only, so the transparent one is first.
  const palette = [[1, 2, 3, 0], [250, 0, 0, 255], [0, 250, 0, 255], [0, 0, 250, 255]];
  for (const depth of [8, 4, 2] as const) {
    const png = makePng(32, 32, (x) => [x % 4], { depth, palette });
    const planes = decode(png);
    assert.deepEqual(
      [0, 1, 2, 3].map((x) => cifarPixel(planes, x, 31)),
      [[255, 255, 255], [250, 0, 0], [0, 250, 0], [0, 0, 250]],
      `depth ${depth}`,
    );
  }
  const opaque = makePng(6, 6, () => [1], { palette: [[0, 0, 0], [9, 8, 7]] });
  assertSolid(decode(opaque), [9, 8, 7]);
});

Deno.test("a tRNS colour key makes the matching gray or RGB colour transparent", () => {
  const png = makePng(32, 32, (x) => (x < 16 ? [10, 20, 30] : [40, 50, 60]));
  const keyed = withChunk(png, "tRNS", [0, 10, 0, 20, 0, 30]);
  assert.deepEqual(cifarPixel(decode(keyed), 0, 0), [255, 255, 255]);
  assert.deepEqual(cifarPixel(decode(keyed), 31, 0), [40, 50, 60]);
  const gray = withChunk(makePng(32, 32, (x) => [x < 16 ? 0 : 99]), "tRNS", [0, 99]);
  assert.deepEqual([cifarPixel(decode(gray), 0, 0), cifarPixel(decode(gray), 31, 0)], [
    [0, 0, 0],
    [255, 255, 255],
  ]);
});

Deno.test("an interlaced PNG decodes like the same image not interlaced", () => {
  const pixel = (x: number, y: number) => [x * 7, y * 11, (x * y) % 256];
  assert.deepEqual(
    decode(makePng(23, 17, pixel, {}, { interlace: "Adam7" })),
    decode(makePng(23, 17, pixel)),
  );
});

Deno.test("non-PNG and corrupt input is refused with a message naming the file", () => {
  const jpeg = Uint8Array.of(0xff, 0xd8, 0xff, 0xe0, 0, 16, 0x4a, 0x46, 0x49, 0x46);
  assert.throws(
    () => decodePngToCifar(jpeg, "cat.jpg"),
    new ImageError("cat.jpg", "not a PNG image (only PNG is supported); convert it to PNG"),
  );
  assert.throws(
    () => decodePngToCifar(new Uint8Array(0), "empty.png"),
    /^ImageError: empty.png: not a PNG/,
  );
  const truncated = makePng(8, 8, () => [1, 2, 3]).subarray(0, 40);
  assert.throws(() => decodePngToCifar(truncated, "cut.png"), /cut\.png: corrupt PNG image/);
});

/** Inserts a chunk right after IHDR (signature 8 bytes + IHDR 25 bytes), with its CRC. */
function withChunk(png: Uint8Array, type: string, payload: number[]): Uint8Array {
  const body = Uint8Array.from([...new TextEncoder().encode(type), ...payload]);
  const chunk = new Uint8Array(4 + body.length + 4);
  const view = new DataView(chunk.buffer);
  view.setUint32(0, payload.length);
  chunk.set(body, 4);
  view.setUint32(4 + body.length, crc32(body));
  return Uint8Array.from([...png.subarray(0, 33), ...chunk, ...png.subarray(33)]);
}

/** CRC-32 as PNG uses it (ISO 3309, reflected polynomial 0xedb88320). */
function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return (crc ^ 0xffffffff) >>> 0;
}
