// The last step of a convolution's split weight gradient (conv2d_blocked.wgsl and
// conv2d_tiled.wgsl): dweight[i] = sum_s partial[s, i] over the SPLITS partial sums, each of
// WEIGHT_SIZE elements. One invocation per element; the sums are short (tens), so this pass is
// memory-bound and cheap next to the convolution.

override WORKGROUP_SIZE: u32;
override SPLITS: u32;
override WEIGHT_SIZE: u32;

@group(0) @binding(0) var<storage, read> partial: array<f32>;
@group(0) @binding(1) var<storage, read_write> dweight: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn reduce_splits(
  @builtin(global_invocation_id) gid: vec3u,
  @builtin(num_workgroups) groups: vec3u,
) {
  let i = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  if (i >= WEIGHT_SIZE) { return; }
  var sum = 0.0;
  for (var s = 0u; s < SPLITS; s++) {
    sum += partial[s * WEIGHT_SIZE + i];
  }
  dweight[i] = sum;
}
