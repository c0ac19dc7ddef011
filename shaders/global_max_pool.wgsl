// Global max pooling of an NHWC tensor: [N, H, W, C] -> [N, C] (PyTorch's AdaptiveMaxPool2d(1)).
//   forward:  y[n, c] = max over (h, w) of x[n, h, w, c]; one invocation per (n, c)
//   backward: dx[n, h, w, c] = dy[n, c] at the plane's first maximum, 0 elsewhere; one invocation
//             per (n, c), which rescans its plane of x and then writes all of it, so dx is
//             overwritten whole and each x element is read once per pass, not once per element
// Ties go to the first maximum in row-major (h, w) order (a strict `>` scan, as PyTorch's CPU
// kernel); the backward scans the forward's input x in the same order, so it picks the element
// the forward copied. Consecutive invocations take consecutive channels, so loads and stores are
// coalesced along C.
// x and dx hold `act` elements (f32, or f16 in the kernel's f16 build, src/shaders.ts); the pooled
// features y and their gradient dy are f32 in both builds, as global_avg_pool's: the classifier
// head after the pooling runs in f32.

alias act = f32;

override WORKGROUP_SIZE: u32;
override SPATIAL: u32;   // H * W
override CHANNELS: u32;  // C

@group(0) @binding(0) var<storage, read> forward_x: array<act>;
@group(0) @binding(1) var<storage, read_write> forward_y: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn forward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  if (i >= arrayLength(&forward_y)) { return; }
  let plane = (i / CHANNELS) * SPATIAL * CHANNELS + i % CHANNELS;
  var best = f32(forward_x[plane]);
  for (var p = 1u; p < SPATIAL; p++) {
    let value = f32(forward_x[plane + p * CHANNELS]);
    if (value > best) { best = value; }
  }
  forward_y[i] = best;
}

@group(0) @binding(0) var<storage, read> backward_x: array<act>;
@group(0) @binding(1) var<storage, read> backward_dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> backward_dx: array<act>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn backward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  // Bounded by dy's [N, C], not by a binding of x or dx, which an odd-length f16 tensor pads by
  // one element.
  if (i >= arrayLength(&backward_dy)) { return; }
  let plane = (i / CHANNELS) * SPATIAL * CHANNELS + i % CHANNELS;
  var best = f32(backward_x[plane]);
  var first = 0u;
  for (var p = 1u; p < SPATIAL; p++) {
    let value = f32(backward_x[plane + p * CHANNELS]);
    if (value > best) {
      best = value;
      first = p;
    }
  }
  let gradient = act(backward_dy[i]);
  for (var p = 0u; p < SPATIAL; p++) {
    backward_dx[plane + p * CHANNELS] = select(act(0.0), gradient, p == first);
  }
}
