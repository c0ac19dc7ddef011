// Copies a tensor into an rgba32float texture for kernels that read it with textureLoad
// (conv2d_texture.wgsl): on lavapipe a texel fetch is one gather, while every storage-buffer
// element is a scalar loop over the SIMD lanes (bench/README.md, "CPU adapters"), so one streaming
// pass here saves the many storage loads of each element the reading kernel would make.
//   source: TEXELS x 4 elements (`act`, widened to f32: the texture is rgba32float either way).
//   texels: texel t at (t & (2^ROW_SHIFT - 1), t >> ROW_SHIFT), rows of 2^ROW_SHIFT texels
//           (textureExtent in src/gpu/tensor.ts).

alias act = f32;

override TEXELS: u32;
override ROW_SHIFT: u32;
override WORKGROUP_SIZE: u32;

@group(0) @binding(0) var<storage, read> source: array<vec4<act>>;
@group(0) @binding(1) var texels: texture_storage_2d<rgba32float, write>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn to_texture(
  @builtin(global_invocation_id) gid: vec3u,
  @builtin(num_workgroups) groups: vec3u,
) {
  let t = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  if (t >= TEXELS) { return; }
  let at = vec2u(t & ((1u << ROW_SHIFT) - 1u), t >> ROW_SHIFT);
  textureStore(texels, at, vec4f(source[t]));
}
