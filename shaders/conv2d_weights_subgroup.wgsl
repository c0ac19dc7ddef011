// The blocked convolution's weight blocks, shared within subgroups (conv2d_blocked_math.wgsl says
// how the kernels are joined): the four rows of a block are the same for every lane of a
// workgroup, so lane l loads only row l % 4 and each lane takes the four rows from lanes 0-3 of
// its subgroup by broadcast. On a CPU adapter, where a load is a gather over all lanes (a texel
// fetch costs tens of instructions) and a broadcast one shuffle, that makes a block one load
// instead of four.
//
// Needs the `subgroups` feature, subgroups of at least 4 lanes, and lane l of a subgroup being
// invocation (its first + l) of the workgroup, lanes counted in local_invocation_index order:
// src/gpu/subgroup_probe.ts checks both before the policy may choose this kernel. The
// callers' control flow is the same in all lanes (a broadcast needs every lane there). The source
// has no `enable subgroups;`: naga (Deno) refuses the directive, Tint (browsers) requires it, so
// src/gpu/pipeline.ts puts it first where the platform wants it.

// Column j: weight[o + j, tap, c..c+3], from subgroup lane j.
fn weight_block(o: u32, tap: u32, c: u32, local: u32) -> mat4x4f {
  let row = load_weight(o + local % 4u, tap, c);
  return mat4x4f(
    subgroupBroadcast(row, 0u),
    subgroupBroadcast(row, 1u),
    subgroupBroadcast(row, 2u),
    subgroupBroadcast(row, 3u),
  );
}
