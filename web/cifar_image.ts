/// <reference lib="dom" />
/**
 * CIFAR images on canvases and back: the data set keeps each 32x32 image as three planes (1024
 * red, 1024 green, 1024 blue bytes), a canvas as RGBA pixels.
 */
import { IMAGE_BYTES } from "../src/data/cifar.ts";

const SIDE = 32;
const PIXELS = SIDE * SIDE;

/** A 32x32 canvas showing `planes` (one image of CIFAR planes). */
export function planesToCanvas(planes: Uint8Array): HTMLCanvasElement {
  const canvas = document.createElement("canvas");
  canvas.width = SIDE;
  canvas.height = SIDE;
  const pixels = new ImageData(SIDE, SIDE);
  for (let i = 0; i < PIXELS; i++) {
    pixels.data[4 * i] = planes[i];
    pixels.data[4 * i + 1] = planes[PIXELS + i];
    pixels.data[4 * i + 2] = planes[2 * PIXELS + i];
    pixels.data[4 * i + 3] = 255;
  }
  canvas.getContext("2d")!.putImageData(pixels, 0, 0);
  return canvas;
}

/**
 * Any image the browser decodes, scaled to 32x32 over white (for transparent pixels), as CIFAR
 * planes; and the canvas it was drawn on, to show what the model sees.
 */
export async function imageToPlanes(
  file: Blob,
): Promise<{ planes: Uint8Array; canvas: HTMLCanvasElement }> {
  const bitmap = await createImageBitmap(file);
  const canvas = document.createElement("canvas");
  canvas.width = SIDE;
  canvas.height = SIDE;
  const context = canvas.getContext("2d", { willReadFrequently: true })!;
  context.fillStyle = "#ffffff";
  context.fillRect(0, 0, SIDE, SIDE);
  context.imageSmoothingQuality = "high";
  context.drawImage(bitmap, 0, 0, SIDE, SIDE);
  bitmap.close();
  const { data } = context.getImageData(0, 0, SIDE, SIDE);
  const planes = new Uint8Array(IMAGE_BYTES);
  for (let i = 0; i < PIXELS; i++) {
    planes[i] = data[4 * i];
    planes[PIXELS + i] = data[4 * i + 1];
    planes[2 * PIXELS + i] = data[4 * i + 2];
  }
  return { planes, canvas };
}

/** Image `index` of a split's back-to-back images. */
export function imageOf(images: Uint8Array, index: number): Uint8Array {
  return images.subarray(index * IMAGE_BYTES, (index + 1) * IMAGE_BYTES);
}
