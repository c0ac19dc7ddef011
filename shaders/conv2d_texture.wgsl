// The blocked convolution's texture variant: its bindings and loads. The arithmetic, the shapes
// and why they are blocked so are in conv2d_blocked_math.wgsl, which src/shaders.ts puts before
// this file to make the kernel conv2d_texture. It reads both operands through textureLoad from
// rgba32float read-only storage textures, which a copy or to_texture.wgsl fills just before:
//   forward:         x, weight  -> y
//   backward_input:  dy, weight -> dx
//   backward_weight: x, dy      -> dweight or partial sums
// Why: on lavapipe a storage-buffer load is a scalar loop over the SIMD lanes, one element at a
// time (17 cycles per element and lane on AVX2 CPUs, 3 with AVX-512), while a texel fetch is one
// gather for the whole vector of lanes (bench/README.md, "CPU adapters"); and llvmpipe inlines a
// storage texture's load where a sampled texture_2d's fetch is a call that looks up the mip level
// per lane: 1.9x the bytes per second (shaders/README.md, "Bindings"). Outputs stay storage
// buffers. Texel t of a tensor is its elements 4t..4t+3, at (t & (2^SHIFT - 1), t >> SHIFT), rows
// of 2^SHIFT texels (textureExtent in src/gpu/tensor.ts). IN_C and OUT_C are multiples of 4 (the
// textures pad other channel counts with zeros, STORED_IN_C and STORED_OUT_C are the real ones), so
// a channel vector is one texel. The textures hold f32 whatever the activations are
// (to_texture.wgsl widens them).

// log2 of the texels per row of each operand's texture.
override X_ROW_SHIFT: u32;
override WEIGHT_ROW_SHIFT: u32;
override DY_ROW_SHIFT: u32;

// The texel holding elements i..i+3 (i a multiple of 4) of a texture with rows of 2^shift.
fn texel(i: u32, shift: u32) -> vec2u {
  let t = i / 4u;
  return vec2u(t & ((1u << shift) - 1u), t >> shift);
}

@group(0) @binding(0) var x_texels: texture_storage_2d<rgba32float, read>;
@group(0) @binding(1) var weight_texels: texture_storage_2d<rgba32float, read>;

// Channels c..c+3 of the x row at `base`.
fn load_x(base: u32, c: u32) -> vec4f {
  return textureLoad(x_texels, texel(base + c, X_ROW_SHIFT));
}

// weight[o, tap, c..c+3].
fn load_weight(o: u32, tap: u32, c: u32) -> vec4f {
  return textureLoad(weight_texels, texel(weight_index(o, tap, c), WEIGHT_ROW_SHIFT));
}

// ---- forward's output ----
@group(0) @binding(2) var<storage, read_write> forward_y: array<stored_unit>;

// ---- backward_input's dy and output ----
@group(0) @binding(0) var input_dy_texels: texture_storage_2d<rgba32float, read>;
@group(0) @binding(2) var<storage, read_write> input_dx: array<stored_unit>;

// Output channels o..o+3 of the dy row at `base` (o is the reduction here).
fn load_input_dy(base: u32, o: u32) -> vec4f {
  return textureLoad(input_dy_texels, texel(base + o, DY_ROW_SHIFT));
}

// ---- backward_weight's dy and output ----
@group(0) @binding(1) var weight_dy_texels: texture_storage_2d<rgba32float, read>;
// [ranges, OUT_C, KERNEL, KERNEL, IN_C]
@group(0) @binding(2) var<storage, read_write> weight_partial: array<f32>;

// Output channels o..o+3 of output pixel p's dy row (past OUT_C: ignored by the caller).
fn load_weight_dy(p: u32, o: u32) -> vec4f {
  return textureLoad(weight_dy_texels, texel(p * OUT_C + o, DY_ROW_SHIFT));
}
