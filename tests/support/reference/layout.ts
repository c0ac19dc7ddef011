/**
 * Conversions between PyTorch's channels-first layouts and the project's channels-last ones.
 * Conv weights OIHW -> OHWI and activations NCHW -> NHWC are the same permutation (axis 1 moves
 * to the end), so both are thin names over one pair of loops. The production code has its own
 * conversion; this one exists so the PyTorch fixture test depends on nothing under test.
 */
import { checkLength, type NhwcShape } from "./shape.ts";

/** A 4-D extent in channels-first order: [outer, channels, height, width]. */
type ChannelsFirstExtent = readonly [number, number, number, number];

/** Visits every element with its index in the channels-first and in the channels-last layout. */
function forEachElement(
  [outer, channels, height, width]: ChannelsFirstExtent,
  visit: (channelsFirstIndex: number, channelsLastIndex: number) => void,
): void {
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++) {
      for (let row = 0; row < height; row++) {
        for (let column = 0; column < width; column++) {
          visit(
            ((o * channels + c) * height + row) * width + column,
            ((o * height + row) * width + column) * channels + c,
          );
        }
      }
    }
  }
}

function channelsFirstToLast(data: ArrayLike<number>, extent: ChannelsFirstExtent): Float64Array {
  checkLength(data, extent.reduce((product, size) => product * size, 1), "layout input");
  const result = new Float64Array(data.length);
  forEachElement(extent, (first, last) => (result[last] = data[first]));
  return result;
}

function channelsLastToFirst(data: ArrayLike<number>, extent: ChannelsFirstExtent): Float64Array {
  checkLength(data, extent.reduce((product, size) => product * size, 1), "layout input");
  const result = new Float64Array(data.length);
  forEachElement(extent, (first, last) => (result[first] = data[last]));
  return result;
}

export interface ConvWeightExtent {
  cout: number;
  cin: number;
  k: number;
}

/** PyTorch conv weight [Cout, Cin, K, K] -> project layout [Cout, K, K, Cin]. */
export function oihwToOhwi(weight: ArrayLike<number>, extent: ConvWeightExtent): Float64Array {
  return channelsFirstToLast(weight, [extent.cout, extent.cin, extent.k, extent.k]);
}

/** Project layout [Cout, K, K, Cin] -> PyTorch conv weight [Cout, Cin, K, K]. */
export function ohwiToOihw(weight: ArrayLike<number>, extent: ConvWeightExtent): Float64Array {
  return channelsLastToFirst(weight, [extent.cout, extent.cin, extent.k, extent.k]);
}

/** PyTorch activation [N, C, H, W] -> project layout [N, H, W, C]. */
export function nchwToNhwc(x: ArrayLike<number>, shape: NhwcShape): Float64Array {
  return channelsFirstToLast(x, [shape.n, shape.c, shape.h, shape.w]);
}

/** Project layout [N, H, W, C] -> PyTorch activation [N, C, H, W]. */
export function nhwcToNchw(x: ArrayLike<number>, shape: NhwcShape): Float64Array {
  return channelsLastToFirst(x, [shape.n, shape.c, shape.h, shape.w]);
}
