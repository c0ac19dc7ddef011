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

/**
 * The staging calls of one op, or of a whole plan (src/plan/network.ts): then a tensor that
 * several ops read as a texture (a layer's input in its forward and backward passes, a block's
 * input in both branches) is copied once, and its texture lives from there to its last reader.
 * The plan refuses to write a staged tensor again (`checkTextureSources` in src/plan/allocator.ts), which would leave its
 * texture stale.
 */
export class Staging {
  #calls: Call[] = [];
  readonly #textures = new Map<TensorDesc, TensorDesc>();
  readonly #derived = new Map<TensorDesc, Map<string, TensorDesc>>();

  /** The calls added since the last take, in order: the asking op runs them before its own. */
  take(): Call[] {
    const calls = this.#calls;
    this.#calls = [];
    return calls;
  }

  /**
   * A texture computed from `source` by calls that `fill` adds (to this staging) and returns, once
   * per `kind`: a Winograd layer's transformed tiles serve its forward and its weight gradient.
   */
  derived(source: TensorDesc, kind: string, fill: () => TensorDesc): TensorDesc {
    const kinds = this.#derived.get(source) ?? new Map<string, TensorDesc>();
    this.#derived.set(source, kinds);
    const known = kinds.get(kind);
    if (known) return known;
    const texture = fill();
    kinds.set(kind, texture);
    return texture;
  }

  /** Adds calls of the staging's own (a derived texture's). */
  add(...calls: Call[]): void {
    this.#calls.push(...calls);
  }

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
      this.#calls.push(textureCopy(tensor, texture));
      return texture;
    }
    const texels = elementCount(texture.shape) / 4;
    this.#calls.push(kernelCall({
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
