// 2-D convolution as an implicit GEMM (no im2col buffer) with workgroup-memory tiles, the classic
// recipe for real GPUs; src/ops/conv2d.ts picks it where the adapter is not a CPU fallback.
// Same tensors and sums as conv2d_blocked.wgsl (which documents them):
//   forward:         y[p, o]            rows: output pixels, columns: output channels,
//                                       reduction: (tap, input channel) = weight's row
//   backward_input:  dx[q, c]           rows: input pixels of one parity class, columns: input
//                                       channels, reduction: (tap, output channel)
//   backward_weight: dweight[o, tap, c] rows: output channels, columns: (tap, input channel),
//                                       reduction: one range of output pixels (conv2d_reduce.wgsl
//                                       adds the ranges' partial sums)
// A workgroup of 16x16 invocations computes a 64x64 output tile, each invocation 4x4 of it. Per
// step it stages 16 reduction elements of both operands in workgroup memory (2 x 16 x 68 f32 =
// 8.5 KiB), each invocation loading 4 + 4 elements with neighbouring invocations on neighbouring
// addresses (coalesced), then every invocation reads its 4 + 4 values per element from the
// tiles. Loads are scalar, so any channel count works. On a CPU adapter this is the slow recipe
// (every workgroup-memory access and barrier is expensive there); tests run it for correctness.
// x, y, dy and dx hold `act` elements (f32, or f16 in the f16 build, src/shaders.ts), widened to
// f32 when staged; weights and weight gradients stay f32.

alias act = f32;

override BATCH: u32;
override IN_H: u32;
override IN_W: u32;
override IN_C: u32;
override OUT_H: u32;
override OUT_W: u32;
override OUT_C: u32;
override KERNEL: u32;
override STRIDE: u32;
override PADDING: u32;
// backward_weight: output pixels per partial sum (a multiple of DEPTH).
override SPLIT_PIXELS: u32 = 64u;

override TAPS = KERNEL * KERNEL;
override OUT_PIXELS = BATCH * OUT_H * OUT_W;
// Length of a weight row, the forward's reduction and backward_weight's columns.
override WEIGHT_ROW = TAPS * IN_C;
// backward_input's parity classes, as in conv2d_blocked.wgsl.
override CLASS_H = (IN_H + STRIDE - 1u) / STRIDE;
override CLASS_W = (IN_W + STRIDE - 1u) / STRIDE;
override CLASS_PIXELS = BATCH * CLASS_H * CLASS_W;

// The workgroup, set by the op (src/ops/conv2d.ts). The tiling below is written for 16 x 16
// invocations of 4 x 4 outputs each (TILE = 64, DEPTH = 16, 256 invocations staging 4 + 4
// elements each): the op passes exactly that.
override WORKGROUP_SIZE_X: u32;
override WORKGROUP_SIZE_Y: u32;
const TILE = 64u;
const DEPTH = 16u;
// vec4s per reduction element in a tile: 16 hold the 64 rows (or columns), one more pads the
// stride so that invocations staging consecutive k write to different banks (a stride of 16
// vec4s puts all 16 of them on one bank).
const STRIDE_K = 17u;

// tile_a[k * STRIDE_K + i] holds rows 4i..4i+3 at reduction element k, tile_b[k * STRIDE_K + j]
// columns 4j..4j+3: an invocation reads its 4 rows and 4 columns as one vec4 each.
var<workgroup> tile_a: array<vec4f, DEPTH * STRIDE_K>;
var<workgroup> tile_b: array<vec4f, DEPTH * STRIDE_K>;

fn stage_a(row: u32, k: u32, value: f32) {
  tile_a[k * STRIDE_K + row / 4u][row % 4u] = value;
}

fn stage_b(k: u32, column: u32, value: f32) {
  tile_b[k * STRIDE_K + column / 4u][column % 4u] = value;
}

// acc[i][j] += sum_k A[4 ty + i, k] * B[k, 4 tx + j] over the staged elements.
fn multiply_tiles(acc: ptr<function, mat4x4f>, tx: u32, ty: u32) {
  for (var k = 0u; k < DEPTH; k++) {
    let a = tile_a[k * STRIDE_K + ty];
    let b = tile_b[k * STRIDE_K + tx];
    *acc += mat4x4f(b * a.x, b * a.y, b * a.z, b * a.w);
  }
}

// An input or output pixel position and whether it holds data (not padding, not past the end).
struct Pixel {
  n: u32,
  y: i32,
  x: i32,
  live: bool,
}

fn output_pixel(p: u32, end: u32) -> Pixel {
  let clamped = min(p, OUT_PIXELS - 1u);
  let y = i32((clamped / OUT_W) % OUT_H);
  return Pixel(clamped / (OUT_H * OUT_W), y, i32(clamped % OUT_W), p < end);
}

// Element index of channel 0 of (n, y, x) in an NHWC tensor, or -1 where that is outside it.
fn row_base(p: Pixel, height: u32, width: u32, channels: u32) -> i32 {
  if (!p.live || p.y < 0 || p.y >= i32(height) || p.x < 0 || p.x >= i32(width)) { return -1; }
  return i32(((p.n * height + u32(p.y)) * width + u32(p.x)) * channels);
}

// The x row that output pixel p reads at tap (kh, kw), or -1 for padding.
fn input_row(p: Pixel, kh: u32, kw: u32) -> i32 {
  let y = p.y * i32(STRIDE) + i32(kh) - i32(PADDING);
  let x = p.x * i32(STRIDE) + i32(kw) - i32(PADDING);
  return row_base(Pixel(p.n, y, x, p.live), IN_H, IN_W, IN_C);
}

// ---- forward: x, weight -> y ----
@group(0) @binding(0) var<storage, read> forward_x: array<act>;
@group(0) @binding(1) var<storage, read> forward_weight: array<f32>;
@group(0) @binding(2) var<storage, read_write> forward_y: array<act>;

// Workgroup (x, y): output pixels 64 x .. +64, output channels 64 y .. +64.
@compute @workgroup_size(WORKGROUP_SIZE_X, WORKGROUP_SIZE_Y)
fn forward(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let t = lid.y * WORKGROUP_SIZE_X + lid.x;
  let first = wid.x * TILE;
  let o0 = wid.y * TILE;
  // This invocation stages reduction element k0 + t % 16 of rows (pixels) and columns
  // (channels) t / 16 + 16 j.
  let kk = t % DEPTH;
  var pixels: array<Pixel, 4>;
  for (var j = 0u; j < 4u; j++) {
    pixels[j] = output_pixel(first + t / DEPTH + 16u * j, OUT_PIXELS);
  }
  var acc = mat4x4f();
  for (var k0 = 0u; k0 < WEIGHT_ROW; k0 += DEPTH) {
    let k = k0 + kk;
    let tap = k / IN_C;
    let c = k % IN_C;
    for (var j = 0u; j < 4u; j++) {
      let row = input_row(pixels[j], tap / KERNEL, tap % KERNEL);
      let inside = row >= 0 && k < WEIGHT_ROW;
      stage_a(t / DEPTH + 16u * j, kk, select(0.0, f32(forward_x[u32(row) + c]), inside));
      let o = o0 + t / DEPTH + 16u * j;
      let live = o < OUT_C && k < WEIGHT_ROW;
      stage_b(kk, t / DEPTH + 16u * j, select(0.0, forward_weight[o * WEIGHT_ROW + k], live));
    }
    workgroupBarrier();
    multiply_tiles(&acc, lid.x, lid.y);
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let p = first + 4u * lid.y + i;
    for (var j = 0u; j < 4u; j++) {
      let o = o0 + 4u * lid.x + j;
      if (p < OUT_PIXELS && o < OUT_C) { forward_y[p * OUT_C + o] = act(acc[i][j]); }
    }
  }
}

// ---- backward_input: dy, weight -> dx ----
@group(0) @binding(0) var<storage, read> input_dy: array<act>;
@group(0) @binding(1) var<storage, read> input_weight: array<f32>;
@group(0) @binding(2) var<storage, read_write> input_dx: array<act>;

// Input pixel q of parity class (class_y, class_x).
fn class_pixel(q: u32, class_y: u32, class_x: u32) -> Pixel {
  let clamped = min(q, CLASS_PIXELS - 1u);
  let y = ((clamped / CLASS_W) % CLASS_H) * STRIDE + class_y;
  let x = (clamped % CLASS_W) * STRIDE + class_x;
  let live = q < CLASS_PIXELS && y < IN_H && x < IN_W;
  return Pixel(clamped / (CLASS_H * CLASS_W), i32(y), i32(x), live);
}

// Workgroup (x, y, z): input pixels 64 x .. +64 of parity class z, input channels 64 y .. +64.
// The reduction runs over the taps that reach the class (kh = class_y + PADDING mod STRIDE, as
// in conv2d_blocked.wgsl), and within a tap over output channels in steps of 16.
@compute @workgroup_size(WORKGROUP_SIZE_X, WORKGROUP_SIZE_Y)
fn backward_input(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let t = lid.y * WORKGROUP_SIZE_X + lid.x;
  let first = wid.x * TILE;
  let c0 = wid.y * TILE;
  let class_y = wid.z / STRIDE;
  let class_x = wid.z % STRIDE;
  // dy: this invocation stages output channel o0 + t % 16 of rows t / 16 + 16 j; weight: input
  // channel c0 + t % 64 of output channels o0 + t / 64 + 4 j.
  var pixels: array<Pixel, 4>;
  for (var j = 0u; j < 4u; j++) {
    pixels[j] = class_pixel(first + t / DEPTH + 16u * j, class_y, class_x);
  }
  let c = c0 + t % TILE;
  var acc = mat4x4f();
  for (var kh = (class_y + PADDING) % STRIDE; kh < KERNEL; kh += STRIDE) {
    for (var kw = (class_x + PADDING) % STRIDE; kw < KERNEL; kw += STRIDE) {
      var rows: array<i32, 4>;
      for (var j = 0u; j < 4u; j++) {
        let q = pixels[j];
        let y = (q.y + i32(PADDING) - i32(kh)) / i32(STRIDE);
        let x = (q.x + i32(PADDING) - i32(kw)) / i32(STRIDE);
        rows[j] = row_base(Pixel(q.n, y, x, q.live), OUT_H, OUT_W, OUT_C);
      }
      let tap = kh * KERNEL + kw;
      for (var o0 = 0u; o0 < OUT_C; o0 += DEPTH) {
        let o = o0 + t % DEPTH;
        for (var j = 0u; j < 4u; j++) {
          let inside = rows[j] >= 0 && o < OUT_C;
          stage_a(t / DEPTH + 16u * j, t % DEPTH, select(0.0, f32(input_dy[u32(rows[j]) + o]), inside));
          let ko = t / TILE + 4u * j;
          let live = o0 + ko < OUT_C && c < IN_C;
          let w = input_weight[((o0 + ko) * TAPS + tap) * IN_C + c];
          stage_b(ko, t % TILE, select(0.0, w, live));
        }
        workgroupBarrier();
        multiply_tiles(&acc, lid.x, lid.y);
        workgroupBarrier();
      }
    }
  }
  for (var i = 0u; i < 4u; i++) {
    let q = class_pixel(first + 4u * lid.y + i, class_y, class_x);
    let base = row_base(q, IN_H, IN_W, IN_C);
    for (var j = 0u; j < 4u; j++) {
      let c = c0 + 4u * lid.x + j;
      if (base >= 0 && c < IN_C) { input_dx[u32(base) + c] = act(acc[i][j]); }
    }
  }
}

// ---- backward_weight: x, dy -> partial sums [ranges, OUT_C, KERNEL, KERNEL, IN_C] ----
@group(0) @binding(0) var<storage, read> weight_x: array<act>;
@group(0) @binding(1) var<storage, read> weight_dy: array<act>;
@group(0) @binding(2) var<storage, read_write> weight_partial: array<f32>;

// Workgroup (x, y, z): weight columns (tap, input channel) 64 x .. +64, output channels
// 64 y .. +64, summed over output pixels SPLIT_PIXELS z .. +SPLIT_PIXELS.
@compute @workgroup_size(WORKGROUP_SIZE_X, WORKGROUP_SIZE_Y)
fn backward_weight(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let t = lid.y * WORKGROUP_SIZE_X + lid.x;
  let column0 = wid.x * TILE;
  let o0 = wid.y * TILE;
  let begin = wid.z * SPLIT_PIXELS;
  let end = min(begin + SPLIT_PIXELS, OUT_PIXELS);
  // This invocation stages output channel o0 + t % 64 of dy and column column0 + t % 64 of x,
  // at pixels p0 + t / 64 + 4 j.
  let o = o0 + t % TILE;
  let column = column0 + t % TILE;
  let tap = column / IN_C;
  let c = column % IN_C;
  var acc = mat4x4f();
  for (var p0 = begin; p0 < end; p0 += DEPTH) {
    for (var j = 0u; j < 4u; j++) {
      let kp = t / TILE + 4u * j;
      let p = output_pixel(p0 + kp, end);
      let d = f32(weight_dy[min(p0 + kp, OUT_PIXELS - 1u) * OUT_C + o]);
      stage_a(t % TILE, kp, select(0.0, d, p.live && o < OUT_C));
      let row = input_row(p, tap / KERNEL, tap % KERNEL);
      let inside = row >= 0 && column < WEIGHT_ROW;
      stage_b(kp, t % TILE, select(0.0, f32(weight_x[u32(row) + c]), inside));
    }
    workgroupBarrier();
    multiply_tiles(&acc, lid.x, lid.y);
    workgroupBarrier();
  }
  let split_base = wid.z * OUT_C * WEIGHT_ROW;
  for (var i = 0u; i < 4u; i++) {
    let o = o0 + 4u * lid.y + i;
    for (var j = 0u; j < 4u; j++) {
      let column = column0 + 4u * lid.x + j;
      if (o < OUT_C && column < WEIGHT_ROW) {
        weight_partial[split_base + o * WEIGHT_ROW + column] = acc[i][j];
      }
    }
  }
}
