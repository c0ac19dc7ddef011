/**
 * Turns a PNG file of any size and colour type into a CIFAR-10 input: 32x32 RGB, stored as three
 * 1024-byte planes (red, green, blue), each row by row.
 */
import { UserError } from "../errors.ts";
import { decode, type DecodedPng, hasPngSignature } from "fast-png";

export const CIFAR_SIDE = 32;
export const CIFAR_IMAGE_BYTES = 3 * CIFAR_SIDE * CIFAR_SIDE;

/** An image file that cannot be used; the message is one line naming the file. */
export class ImageError extends UserError {
  constructor(source: string, problem: string) {
    super(`${source}: ${problem}`);
    this.name = "ImageError";
  }
}

/**
 * Decodes PNG `bytes` (any bit depth; grayscale, gray+alpha, RGB, RGBA or palette) and resizes
 * them to CIFAR's 32x32 RGB planes. Transparent pixels are composited on white. `source` names the
 * file in errors.
 */
export function decodePngToCifar(bytes: Uint8Array, source: string): Uint8Array {
  if (!hasPngSignature(bytes)) {
    throw new ImageError(source, "not a PNG image (only PNG is supported); convert it to PNG");
  }
  let png: DecodedPng;
  try {
    png = decode(bytes);
  } catch (error) {
    throw new ImageError(source, `corrupt PNG image (${(error as Error).message})`);
  }
  return resizeToCifar(png.width, png.height, opaquePixelReader(png, source));
}

/** Writes pixel `index`'s red, green and blue, 0..255, into `rgb`. */
type PixelReader = (index: number, rgb: Float64Array) => void;

/**
 * Reads the pixels of `png` as opaque colours: samples of every depth are scaled to 0..255 and
 * alpha (from an alpha channel, palette transparency or a tRNS colour key) blends each colour with
 * white. Colours stay sRGB-encoded, as in common image libraries.
 */
function opaquePixelReader(png: DecodedPng, source: string): PixelReader {
  const samples = unpackSamples(png);
  const maxSample = 2 ** png.depth - 1;
  const scale = 255 / maxSample;
  // For grayscale and RGB images, tRNS holds the one colour (in raw samples) that is transparent.
  const key = png.transparency;
  switch (png.channels) {
    case 1: {
      if (png.palette) return paletteReader(samples, png.palette, source);
      return (i, rgb) => {
        rgb.fill(samples[i] * scale);
        if (key?.[0] === samples[i]) onWhite(rgb, 0);
      };
    }
    case 2:
      return (i, rgb) => {
        rgb.fill(samples[2 * i] * scale);
        onWhite(rgb, samples[2 * i + 1] / maxSample);
      };
    case 3:
      return (i, rgb) => {
        for (let c = 0; c < 3; c++) rgb[c] = samples[3 * i + c] * scale;
        if (key?.length === 3 && key.every((value, c) => value === samples[3 * i + c])) {
          onWhite(rgb, 0);
        }
      };
    case 4:
      return (i, rgb) => {
        for (let c = 0; c < 3; c++) rgb[c] = samples[4 * i + c] * scale;
        onWhite(rgb, samples[4 * i + 3] / maxSample);
      };
    default:
      throw new ImageError(source, `unsupported PNG with ${png.channels} channels`);
  }
}

function paletteReader(
  indices: ArrayLike<number>,
  palette: number[][],
  source: string,
): PixelReader {
  return (i, rgb) => {
    const colour = palette[indices[i]];
    if (colour === undefined) {
      throw new ImageError(
        source,
        `palette index ${indices[i]} is beyond its ${palette.length} colours`,
      );
    }
    for (let c = 0; c < 3; c++) rgb[c] = colour[c];
    // Palette entries carry a fourth (alpha) value only when the file has a tRNS chunk.
    if (colour.length === 4) onWhite(rgb, colour[3] / 255);
  };
}

/** Blends the colour in `rgb` (0..255) at opacity `alpha` (0..1) over white. */
function onWhite(rgb: Float64Array, alpha: number): void {
  for (let c = 0; c < 3; c++) rgb[c] = rgb[c] * alpha + 255 * (1 - alpha);
}

/**
 * The image's samples, one array element per channel per pixel. fast-png leaves samples of 1, 2
 * and 4 bits packed into bytes, most significant first, each row starting on a new byte.
 */
function unpackSamples(png: DecodedPng): ArrayLike<number> {
  if (png.depth >= 8) return png.data;
  const perRow = png.width * png.channels;
  const rowBytes = Math.ceil((perRow * png.depth) / 8);
  const mask = (1 << png.depth) - 1;
  const samples = new Uint8Array(perRow * png.height);
  for (let y = 0; y < png.height; y++) {
    for (let s = 0; s < perRow; s++) {
      const bit = s * png.depth;
      const byte = png.data[y * rowBytes + (bit >> 3)];
      samples[y * perRow + s] = (byte >> (8 - png.depth - (bit & 7))) & mask;
    }
  }
  return samples;
}

/** Output sample = sum over k of weights[k] * input sample (first + k). */
interface Taps {
  first: number;
  weights: number[];
}

/**
 * The taps that resample one axis from `inSize` to `outSize` samples: area averaging when
 * shrinking (each output averages the input it covers, partial pixels weighted by coverage), so
 * that fine detail averages out instead of aliasing; bilinear interpolation between pixel centres
 * when enlarging, since there is then less than one input pixel to average.
 */
function axisTaps(inSize: number, outSize: number): Taps[] {
  return Array.from(
    { length: outSize },
    (_, o) => inSize >= outSize ? areaTaps(inSize, outSize, o) : bilinearTaps(inSize, outSize, o),
  );
}

function areaTaps(inSize: number, outSize: number, o: number): Taps {
  // In units of 1/outSize input pixels, input pixel i spans [i*outSize, (i+1)*outSize) and output
  // o spans [o*inSize, (o+1)*inSize): all integers, so coverage is exact.
  const start = o * inSize;
  const end = start + inSize;
  const first = Math.floor(start / outSize);
  const weights: number[] = [];
  for (let i = first; i * outSize < end; i++) {
    const covered = Math.min(end, (i + 1) * outSize) - Math.max(start, i * outSize);
    weights.push(covered / inSize);
  }
  return { first, weights };
}

function bilinearTaps(inSize: number, outSize: number, o: number): Taps {
  // Align pixel centres, clamping at the edges so border pixels are repeated rather than faded.
  const centre = Math.min(Math.max(((o + 0.5) * inSize) / outSize - 0.5, 0), inSize - 1);
  const first = Math.floor(centre);
  const fraction = centre - first;
  return { first, weights: fraction === 0 ? [1] : [1 - fraction, fraction] };
}

function weightedSum({ first, weights }: Taps, sample: (index: number) => number): number {
  let sum = 0;
  for (let k = 0; k < weights.length; k++) sum += weights[k] * sample(first + k);
  return sum;
}

/** Resizes rows first (reading pixels straight from the decoder's data), then columns. */
function resizeToCifar(width: number, height: number, readPixel: PixelReader): Uint8Array {
  const columnTaps = axisTaps(width, CIFAR_SIDE);
  const rowTaps = axisTaps(height, CIFAR_SIDE);

  // rows[(y * 32 + x) * 3 + c]: input row y, already resized to 32 pixels.
  const rows = new Float64Array(height * CIFAR_SIDE * 3);
  const rowPixels = new Float64Array(width * 3);
  const rgb = new Float64Array(3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      readPixel(y * width + x, rgb);
      rowPixels.set(rgb, x * 3);
    }
    for (let x = 0; x < CIFAR_SIDE; x++) {
      for (let c = 0; c < 3; c++) {
        rows[(y * CIFAR_SIDE + x) * 3 + c] = weightedSum(
          columnTaps[x],
          (i) => rowPixels[i * 3 + c],
        );
      }
    }
  }

  const planes = new Uint8Array(CIFAR_IMAGE_BYTES);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < CIFAR_SIDE; y++) {
      for (let x = 0; x < CIFAR_SIDE; x++) {
        const value = weightedSum(rowTaps[y], (i) => rows[(i * CIFAR_SIDE + x) * 3 + c]);
        planes[(c * CIFAR_SIDE + y) * CIFAR_SIDE + x] = Math.round(value);
      }
    }
  }
  return planes;
}
