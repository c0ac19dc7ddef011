// Plain copy, destination = source, of a tensor whose element count is a multiple of 4: the
// yardstick that the benchmarks of memory-bound kernels measure their bandwidth against.
// Each invocation copies VECTORS_PER_INVOCATION consecutive vec4s: many on CPU adapters (one
// sequential stream per SIMD lane, as llvmpipe likes), one on GPUs (neighbouring invocations read
// neighbouring addresses). The grid follows README.md's linear convention.

override WORKGROUP_SIZE: u32;
override VECTORS_PER_INVOCATION: u32 = 1u;

@group(0) @binding(0) var<storage, read> source: array<vec4f>;
@group(0) @binding(1) var<storage, read_write> destination: array<vec4f>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn copy(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let invocation = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  let first = invocation * VECTORS_PER_INVOCATION;
  let end = min(first + VECTORS_PER_INVOCATION, arrayLength(&destination));
  for (var i = first; i < end; i++) {
    destination[i] = source[i];
  }
}
