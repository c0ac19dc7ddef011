// Global average pooling of an NHWC tensor: [N, H, W, C] -> [N, C].
//   forward:  y[n, c] = mean over (h, w) of x[n, h, w, c]; one invocation per (n, c)
//   backward: dx[n, h, w, c] = dy[n, c] / (H * W); one invocation per element of dx
// x and dx hold `act` elements (f32, or f16 in the kernel's f16 build, src/shaders.ts); the pooled
// features y and their gradient dy are f32 in both builds: the classifier head after the pooling
// runs in f32. The sum is taken in f32.

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
  let n = i / CHANNELS;
  let c = i % CHANNELS;
  var sum = 0.0;
  for (var p = 0u; p < SPATIAL; p++) {
    sum += f32(forward_x[(n * SPATIAL + p) * CHANNELS + c]);
  }
  forward_y[i] = sum / f32(SPATIAL);
}

@group(0) @binding(0) var<storage, read> backward_dy: array<f32>;
@group(0) @binding(1) var<storage, read_write> backward_dx: array<act>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn backward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  // Bounded by dy's [N, C], not by dx's binding, which an odd-length f16 dx pads by one element.
  if (i >= arrayLength(&backward_dy) * SPATIAL) { return; }
  let n = i / (SPATIAL * CHANNELS);
  let c = i % CHANNELS;
  backward_dx[i] = act(backward_dy[n * CHANNELS + c] / f32(SPATIAL));
}
