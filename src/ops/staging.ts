/**
 * Staging: the calls an op runs before its passes to read some inputs as `rgba32float` textures
 * (the CPU variants blocked_texture of conv2d.ts and serial_texture of batchnorm.ts), each input
 * once per op whichever passes read it. On lavapipe a texel fetch is one gather for all SIMD
 * lanes, while a storage load is a scalar loop over them (bench/README.md, "CPU adapters").
 * An f32 tensor whose rows are whole texels is copied (copyBufferToTexture, no kernel: on lavapipe
 * 10x faster than a kernel's texture stores, which are per-lane loops); f16 (widened to f32) and
 * rows padded to whole texels (the 3-channel stem) go through to_texture.wgsl.
 */
import {
  type Call,
  kernelCall,
  linearGrid,
  read,
  storageTexture,
  textureCopy,
} from "../gpu/kernel_call.ts";
import { type TensorDesc, textureDesc } from "../gpu/tensor.ts";
import { activationKernel, kernels } from "../shaders.ts";
import { elementCount } from "../util/shape.ts";

/** to_texture's workgroup: one texel per invocation, a streaming pass like the elementwise ops. */
const TO_TEXTURE_WORKGROUP = 64;

/** The staging calls of one op, in the order its textures were asked for. */
export class Staging {
  readonly calls: Call[] = [];
  readonly #textures = new Map<TensorDesc, TensorDesc>();

  /**
   * `tensor` as an rgba32float texture (src/gpu/tensor.ts, textureDesc), filled once; a last
   * dimension that is not a multiple of 4 is padded with zeros.
   */
  texture(tensor: TensorDesc): TensorDesc {
    const staged = this.#textures.get(tensor);
    if (staged) return staged;
    const texture = textureDesc(`${tensor.label} texels`, tensor);
    this.#textures.set(tensor, texture);
    const channels = tensor.shape[tensor.shape.length - 1];
    const padded = channels % 4 !== 0;
    if (!padded && tensor.dtype === "f32") {
      this.calls.push(textureCopy(tensor, texture));
      return texture;
    }
    const texels = elementCount(texture.shape) / 4;
    this.calls.push(kernelCall({
      kernel: activationKernel(kernels.toTexture, tensor.dtype),
      entryPoint: padded ? "to_texture_padded" : "to_texture",
      workgroupSize: TO_TEXTURE_WORKGROUP,
      constants: {
        TEXELS: texels,
        ROW_SHIFT: rowShiftOf(texture),
        ...(padded ? { CHANNELS: channels } : {}),
      },
      grid: linearGrid(texels, TO_TEXTURE_WORKGROUP),
      bindings: [read(tensor), storageTexture(texture)],
    }));
    return texture;
  }
}

/** log2 of the texels per row of a texture tensor (textureExtent in src/gpu/tensor.ts). */
export function rowShiftOf(texture: TensorDesc): number {
  return Math.log2(texture.texture![0]);
}
