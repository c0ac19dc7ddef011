// Copies a tensor into an rgba32float texture for kernels that read it with textureLoad
// (conv2d_texture.wgsl, batchnorm.wgsl's _texture passes): on lavapipe a texel fetch is one
// gather, while every storage-buffer element is a scalar loop over the SIMD lanes (bench/README.md,
// "CPU adapters"), so one streaming pass here saves the many storage loads of each element the
// reading kernel would make. Only where a copy command cannot (src/ops/staging.ts): f16 tensors
// (widened) and rows of channels that are not whole texels (padded); an f32 tensor of whole texels
// is copied with copyBufferToTexture, 10-16x faster on lavapipe than these per-lane texture stores.
//   to_texture:        source of TEXELS x 4 elements, texel t = elements 4t..4t+3.
//   to_texture_padded: source of rows of CHANNELS elements (a tensor's last dimension, not a
//                      multiple of 4: the 3-channel stem); each row padded with zeros to
//                      ROW_TEXELS = ceil(CHANNELS / 4) texels, so that a texel is 4 channels of
//                      one row as in the unpadded case. TEXELS counts the padded texels.
//   Elements are `act`, widened to f32: the texture is rgba32float either way. Texel t is at
//   (t & (2^ROW_SHIFT - 1), t >> ROW_SHIFT), rows of 2^ROW_SHIFT texels (textureExtent in
//   src/gpu/tensor.ts).

alias act = f32;

override TEXELS: u32;
override ROW_SHIFT: u32;
override WORKGROUP_SIZE: u32;
override CHANNELS: u32 = 4u;
override ROW_TEXELS = (CHANNELS + 3u) / 4u;

@group(0) @binding(1) var texels: texture_storage_2d<rgba32float, write>;

// The texel an invocation writes: the grid is rows of up to 65535 workgroups (linearGrid).
fn texel_index(gid: vec3u, groups: vec3u) -> u32 {
  return gid.x + gid.y * groups.x * WORKGROUP_SIZE;
}

fn store_texel(t: u32, value: vec4f) {
  textureStore(texels, vec2u(t & ((1u << ROW_SHIFT) - 1u), t >> ROW_SHIFT), value);
}

@group(0) @binding(0) var<storage, read> source: array<vec4<act>>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn to_texture(
  @builtin(global_invocation_id) gid: vec3u,
  @builtin(num_workgroups) groups: vec3u,
) {
  let t = texel_index(gid, groups);
  if (t >= TEXELS) { return; }
  store_texel(t, vec4f(source[t]));
}

@group(0) @binding(0) var<storage, read> source_rows: array<act>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn to_texture_padded(
  @builtin(global_invocation_id) gid: vec3u,
  @builtin(num_workgroups) groups: vec3u,
) {
  let t = texel_index(gid, groups);
  if (t >= TEXELS) { return; }
  let channel = (t % ROW_TEXELS) * 4u;
  let first = (t / ROW_TEXELS) * CHANNELS + channel;
  var value = vec4f();
  for (var k = 0u; k < 4u; k++) {
    if (channel + k < CHANNELS) { value[k] = f32(source_rows[first + k]); }
  }
  store_texel(t, value);
}
