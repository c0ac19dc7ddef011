// Elementwise sum of two tensors of the same shape (the residual connection).
//   forward:  y = a + b
//   backward: da = db = dy. The gradient passes through unchanged, so the backward needs no
//             kernel of its own; where a gradient must be summed (a tensor read by two
//             consumers), the plan runs `forward` on the two gradients.

override WORKGROUP_SIZE: u32 = 256u;

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn forward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  if (i >= arrayLength(&y)) { return; }
  y[i] = a[i] + b[i];
}
