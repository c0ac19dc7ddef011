// Elementwise sum of two tensors of the same shape (the residual connection).
//   forward:      y = a + b, one element per invocation (any element count)
//   forward_vec4: the same, four elements per invocation, for counts that are a multiple of 4
//                 (every ResNet activation: channels are multiples of 4); one vec4 load costs
//                 about what one f32 load does on CPU adapters, and GPUs coalesce it.
//   backward: da = db = dy. The gradient passes through unchanged, so the backward needs no
//             kernel of its own; where a gradient must be summed (a tensor read by two
//             consumers), the plan runs `forward` on the two gradients.
// Tensors hold `act` elements: f32, or f16 in the kernel's f16 build (src/shaders.ts); the sum is
// taken in f32 and rounded once. An f16 tensor of odd length is bound with one padding element
// (bindings are whole 4-byte words), which `forward` sums too: it stays inside the bindings.

alias act = f32;

override WORKGROUP_SIZE: u32;

@group(0) @binding(0) var<storage, read> a: array<act>;
@group(0) @binding(1) var<storage, read> b: array<act>;
@group(0) @binding(2) var<storage, read_write> y: array<act>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn forward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  if (i >= arrayLength(&y)) { return; }
  y[i] = act(f32(a[i]) + f32(b[i]));
}

@group(0) @binding(0) var<storage, read> a4: array<vec4<act>>;
@group(0) @binding(1) var<storage, read> b4: array<vec4<act>>;
@group(0) @binding(2) var<storage, read_write> y4: array<vec4<act>>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn forward_vec4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  if (i >= arrayLength(&y4)) { return; }
  y4[i] = vec4<act>(vec4f(a4[i]) + vec4f(b4[i]));
}
