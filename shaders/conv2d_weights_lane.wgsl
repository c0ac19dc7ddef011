// The blocked convolution's weight blocks, each lane loading its own (conv2d_blocked_math.wgsl
// says how the kernels are joined). Every lane of a workgroup loads the same 16 elements: on a
// CPU adapter each load is a gather over the lanes whatever they share.

// Column j: weight[o + j, tap, c..c+3]. `local` is unused: the subgroup build's signature.
fn weight_block(o: u32, tap: u32, c: u32, local: u32) -> mat4x4f {
  return mat4x4f(
    load_weight(o, tap, c),
    load_weight(o + 1u, tap, c),
    load_weight(o + 2u, tap, c),
    load_weight(o + 3u, tap, c),
  );
}
