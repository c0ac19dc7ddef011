// 2-D convolution as an implicit GEMM for real GPUs, software-pipelined: the "pipelined64" and
// "pipelined128" variants beside conv2d_tiled.wgsl (the measured baseline, whose three GEMMs it
// keeps). 16 x 16 invocations compute BLOCK x BLOCK outputs each: 64x64 output tiles in steps of
// 16 reduction elements (BLOCK 4, tiled's tiling), or 128x128 tiles in steps of 8 (BLOCK 8: twice
// the multiply-adds per element staged, for layers with enough tiles to fill the GPU).
// Same tensors and sums as conv2d_blocked.wgsl (which documents them). What it changes, the usual
// SGEMM recipe:
//   - vec4 global loads: every invocation loads one vec4 of each operand per step, four
//     neighbouring elements of one row along whichever dimension is contiguous in memory
//     (channels), with DEPTH / 4 invocations ("across") or TILE / 4 ("along") covering one
//     contiguous run.
//     Where IN_C or OUT_C is not a multiple of 4 (the stem, odd test shapes) VECTORIZED is off and
//     the same vec4 is assembled from four masked scalar loads through the *_flat views; each
//     read-only input is bound twice, as vec4 and scalar views, and the override removes the
//     loads of the unused one.
//   - double buffering: two copies of each workgroup tile (2 x 2 x 1024 f32 = 16 KiB, the
//     WebGPU default limit, either BLOCK). While the tiles of step s are multiplied, the global
//     loads of step s + 1 are already in flight into registers, then stored into the other copy;
//     one barrier per step instead of two.
//   - index arithmetic hoisted: each invocation decodes its pixels (divisions by the image sizes)
//     once, and the input or output rows it reads once per tap; a step only adds channel offsets.
//     The reduction runs tap by tap, within a tap over channels in slices of DEPTH (a tap's last
//     slice is masked where the channels are not a multiple of DEPTH).
//   - POINTWISE (1x1, stride 1, no padding): x, y, dy and dx are plain [pixels, channels]
//     matrices; rows are pixel * channels, with no tap and no bounds arithmetic.
// x, y, dy and dx hold `act` elements (f32, or f16 in the f16 build, src/shaders.ts), widened to
// f32 when loaded; weights and weight gradients stay f32.

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
// True when IN_C and OUT_C are multiples of 4: vec4 loads through the *_vec views.
override VECTORIZED: bool;
// backward_weight: output pixels per partial sum (a multiple of DEPTH).
override SPLIT_PIXELS: u32 = 64u;

override TAPS = KERNEL * KERNEL;
override OUT_PIXELS = BATCH * OUT_H * OUT_W;
// Length of a weight row, the forward's reduction and backward_weight's columns.
override WEIGHT_ROW = TAPS * IN_C;
override POINTWISE = KERNEL == 1u && STRIDE == 1u && PADDING == 0u;
// backward_input's parity classes, as in conv2d_blocked.wgsl.
override CLASS_H = (IN_H + STRIDE - 1u) / STRIDE;
override CLASS_W = (IN_W + STRIDE - 1u) / STRIDE;
override CLASS_PIXELS = BATCH * CLASS_H * CLASS_W;

// The workgroup, set by the op (src/ops/conv2d.ts): 16 x 16 invocations, as the tiling below
// assumes.
override WORKGROUP_SIZE_X: u32;
override WORKGROUP_SIZE_Y: u32;
// Outputs per invocation along each side of the tile: 4 or 8.
override BLOCK: u32;
// 4x4 blocks per invocation along each side: 1 or 2.
override BLOCKS = BLOCK / 4u;
override TILE = 16u * BLOCK;
// Reduction elements per step: a copy of a tile is always 1024 elements, so every invocation
// loads exactly one vec4 of each operand per step.
override DEPTH = 1024u / TILE;
// vec4s per reduction element in a tile ("along" loads), vec4s per row in a step ("across").
override QUADS = TILE / 4u;
override DEPTH_QUADS = DEPTH / 4u;
// One copy of a tile, in vec4s.
const COPY = 256u;

// Both operands' tiles, two copies each, in one array (naga passes no workgroup pointers to
// functions, so the staging functions take the operand's offset instead):
// tiles[A + copy * COPY + k * QUADS + i] holds rows 4i..4i+3 at reduction element k, and
// tiles[B + ...] the same for columns 4j..4j+3: an invocation reads each 4x4 block's rows and
// columns as one vec4.
const A = 0u;
const B = 2u * COPY;
var<workgroup> tiles: array<vec4f, 4u * COPY>;

const LANE = vec4u(0u, 1u, 2u, 3u);

// Staging into copy `copy` of a tile. "Across": v holds reduction elements 4 quad .. +3 of row
// (column) `index`, stored transposed. "Along": v holds rows (columns) 4 quad .. +3 at reduction
// element k.
fn stage_across(operand: u32, copy: u32, index: u32, quad: u32, v: vec4f) {
  for (var e = 0u; e < 4u; e++) {
    tiles[operand + copy * COPY + (4u * quad + e) * QUADS + index / 4u][index % 4u] = v[e];
  }
}

fn stage_along(operand: u32, copy: u32, k: u32, quad: u32, v: vec4f) {
  tiles[operand + copy * COPY + k * QUADS + quad] = v;
}

// m[i][j] = a[i] * b[j]
fn outer(a: vec4f, b: vec4f) -> mat4x4f {
  return mat4x4f(b * a.x, b * a.y, b * a.z, b * a.w);
}

// An invocation's outputs: 4x4 block 2 r + s holds tile rows 4 ty + 64 r .. +3 and columns
// 4 tx + 64 s .. +3 (r, s < BLOCKS), element [i][j] at row + i, column + j. Neighbouring
// invocations read neighbouring vec4s of a tile, and index only by constants, so the blocks stay
// in registers.
fn tile_offset(lane: u32, block: u32) -> u32 {
  return 4u * lane + 64u * block;
}

fn multiply_tiles(acc: ptr<function, array<mat4x4f, 4>>, copy: u32, tx: u32, ty: u32) {
  for (var k = 0u; k < DEPTH; k++) {
    let row = copy * COPY + k * QUADS;
    let a0 = tiles[A + row + ty];
    let b0 = tiles[B + row + tx];
    (*acc)[0] += outer(a0, b0);
    if (BLOCKS == 2u) {
      let a1 = tiles[A + row + ty + 16u];
      let b1 = tiles[B + row + tx + 16u];
      (*acc)[1] += outer(a0, b1);
      (*acc)[2] += outer(a1, b0);
      (*acc)[3] += outer(a1, b1);
    }
  }
}

// Where this invocation's loads go within a 256-invocation workgroup: "across" loads take row
// t / DEPTH_QUADS and reduction quad t % DEPTH_QUADS, "along" loads reduction element t / QUADS
// and quad t % QUADS.
fn flat_index(lid: vec3u) -> u32 {
  return lid.y * WORKGROUP_SIZE_X + lid.x;
}

// An image pixel position and whether it holds data (not padding, not past the end).
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

// The x row that output pixel `index` (p, decoded) reads at tap (kh, kw), or -1 for padding.
fn input_row(index: u32, p: Pixel, kh: u32, kw: u32) -> i32 {
  if (POINTWISE) { return select(-1, i32(index * IN_C), p.live); }
  let y = p.y * i32(STRIDE) + i32(kh) - i32(PADDING);
  let x = p.x * i32(STRIDE) + i32(kw) - i32(PADDING);
  return row_base(Pixel(p.n, y, x, p.live), IN_H, IN_W, IN_C);
}

// Components c..c+3 that exist in a vector of `count` channels.
fn channel_mask(c: u32, count: u32) -> vec4<bool> {
  return vec4u(c) + LANE < vec4u(count);
}

// ---- forward: x (two views), weight (two views) -> y ----
@group(0) @binding(0) var<storage, read> forward_x_vec: array<vec4<act>>;
@group(0) @binding(1) var<storage, read> forward_x_flat: array<act>;
@group(0) @binding(2) var<storage, read> forward_weight_vec: array<vec4f>;
@group(0) @binding(3) var<storage, read> forward_weight_flat: array<f32>;
@group(0) @binding(4) var<storage, read_write> forward_y: array<act>;

// Channels c..c+3 of the x row at `row` (-1: padding), zero past IN_C.
fn forward_load_x(row: i32, c: u32) -> vec4f {
  if (row < 0) { return vec4f(); }
  let i = u32(row) + c;
  if (VECTORIZED) { return select(vec4f(), vec4f(forward_x_vec[i / 4u]), c < IN_C); }
  let v = vec4f(vec4(
    forward_x_flat[i],
    forward_x_flat[i + 1u],
    forward_x_flat[i + 2u],
    forward_x_flat[i + 3u],
  ));
  return select(vec4f(), v, channel_mask(c, IN_C));
}

// Channels c..c+3 of the weight row starting at `row`, zero past IN_C (and for rows past OUT_C,
// which the caller marks with live = false).
fn forward_load_weight(row: u32, c: u32, live: bool) -> vec4f {
  let i = row + c;
  if (VECTORIZED) {
    return select(vec4f(), forward_weight_vec[i / 4u], live && c < IN_C);
  }
  let v = vec4f(
    forward_weight_flat[i],
    forward_weight_flat[i + 1u],
    forward_weight_flat[i + 2u],
    forward_weight_flat[i + 3u],
  );
  return select(vec4f(), v, channel_mask(c, IN_C) & vec4<bool>(live));
}

// Workgroup (x, y): output pixels TILE x .. +TILE, output channels TILE y .. +TILE. Reduction
// steps run tap by tap, and within a tap over CHUNKS slices of DEPTH input channels.
override FORWARD_CHUNKS = (IN_C + DEPTH - 1u) / DEPTH;

@compute @workgroup_size(WORKGROUP_SIZE_X, WORKGROUP_SIZE_Y)
fn forward(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let t = flat_index(lid);
  // This invocation loads channels 4 quad .. +3 of each slice, for the pixel and the output
  // channel of row `index` of the tile.
  let index = t / DEPTH_QUADS;
  let quad = t % DEPTH_QUADS;
  let p = wid.x * TILE + index;
  let pixel = output_pixel(p, OUT_PIXELS);
  let o = wid.y * TILE + index;
  let o_live = o < OUT_C;
  let weight_row = min(o, OUT_C - 1u) * WEIGHT_ROW;
  // The next load's tap, channel and rows.
  var tap = 0u;
  var c = 4u * quad;
  var x_row = input_row(p, pixel, 0u, 0u);
  var next_x = forward_load_x(x_row, c);
  var next_weight = forward_load_weight(weight_row, c, o_live);
  stage_across(A, 0u, index, quad, next_x);
  stage_across(B, 0u, index, quad, next_weight);
  workgroupBarrier();
  var acc: array<mat4x4f, 4>;
  let steps = TAPS * FORWARD_CHUNKS;
  for (var s = 0u; s < steps; s++) {
    let copy = s % 2u;
    let more = s + 1u < steps;
    if (more) {
      c += DEPTH;
      if (c >= FORWARD_CHUNKS * DEPTH) {
        c = 4u * quad;
        tap++;
        x_row = input_row(p, pixel, tap / KERNEL, tap % KERNEL);
      }
      next_x = forward_load_x(x_row, c);
      next_weight = forward_load_weight(weight_row + tap * IN_C, c, o_live);
    }
    multiply_tiles(&acc, copy, lid.x, lid.y);
    if (more) {
      stage_across(A, 1u - copy, index, quad, next_x);
      stage_across(B, 1u - copy, index, quad, next_weight);
    }
    workgroupBarrier();
  }
  for (var r = 0u; r < BLOCKS; r++) {
    for (var s = 0u; s < BLOCKS; s++) {
      let first = wid.x * TILE + tile_offset(lid.y, r);
      store_y(acc[2u * r + s], first, wid.y * TILE + tile_offset(lid.x, s));
    }
  }
}

// Output pixels first .. +3 (row i), channels o .. +3 (column j).
fn store_y(block: mat4x4f, first: u32, o: u32) {
  for (var i = 0u; i < 4u; i++) {
    let p = first + i;
    for (var j = 0u; j < 4u; j++) {
      if (p < OUT_PIXELS && o + j < OUT_C) { forward_y[p * OUT_C + o + j] = act(block[i][j]); }
    }
  }
}

// ---- backward_input: dy (two views), weight (two views) -> dx ----
@group(0) @binding(0) var<storage, read> input_dy_vec: array<vec4<act>>;
@group(0) @binding(1) var<storage, read> input_dy_flat: array<act>;
@group(0) @binding(2) var<storage, read> input_weight_vec: array<vec4f>;
@group(0) @binding(3) var<storage, read> input_weight_flat: array<f32>;
@group(0) @binding(4) var<storage, read_write> input_dx: array<act>;

// Input pixel q of parity class (class_y, class_x).
fn class_pixel(q: u32, class_y: u32, class_x: u32) -> Pixel {
  let clamped = min(q, CLASS_PIXELS - 1u);
  let y = ((clamped / CLASS_W) % CLASS_H) * STRIDE + class_y;
  let x = (clamped % CLASS_W) * STRIDE + class_x;
  let live = q < CLASS_PIXELS && y < IN_H && x < IN_W;
  return Pixel(clamped / (CLASS_H * CLASS_W), i32(y), i32(x), live);
}

// The dy row of the output pixel whose tap (kh, kw) reads input pixel q (index `index`, one
// class when STRIDE is 1), or -1; the caller passes only taps that reach q's class, so the
// division is exact.
fn output_row(index: u32, q: Pixel, kh: u32, kw: u32) -> i32 {
  if (POINTWISE) { return select(-1, i32(index * OUT_C), q.live); }
  let y = (q.y + i32(PADDING) - i32(kh)) / i32(STRIDE);
  let x = (q.x + i32(PADDING) - i32(kw)) / i32(STRIDE);
  return row_base(Pixel(q.n, y, x, q.live), OUT_H, OUT_W, OUT_C);
}

// Output channels o..o+3 of the dy row at `row` (-1: none), zero past OUT_C.
fn input_load_dy(row: i32, o: u32) -> vec4f {
  if (row < 0) { return vec4f(); }
  let i = u32(row) + o;
  if (VECTORIZED) { return select(vec4f(), vec4f(input_dy_vec[i / 4u]), o < OUT_C); }
  let v = vec4f(vec4(
    input_dy_flat[i],
    input_dy_flat[i + 1u],
    input_dy_flat[i + 2u],
    input_dy_flat[i + 3u],
  ));
  return select(vec4f(), v, channel_mask(o, OUT_C));
}

// weight[o, tap, c..c+3], zero past OUT_C or IN_C.
fn input_load_weight(o: u32, tap: u32, c: u32) -> vec4f {
  let i = (min(o, OUT_C - 1u) * TAPS + tap) * IN_C + c;
  if (VECTORIZED) {
    return select(vec4f(), input_weight_vec[i / 4u], o < OUT_C && c < IN_C);
  }
  let v = vec4f(
    input_weight_flat[i],
    input_weight_flat[i + 1u],
    input_weight_flat[i + 2u],
    input_weight_flat[i + 3u],
  );
  return select(vec4f(), v, channel_mask(c, IN_C) & vec4<bool>(o < OUT_C));
}

override INPUT_CHUNKS = (OUT_C + DEPTH - 1u) / DEPTH;

// Workgroup (x, y, z): input pixels TILE x .. +TILE of parity class z, input channels
// TILE y .. +TILE. The reduction runs over the taps that reach the class (kh = class_y + PADDING
// mod STRIDE, as in conv2d_blocked.wgsl), and within a tap over output channels in slices of
// DEPTH.
@compute @workgroup_size(WORKGROUP_SIZE_X, WORKGROUP_SIZE_Y)
fn backward_input(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let t = flat_index(lid);
  let class_y = wid.z / STRIDE;
  let class_x = wid.z % STRIDE;
  let kh0 = (class_y + PADDING) % STRIDE;
  let kw0 = (class_x + PADDING) % STRIDE;
  // Taps reaching the class: taps_w per row of taps, taps_w * taps_h in all (none where a 1x1
  // stride-2 layer skips the class: its dx is zero).
  let taps_w = (KERNEL + STRIDE - 1u - kw0) / STRIDE;
  let taps_h = (KERNEL + STRIDE - 1u - kh0) / STRIDE;
  let steps = taps_h * taps_w * INPUT_CHUNKS;
  // dy ("across"): output channels 4 quad .. +3 of each slice for the pixel of tile row `index`.
  let index = t / DEPTH_QUADS;
  let quad = t % DEPTH_QUADS;
  let q = wid.x * TILE + index;
  let pixel = class_pixel(q, class_y, class_x);
  // weight ("along"): output channel k of each slice, input channels 4 (t % QUADS) .. +3.
  let k = t / QUADS;
  let c = wid.y * TILE + 4u * (t % QUADS);
  // The next load's tap (its index among the class's taps, and its number) and channel.
  var tap_index = 0u;
  var tap = kh0 * KERNEL + kw0;
  var o = 0u;
  var dy_row = output_row(q, pixel, kh0, kw0);
  var next_dy = vec4f();
  var next_weight = vec4f();
  if (steps > 0u) {
    next_dy = input_load_dy(dy_row, 4u * quad);
    next_weight = input_load_weight(k, tap, c);
  }
  stage_across(A, 0u, index, quad, next_dy);
  stage_along(B, 0u, k, t % QUADS, next_weight);
  workgroupBarrier();
  var acc: array<mat4x4f, 4>;
  for (var s = 0u; s < steps; s++) {
    let copy = s % 2u;
    let more = s + 1u < steps;
    if (more) {
      o += DEPTH;
      if (o >= INPUT_CHUNKS * DEPTH) {
        o = 0u;
        tap_index++;
        let kh = kh0 + STRIDE * (tap_index / taps_w);
        let kw = kw0 + STRIDE * (tap_index % taps_w);
        tap = kh * KERNEL + kw;
        dy_row = output_row(q, pixel, kh, kw);
      }
      next_dy = input_load_dy(dy_row, o + 4u * quad);
      next_weight = input_load_weight(o + k, tap, c);
    }
    multiply_tiles(&acc, copy, lid.x, lid.y);
    if (more) {
      stage_across(A, 1u - copy, index, quad, next_dy);
      stage_along(B, 1u - copy, k, t % QUADS, next_weight);
    }
    workgroupBarrier();
  }
  for (var r = 0u; r < BLOCKS; r++) {
    for (var s = 0u; s < BLOCKS; s++) {
      let q = wid.x * TILE + tile_offset(lid.y, r);
      store_dx(acc[2u * r + s], q, class_y, class_x, wid.y * TILE + tile_offset(lid.x, s));
    }
  }
}

// Class pixels first .. +3 (row i), input channels c .. +3 (column j).
fn store_dx(block: mat4x4f, first: u32, class_y: u32, class_x: u32, c: u32) {
  for (var i = 0u; i < 4u; i++) {
    let base = row_base(class_pixel(first + i, class_y, class_x), IN_H, IN_W, IN_C);
    for (var j = 0u; j < 4u; j++) {
      if (base >= 0 && c + j < IN_C) { input_dx[u32(base) + c + j] = act(block[i][j]); }
    }
  }
}

// ---- backward_weight: x (two views), dy (two views) -> partial sums ----
// [ranges, OUT_C, KERNEL, KERNEL, IN_C], or dweight itself where there is one range.
@group(0) @binding(0) var<storage, read> weight_x_vec: array<vec4<act>>;
@group(0) @binding(1) var<storage, read> weight_x_flat: array<act>;
@group(0) @binding(2) var<storage, read> weight_dy_vec: array<vec4<act>>;
@group(0) @binding(3) var<storage, read> weight_dy_flat: array<act>;
@group(0) @binding(4) var<storage, read_write> weight_partial: array<f32>;

// dy channels o..o+3 of output pixel p, zero past OUT_C or for a pixel outside the range.
fn weight_load_dy(p: u32, o: u32, live: bool) -> vec4f {
  let i = min(p, OUT_PIXELS - 1u) * OUT_C + o;
  if (VECTORIZED) { return select(vec4f(), vec4f(weight_dy_vec[i / 4u]), live && o < OUT_C); }
  let v = vec4f(vec4(
    weight_dy_flat[i],
    weight_dy_flat[i + 1u],
    weight_dy_flat[i + 2u],
    weight_dy_flat[i + 3u],
  ));
  return select(vec4f(), v, channel_mask(o, OUT_C) & vec4<bool>(live));
}

// A column (tap, input channel) of the weight gradient, decoded once.
struct Column {
  kh: u32,
  kw: u32,
  c: u32,
  live: bool,
}

fn weight_column(column: u32) -> Column {
  let tap = column / IN_C;
  return Column(tap / KERNEL, tap % KERNEL, column % IN_C, column < WEIGHT_ROW);
}

// x at columns 4 quad .. +3 of output pixel p (`pixel`, decoded): one vec4 where the four
// columns are four channels of one tap (VECTORIZED), else four scalars, each at its own tap.
fn weight_load_x(p: u32, pixel: Pixel, columns: array<Column, 4>) -> vec4f {
  if (VECTORIZED) {
    let row = input_row(p, pixel, columns[0].kh, columns[0].kw);
    if (row < 0 || !columns[0].live) { return vec4f(); }
    return vec4f(weight_x_vec[(u32(row) + columns[0].c) / 4u]);
  }
  var v = vec4f();
  for (var e = 0u; e < 4u; e++) {
    let row = input_row(p, pixel, columns[e].kh, columns[e].kw);
    if (row >= 0 && columns[e].live) { v[e] = f32(weight_x_flat[u32(row) + columns[e].c]); }
  }
  return v;
}

// Workgroup (x, y, z): weight columns (tap, input channel) TILE x .. +TILE, output channels
// TILE y .. +TILE, summed over output pixels SPLIT_PIXELS z .. +SPLIT_PIXELS in steps of
// DEPTH. Both operands are contiguous along the tile's rows and columns ("along" loads): this
// invocation loads, at pixel t / QUADS of each step, output channels and columns 4 (t % QUADS)
// .. +3.
@compute @workgroup_size(WORKGROUP_SIZE_X, WORKGROUP_SIZE_Y)
fn backward_weight(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let t = flat_index(lid);
  let k = t / QUADS;
  let quad = t % QUADS;
  let o = wid.y * TILE + 4u * quad;
  let first_column = wid.x * TILE + 4u * quad;
  var columns: array<Column, 4>;
  for (var e = 0u; e < 4u; e++) {
    columns[e] = weight_column(first_column + e);
  }
  let begin = wid.z * SPLIT_PIXELS;
  let end = min(begin + SPLIT_PIXELS, OUT_PIXELS);
  let steps = (end - begin + DEPTH - 1u) / DEPTH;
  var p = begin + k;
  var pixel = output_pixel(p, end);
  var next_dy = weight_load_dy(p, o, pixel.live);
  var next_x = weight_load_x(p, pixel, columns);
  stage_along(A, 0u, k, quad, next_dy);
  stage_along(B, 0u, k, quad, next_x);
  workgroupBarrier();
  var acc: array<mat4x4f, 4>;
  for (var s = 0u; s < steps; s++) {
    let copy = s % 2u;
    let more = s + 1u < steps;
    if (more) {
      p += DEPTH;
      pixel = output_pixel(p, end);
      next_dy = weight_load_dy(p, o, pixel.live);
      next_x = weight_load_x(p, pixel, columns);
    }
    multiply_tiles(&acc, copy, lid.x, lid.y);
    if (more) {
      stage_along(A, 1u - copy, k, quad, next_dy);
      stage_along(B, 1u - copy, k, quad, next_x);
    }
    workgroupBarrier();
  }
  for (var r = 0u; r < BLOCKS; r++) {
    for (var s = 0u; s < BLOCKS; s++) {
      let o = wid.y * TILE + tile_offset(lid.y, r);
      store_dweight(acc[2u * r + s], wid.z, o, wid.x * TILE + tile_offset(lid.x, s));
    }
  }
}

// Partial sum `split` at output channels o .. +3 (row i), columns first .. +3 (column j).
fn store_dweight(block: mat4x4f, split: u32, o: u32, first: u32) {
  for (var i = 0u; i < 4u; i++) {
    let base = (split * OUT_C + o + i) * WEIGHT_ROW;
    for (var j = 0u; j < 4u; j++) {
      if (o + i < OUT_C && first + j < WEIGHT_ROW) {
        weight_partial[base + first + j] = block[i][j];
      }
    }
  }
}
