// ReLU, elementwise over any tensor.
//   forward:  y = max(x, 0)
//   backward: dx = dy where y > 0, else 0 (the mask comes from the output, so x need not be kept)
// The element count is the bound range's arrayLength; see README.md for the grid convention.
// Tensors hold `act` elements: f32, or f16 in the kernel's f16 build (src/shaders.ts).

alias act = f32;

override WORKGROUP_SIZE: u32;

@group(0) @binding(0) var<storage, read> forward_x: array<act>;
@group(0) @binding(1) var<storage, read_write> forward_y: array<act>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn forward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  if (i >= arrayLength(&forward_y)) { return; }
  forward_y[i] = max(forward_x[i], act(0.0));
}

@group(0) @binding(0) var<storage, read> backward_y: array<act>;
@group(0) @binding(1) var<storage, read> backward_dy: array<act>;
@group(0) @binding(2) var<storage, read_write> backward_dx: array<act>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn backward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  if (i >= arrayLength(&backward_dx)) { return; }
  backward_dx[i] = select(act(0.0), backward_dy[i], backward_y[i] > act(0.0));
}
