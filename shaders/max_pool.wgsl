// Max pooling of an NHWC tensor, 2x2 windows at stride 2, floor mode (PyTorch's MaxPool2d(2)):
// [N, H, W, C] -> [N, floor(H / 2), floor(W / 2), C]. An odd last row or column of the input is in
// no window: the forward never reads it and the backward gives it gradient 0.
//   forward:  y[n, i, j, c] = max of x[n, 2i + a, 2j + b, c] over a, b in {0, 1}; one invocation
//             per element of y
//   backward: dx at the window's first maximum = dy[n, i, j, c], 0 at its other three elements;
//             one invocation per window, which also zeroes the unpooled last row and column
//             beside the edge windows, so dx is overwritten whole without a zeroing pass
// Ties go to the first maximum in row-major order (top-left, top-right, bottom-left,
// bottom-right), found by a strict `>` scan as PyTorch's CPU kernel does; the backward rescans the
// forward's input x in the same order, so it picks the element the forward copied.
// Consecutive invocations take consecutive channels, so every load and store is coalesced along C.
// x, y, dy and dx hold `act` elements (f32, or f16 in the kernel's f16 build, src/shaders.ts). The
// bounds come from BATCH, not from arrayLength: an odd-length f16 tensor's binding is padded by one
// element.

alias act = f32;

override WORKGROUP_SIZE: u32;
override BATCH: u32;     // N
override HEIGHT: u32;    // H of the input, at least 2
override WIDTH: u32;     // W of the input, at least 2
override CHANNELS: u32;  // C

// The window (n, i, j, c) of invocation `index`, with the input offset of its top-left element.
struct Window {
  n: u32,
  i: u32,
  j: u32,
  c: u32,
  top_left: u32,
}

fn window_of(index: u32) -> Window {
  let out_width = WIDTH / 2u;
  let out_height = HEIGHT / 2u;
  let c = index % CHANNELS;
  let pixel = index / CHANNELS;
  let j = pixel % out_width;
  let row = pixel / out_width;
  let i = row % out_height;
  let n = row / out_height;
  return Window(n, i, j, c, ((n * HEIGHT + 2u * i) * WIDTH + 2u * j) * CHANNELS + c);
}

fn window_count() -> u32 {
  return BATCH * (HEIGHT / 2u) * (WIDTH / 2u) * CHANNELS;
}

// Offsets from a window's top-left element, in row-major order: the tie-breaking order.
fn corner_offset(k: u32) -> u32 {
  return (k >> 1u) * WIDTH * CHANNELS + (k & 1u) * CHANNELS;
}

@group(0) @binding(0) var<storage, read> forward_x: array<act>;
@group(0) @binding(1) var<storage, read_write> forward_y: array<act>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn forward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let index = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  if (index >= window_count()) { return; }
  let top_left = window_of(index).top_left;
  var best = f32(forward_x[top_left]);
  for (var k = 1u; k < 4u; k++) {
    let value = f32(forward_x[top_left + corner_offset(k)]);
    if (value > best) { best = value; }
  }
  // Exact in both builds: best is one of x's own values, widened to f32 and narrowed back.
  forward_y[index] = act(best);
}

@group(0) @binding(0) var<storage, read> backward_x: array<act>;
@group(0) @binding(1) var<storage, read> backward_dy: array<act>;
@group(0) @binding(2) var<storage, read_write> backward_dx: array<act>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn backward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let index = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  if (index >= window_count()) { return; }
  let window = window_of(index);
  var best = f32(backward_x[window.top_left]);
  var first = 0u;
  for (var k = 1u; k < 4u; k++) {
    let value = f32(backward_x[window.top_left + corner_offset(k)]);
    if (value > best) {
      best = value;
      first = k;
    }
  }
  let gradient = backward_dy[index];
  for (var k = 0u; k < 4u; k++) {
    backward_dx[window.top_left + corner_offset(k)] = select(act(0.0), gradient, k == first);
  }
  // Floor mode leaves an odd last column and row out of every window: the windows beside them
  // zero them (the window in the last row and column also zeroes the corner element).
  let odd_width = (WIDTH & 1u) == 1u && window.j == WIDTH / 2u - 1u;
  let odd_height = (HEIGHT & 1u) == 1u && window.i == HEIGHT / 2u - 1u;
  if (odd_width) {
    backward_dx[window.top_left + 2u * CHANNELS] = act(0.0);
    backward_dx[window.top_left + (WIDTH + 2u) * CHANNELS] = act(0.0);
  }
  if (odd_height) {
    backward_dx[window.top_left + 2u * WIDTH * CHANNELS] = act(0.0);
    backward_dx[window.top_left + (2u * WIDTH + 1u) * CHANNELS] = act(0.0);
  }
  if (odd_width && odd_height) {
    backward_dx[window.top_left + (2u * WIDTH + 2u) * CHANNELS] = act(0.0);
  }
}
