// Whether this adapter's subgroups are what conv2d_weights_subgroup.wgsl relies on: at least 4
// lanes, lane l being invocation (its subgroup's first + l) of the workgroup in
// local_invocation_index order, and a broadcast from lane 3 reaching every lane. Each invocation
// writes 1 where all of that holds for it, 0 where not (src/gpu/subgroup_probe.ts reads them).
// Like every kernel that uses subgroups, the source has no `enable subgroups;` (pipeline.ts).

override WORKGROUP_SIZE: u32;

@group(0) @binding(0) var<storage, read_write> holds: array<u32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn probe(
  @builtin(global_invocation_id) gid: vec3u,
  @builtin(local_invocation_index) local: u32,
  @builtin(subgroup_invocation_id) lane: u32,
  @builtin(subgroup_size) size: u32,
) {
  let first = local - local % 4u;
  let from_lane_3 = subgroupBroadcast(local, 3u);
  holds[gid.x] = u32(size >= 4u && lane == local % size && from_lane_3 == first + 3u);
}
