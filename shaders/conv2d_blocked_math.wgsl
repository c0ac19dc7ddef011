// 2-D convolution as an implicit GEMM (no im2col buffer), register-blocked for CPU adapters
// (lavapipe, SwiftShader); the kernel policy (src/ops/policy.ts) picks it on them.
//   x [BATCH, IN_H, IN_W, IN_C] (NHWC), weight [OUT_C, KERNEL, KERNEL, IN_C] (OHWI),
//   y and dy [BATCH, OUT_H, OUT_W, OUT_C]; zero padding, no bias. A tap is one (kh, kw).
//   forward:         y[p, o]            = sum_{tap, c} x[p at tap, c] * weight[o, tap, c]
//   backward_input:  dx[q, c]           = sum_{tap, o} dy[p, o] * weight[o, tap, c], over the taps
//                                         and output pixels p whose tap lands on input pixel q
//   backward_weight: dweight[o, tap, c] = sum_p dy[p, o] * x[p at tap, c], the sum over output
//                                         pixels p split into ranges of SPLIT_PIXELS: each writes
//                                         its own partial sum (conv2d_reduce.wgsl adds them)
//                                         unless there is one range, written to dweight itself.
//
// Why the kernels look like this: on a CPU adapter an invocation is one lane of an 8-wide SIMD
// vector, and every storage-buffer load is a loop over the lanes, one scalar load per element
// and lane, whatever addresses the lanes share (about 3 cycles per element and lane with
// AVX-512, 17 with AVX2 alone: bench/README.md, "CPU adapters"), while a workgroup-memory tile
// only adds more such loads and barriers. So the speed is multiply-adds per element loaded:
// each invocation keeps a block of 16 pixels x 16 channels (16 matrices of 4x4) in registers,
// 8 multiply-adds per element (8 x 16: 5.3, and slower; 32 x 16: 10.7, faster still, but LLVM
// takes over 10x longer to compile it). The 4x4 blocks are mat4x4f products, written out one
// statement each: the compiler expands a matrix product without loops, and an accumulator array
// indexed only by constants stays in registers. The same arithmetic as loops over the blocks is
// not unrolled, which puts the accumulators in memory and runs 2-4x slower (bench/README.md).
//
// This file is the arithmetic of the kernels below, which differ only in how they read their
// inputs and store their outputs; WGSL has no includes, so src/shaders.ts joins it with a weights
// file, a loads file and a stores file, in this order (the kernel names are src/shaders.ts's):
//   conv2d_blocked           conv2d_weights_lane.wgsl + conv2d_blocked.wgsl (storage buffers,
//                            each input bound as vec4 and scalar views);
//   conv2d_texture           conv2d_weights_lane.wgsl + conv2d_texture.wgsl (rgba32float textures
//                            filled just before, read with textureLoad);
//   conv2d_texture_subgroup  conv2d_weights_subgroup.wgsl + conv2d_texture.wgsl (the weight rows
//                            loaded once per 4 lanes and shared by subgroup broadcasts);
// the two texture kernels with conv2d_stores_vec4.wgsl (y or dx stored four channels at a time,
// for passes whose stored channel count is a multiple of 4), their `_elements` twins and
// conv2d_blocked with conv2d_stores_elements.wgsl (one channel at a time).
// A loads file declares the input bindings and the loads called here, each returning four channels
// as vec4f: load_x(base, c), load_weight(o, tap, c), load_input_dy(base, o), load_weight_dy(p, o);
// and the outputs the entry points write: forward_y and input_dx (array<stored_unit>, the stores
// file's unit), weight_partial (array<f32>). A weights file declares weight_block(o, tap, c,
// local), the 4x4 block whose column j is weight[o + j, tap, c..c+3], for invocation `local` of its
// workgroup; forward and backward_input call it with o, tap and c the same across the workgroup.
//
// The texture variant pads each pixel's channels (and each weight row's) with zeros to whole
// texels, and runs with IN_C and OUT_C rounded up to multiples of 4: its loads see the padded
// tensors, its stores write the real ones, of STORED_IN_C and STORED_OUT_C channels (the same as
// IN_C and OUT_C for the storage variant).
//
// y and dx hold `act` elements: f32, or f16 in the kernel's f16 build (src/shaders.ts); stores
// round once. Weights and weight gradients stay f32, and the loads return f32 whatever the
// inputs hold.

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
override WORKGROUP_SIZE: u32;
// backward_weight: output pixels per range (a multiple of 4).
override SPLIT_PIXELS: u32 = 4u;
// forward and backward_input: the layer is 3x3, stride 1 and padding 1, with rows of a whole
// number of 16-pixel blocks (OUT_W = IN_W, a multiple of 16). Then the 16 pixels of a block are
// one run of a row, and the three taps of a kernel row read the same run of 18 neighbouring
// pixels shifted by one: fetched once per step of 4 channels, 18 texel fetches where the three
// taps' own columns make 48 (66 fetches per 48 products instead of 96: bench/README.md, "Rows
// of 16"), and the three taps' products are summed before they reach the accumulators
// (row_products).
override ROW_BLOCKS: bool = false;

override STORED_IN_C = IN_C;
override STORED_OUT_C = OUT_C;
override TAPS = KERNEL * KERNEL;
override OUT_PIXELS = BATCH * OUT_H * OUT_W;
// backward_input treats the input pixels in STRIDE x STRIDE parity classes (rows and columns
// congruent mod STRIDE): within a class every pixel takes the same taps, so a stride-2 layer
// wastes nothing on taps that skip a pixel. Each class is a grid of at most CLASS_H x CLASS_W.
override CLASS_H = (IN_H + STRIDE - 1u) / STRIDE;
override CLASS_W = (IN_W + STRIDE - 1u) / STRIDE;

// Four pixels of an NHWC tensor (GEMM rows): batch index, row, column, and whether the pixel
// exists (blocks overhang the end of the tensor; such pixels are computed on clamped indices
// and never stored).
struct Pixels {
  n: vec4u,
  y: vec4i,
  x: vec4i,
  live: vec4<bool>,
}

// Where four pixels find one channel vector each: the element index of its channel 0, and
// whether it exists (outside the image is zero padding).
struct Rows {
  base: vec4u,
  inside: vec4<bool>,
}

const LANE = vec4u(0u, 1u, 2u, 3u);

fn output_pixels(first: u32, end: u32) -> Pixels {
  let index = vec4u(first) + LANE;
  let clamped = min(index, vec4u(OUT_PIXELS - 1u));
  return Pixels(
    clamped / (OUT_H * OUT_W),
    vec4i((clamped / OUT_W) % OUT_H),
    vec4i(clamped % OUT_W),
    index < vec4u(end),
  );
}

// Rows of pixels (n, y, x) in an NHWC tensor of height x width x channels.
fn rows_of(
  n: vec4u,
  y: vec4i,
  x: vec4i,
  inside: vec4<bool>,
  height: u32,
  width: u32,
  channels: u32,
) -> Rows {
  let within = inside & (y >= vec4i(0)) & (y < vec4i(i32(height))) & (x >= vec4i(0)) &
    (x < vec4i(i32(width)));
  let base = ((n * height + bitcast<vec4u>(y)) * width + bitcast<vec4u>(x)) * channels;
  return Rows(select(vec4u(0u), base, within), within);
}

// The input rows that four output pixels read at tap (kh, kw).
fn input_rows(p: Pixels, kh: u32, kw: u32) -> Rows {
  let y = p.y * i32(STRIDE) + i32(kh) - i32(PADDING);
  let x = p.x * i32(STRIDE) + i32(kw) - i32(PADDING);
  return rows_of(p.n, y, x, p.live, IN_H, IN_W, IN_C);
}

// Column i: channels c..c+3 of row i, zero where the row is padding.
fn x_columns(rows: Rows, c: u32) -> mat4x4f {
  return mat4x4f(
    select(vec4f(), load_x(rows.base[0], c), rows.inside[0]),
    select(vec4f(), load_x(rows.base[1], c), rows.inside[1]),
    select(vec4f(), load_x(rows.base[2], c), rows.inside[2]),
    select(vec4f(), load_x(rows.base[3], c), rows.inside[3]),
  );
}
// The element index of weight[o, tap, c]. Rows past the last output channel (a block overhanging
// it) read the last row instead.
fn weight_index(o: u32, tap: u32, c: u32) -> u32 {
  return (min(o, STORED_OUT_C - 1u) * TAPS + tap) * IN_C + c;
}

// ---- forward: x, weight -> y ----

// Output pixels `first`..+3 (column i: pixel first + i), channels o..o+3.
fn store_y(block: mat4x4f, pixels: Pixels, first: u32, o: u32) {
  for (var i = 0u; i < 4u; i++) {
    for (var j = 0u; j < 4u; j += UNIT_CHANNELS) {
      if (pixels.live[i] && o + j < STORED_OUT_C) {
        forward_y[((first + i) * STORED_OUT_C + o + j) / UNIT_CHANNELS] = unit_of(block[i], j);
      }
    }
  }
}

// Weight block g of tap `tap`: forward's (output channels o + 4g..+3, transposed) or
// backward_input's (input channels c + 4g..+3).
fn tap_weights(forward: bool, o: u32, tap: u32, c: u32, g: u32, local: u32) -> mat4x4f {
  if (forward) { return transpose(weight_block(o + 4u * g, tap, c, local)); }
  return weight_block(o, tap, c + 4u * g, local);
}

// The 16 products of one step, forward's or backward_input's (by `forward`), operand columns
// b0..b3 by weight blocks 0..3 of `tap` (tap_weights). Forward, column i of b_r is x channels
// c..c+3 of the input pixel that output pixel 4r + i reads at `tap`, and acc[4g + r] column i holds
// output channels o + 4g .. +4 of output pixel 4r + i; backward, column i of b_r is dy channels
// o..o+3 of the output pixel whose tap `tap` reads input pixel 4r + i, and acc[4g + r] column i
// holds input channels c + 4g .. +4 of input pixel 4r + i. The accumulators stay in registers:
// after inlining every index is a constant.
fn block_products(
  forward: bool,
  acc: ptr<function, array<mat4x4f, 16>>,
  b0: mat4x4f,
  b1: mat4x4f,
  b2: mat4x4f,
  b3: mat4x4f,
  o: u32,
  tap: u32,
  c: u32,
  local: u32,
) {
  let w0 = tap_weights(forward, o, tap, c, 0u, local);
  (*acc)[0] += w0 * b0;
  (*acc)[1] += w0 * b1;
  (*acc)[2] += w0 * b2;
  (*acc)[3] += w0 * b3;
  let w1 = tap_weights(forward, o, tap, c, 1u, local);
  (*acc)[4] += w1 * b0;
  (*acc)[5] += w1 * b1;
  (*acc)[6] += w1 * b2;
  (*acc)[7] += w1 * b3;
  let w2 = tap_weights(forward, o, tap, c, 2u, local);
  (*acc)[8] += w2 * b0;
  (*acc)[9] += w2 * b1;
  (*acc)[10] += w2 * b2;
  (*acc)[11] += w2 * b3;
  let w3 = tap_weights(forward, o, tap, c, 3u, local);
  (*acc)[12] += w3 * b0;
  (*acc)[13] += w3 * b1;
  (*acc)[14] += w3 * b2;
  (*acc)[15] += w3 * b3;
}

// One tap of the forward sum for a block of 16 pixels (four groups of 4, their input rows at the
// tap) and output channels o..o+15, all input channels.
fn forward_tap(
  acc: ptr<function, array<mat4x4f, 16>>,
  rows0: Rows,
  rows1: Rows,
  rows2: Rows,
  rows3: Rows,
  o: u32,
  tap: u32,
  local: u32,
) {
  for (var c = 0u; c < IN_C; c += 4u) {
    block_products(
      true,
      acc,
      x_columns(rows0, c),
      x_columns(rows1, c),
      x_columns(rows2, c),
      x_columns(rows3, c),
      o,
      tap,
      c,
      local,
    );
  }
}

// ---- ROW_BLOCKS: a block is pixels x0..x0+15 of one row ----

// Where the block of 16 pixels from pixel `first` (clamped to the last block) lies in a tensor of
// height x width pixels per image.
struct RowBlock {
  n: u32,
  y: i32,
  x0: u32,
}

fn row_block(first: u32, pixels: u32, height: u32, width: u32) -> RowBlock {
  let clamped = min(first, pixels - 16u);
  return RowBlock(clamped / (height * width), i32((clamped / width) % height), clamped % width);
}

// Pixels x0 - 1 + j, j = 0..17, of row y of a block's image: the pixel index of x0 (0 where the
// row is padding) and which exist: inside.x pixel x0 - 1, inside.y x0..x0 + 15, inside.z x0 + 16.
struct Neighbours {
  base: u32,
  inside: vec3<bool>,
}

fn neighbours_of(block: RowBlock, y: i32, height: u32, width: u32) -> Neighbours {
  let row = y >= 0 && y < i32(height);
  return Neighbours(
    select(0u, (block.n * height + u32(y)) * width + block.x0, row),
    vec3<bool>(row && block.x0 > 0u, row, row && block.x0 + 16u < width),
  );
}

fn neighbour_inside(run: Neighbours, j: u32) -> bool {
  return select(select(run.inside.y, run.inside.z, j == 17u), run.inside.x, j == 0u);
}

// The pixel index of neighbour j (x0's where it is padding: fetched, then zeroed).
fn neighbour_pixel(run: Neighbours, j: u32) -> u32 {
  return select(run.base, run.base + j - 1u, neighbour_inside(run, j));
}

// Columns j..j+3 of 18 fetched neighbours.
fn run_columns(texels: ptr<function, array<vec4f, 18>>, j: u32) -> mat4x4f {
  return mat4x4f((*texels)[j], (*texels)[j + 1u], (*texels)[j + 2u], (*texels)[j + 3u]);
}

fn x_neighbour(run: Neighbours, j: u32, c: u32) -> vec4f {
  return select(vec4f(), load_x(neighbour_pixel(run, j) * IN_C, c), neighbour_inside(run, j));
}

// Input channels c..c+3 of the 18 neighbours (a loop of constant count, unrolled by the compiler:
// the array is indexed by constants only, and stays in registers).
fn x_run(run: Neighbours, c: u32) -> array<vec4f, 18> {
  var texels: array<vec4f, 18>;
  for (var j = 0u; j < 18u; j++) { texels[j] = x_neighbour(run, j, c); }
  return texels;
}

// The forward sum of a row block: kernel row kh reads input row y + kh - 1, and tap (kh, kw)
// pixel x0 + i reads neighbour i + kw.
fn forward_rows(acc: ptr<function, array<mat4x4f, 16>>, block: RowBlock, o: u32, local: u32) {
  for (var kh = 0u; kh < 3u; kh++) {
    let run = neighbours_of(block, block.y + i32(kh) - 1, IN_H, IN_W);
    for (var c = 0u; c < IN_C; c += 4u) {
      var texels = x_run(run, c);
      row_products(true, acc, &texels, vec3u(0u, 1u, 2u), o, kh * 3u, c, local);
    }
  }
}

// Stores forward_tap's block: output pixels first .. +16, channels o .. +16.
fn store_forward(acc: ptr<function, array<mat4x4f, 16>>, first: u32, o: u32) {
  let pixels0 = output_pixels(first, OUT_PIXELS);
  let pixels1 = output_pixels(first + 4u, OUT_PIXELS);
  let pixels2 = output_pixels(first + 8u, OUT_PIXELS);
  let pixels3 = output_pixels(first + 12u, OUT_PIXELS);
  store_y((*acc)[0], pixels0, first, o);
  store_y((*acc)[1], pixels1, first + 4u, o);
  store_y((*acc)[2], pixels2, first + 8u, o);
  store_y((*acc)[3], pixels3, first + 12u, o);
  store_y((*acc)[4], pixels0, first, o + 4u);
  store_y((*acc)[5], pixels1, first + 4u, o + 4u);
  store_y((*acc)[6], pixels2, first + 8u, o + 4u);
  store_y((*acc)[7], pixels3, first + 12u, o + 4u);
  store_y((*acc)[8], pixels0, first, o + 8u);
  store_y((*acc)[9], pixels1, first + 4u, o + 8u);
  store_y((*acc)[10], pixels2, first + 8u, o + 8u);
  store_y((*acc)[11], pixels3, first + 12u, o + 8u);
  store_y((*acc)[12], pixels0, first, o + 12u);
  store_y((*acc)[13], pixels1, first + 4u, o + 12u);
  store_y((*acc)[14], pixels2, first + 8u, o + 12u);
  store_y((*acc)[15], pixels3, first + 12u, o + 12u);
}

// Invocation (gid.x, gid.y) computes output pixels 16 gid.x .. +16 and channels 16 gid.y .. +16:
// 16 input rows and 16 weight rows per step of 4 input channels. Invocations past the last pixel
// compute on clamped indices and store nothing, rather than return: the subgroup build's weight
// loads need every lane of a subgroup in the same control flow (and o, the loops' bounds and so
// the control flow come from workgroup-uniform values).
@compute @workgroup_size(WORKGROUP_SIZE)
fn forward(
  @builtin(global_invocation_id) gid: vec3u,
  @builtin(workgroup_id) group: vec3u,
  @builtin(local_invocation_index) local: u32,
) {
  let first = gid.x * 16u;
  let o = group.y * 16u;
  var acc: array<mat4x4f, 16>;
  if (ROW_BLOCKS) {
    forward_rows(&acc, row_block(first, OUT_PIXELS, OUT_H, OUT_W), o, local);
  } else {
    let pixels0 = output_pixels(first, OUT_PIXELS);
    let pixels1 = output_pixels(first + 4u, OUT_PIXELS);
    let pixels2 = output_pixels(first + 8u, OUT_PIXELS);
    let pixels3 = output_pixels(first + 12u, OUT_PIXELS);
    for (var kh = 0u; kh < KERNEL; kh++) {
      for (var kw = 0u; kw < KERNEL; kw++) {
        forward_tap(
          &acc,
          input_rows(pixels0, kh, kw),
          input_rows(pixels1, kh, kw),
          input_rows(pixels2, kh, kw),
          input_rows(pixels3, kh, kw),
          o,
          kh * KERNEL + kw,
          local,
        );
      }
    }
  }
  store_forward(&acc, first, o);
}

// ---- transformed_product: V, U -> M (the Winograd convolution, conv2d_winograd.wgsl) ----

// TAPS matrix products in one: M[tap, t, o] = sum_c V[tap, t, c] * U[o, tap, c], bound as
// forward's x, weight and y of a 1x1 layer over a batch of one TAPS x OUT_W "image" (OUT_W tiles,
// a multiple of 16, so a block of 16 rows lies in one product). Invocation (gid.x, gid.y) computes
// rows 16 gid.x .. +16 and columns 16 gid.y .. +16.
@compute @workgroup_size(WORKGROUP_SIZE)
fn transformed_product(
  @builtin(global_invocation_id) gid: vec3u,
  @builtin(workgroup_id) group: vec3u,
  @builtin(local_invocation_index) local: u32,
) {
  let first = gid.x * 16u;
  let o = group.y * 16u;
  var acc: array<mat4x4f, 16>;
  forward_tap(
    &acc,
    input_rows(output_pixels(first, OUT_PIXELS), 0u, 0u),
    input_rows(output_pixels(first + 4u, OUT_PIXELS), 0u, 0u),
    input_rows(output_pixels(first + 8u, OUT_PIXELS), 0u, 0u),
    input_rows(output_pixels(first + 12u, OUT_PIXELS), 0u, 0u),
    o,
    min(first / OUT_W, TAPS - 1u),
    local,
  );
  store_forward(&acc, first, o);
}

// ---- backward_input: dy, weight -> dx ----

// Column i: output channels o..o+3 of dy row i, zero where the row is padding. x_columns' twin:
// one function for both would have every entry point statically use x's and dy's bindings, which
// share a binding number (the loads files), and WGSL forbids that.
fn input_dy_columns(rows: Rows, o: u32) -> mat4x4f {
  return mat4x4f(
    select(vec4f(), load_input_dy(rows.base[0], o), rows.inside[0]),
    select(vec4f(), load_input_dy(rows.base[1], o), rows.inside[1]),
    select(vec4f(), load_input_dy(rows.base[2], o), rows.inside[2]),
    select(vec4f(), load_input_dy(rows.base[3], o), rows.inside[3]),
  );
}

// Four input pixels of parity class (class_y, class_x), from index `first` within the class.
fn class_pixels(first: u32, class_y: u32, class_x: u32) -> Pixels {
  let index = vec4u(first) + LANE;
  let clamped = min(index, vec4u(BATCH * CLASS_H * CLASS_W - 1u));
  let y = ((clamped / CLASS_W) % CLASS_H) * STRIDE + class_y;
  let x = (clamped % CLASS_W) * STRIDE + class_x;
  let live = (index < vec4u(BATCH * CLASS_H * CLASS_W)) & (y < vec4u(IN_H)) & (x < vec4u(IN_W));
  return Pixels(clamped / (CLASS_H * CLASS_W), vec4i(y), vec4i(x), live);
}

// The dy rows of the output pixels whose tap (kh, kw) reads these input pixels; the caller
// passes only taps with (y + PADDING - kh) divisible by STRIDE, so the division is exact.
fn output_rows(q: Pixels, kh: u32, kw: u32) -> Rows {
  let y = (q.y + i32(PADDING) - i32(kh)) / i32(STRIDE);
  let x = (q.x + i32(PADDING) - i32(kw)) / i32(STRIDE);
  return rows_of(q.n, y, x, q.live, OUT_H, OUT_W, OUT_C);
}

// Input pixels q (column i: pixel i), channels c..c+3.
fn store_dx(block: mat4x4f, q: Pixels, c: u32) {
  for (var i = 0u; i < 4u; i++) {
    let base = ((q.n[i] * IN_H + u32(q.y[i])) * IN_W + u32(q.x[i])) * STORED_IN_C + c;
    for (var j = 0u; j < 4u; j += UNIT_CHANNELS) {
      if (q.live[i] && c + j < STORED_IN_C) {
        input_dx[(base + j) / UNIT_CHANNELS] = unit_of(block[i], j);
      }
    }
  }
}

fn dy_neighbour(run: Neighbours, j: u32, o: u32) -> vec4f {
  let pixel = neighbour_pixel(run, j);
  return select(vec4f(), load_input_dy(pixel * OUT_C, o), neighbour_inside(run, j));
}

// Output channels o..o+3 of the 18 neighbours (as x_run).
fn dy_run(run: Neighbours, o: u32) -> array<vec4f, 18> {
  var texels: array<vec4f, 18>;
  for (var j = 0u; j < 18u; j++) { texels[j] = dy_neighbour(run, j, o); }
  return texels;
}

// Weight block g of each of the three taps of a kernel row.
struct RowWeights {
  w0: mat4x4f,
  w1: mat4x4f,
  w2: mat4x4f,
}

fn row_weights(forward: bool, o: u32, tap0: u32, c: u32, g: u32, local: u32) -> RowWeights {
  return RowWeights(
    tap_weights(forward, o, tap0, c, g, local),
    tap_weights(forward, o, tap0 + 1u, c, g, local),
    tap_weights(forward, o, tap0 + 2u, c, g, local),
  );
}

// Accumulators 4g..4g+3 for the three taps of a kernel row at once: tap k's weight block w.wk by
// the 18 neighbours from shifts[k] on, the three products summed before they reach an
// accumulator.
fn row_group(
  acc: ptr<function, array<mat4x4f, 16>>,
  texels: ptr<function, array<vec4f, 18>>,
  shifts: vec3u,
  g: u32,
  w: RowWeights,
) {
  let k = 4u * g;
  (*acc)[k] += w.w0 * run_columns(texels, shifts.x) + w.w1 * run_columns(texels, shifts.y) +
    w.w2 * run_columns(texels, shifts.z);
  (*acc)[k + 1u] += w.w0 * run_columns(texels, shifts.x + 4u) +
    w.w1 * run_columns(texels, shifts.y + 4u) + w.w2 * run_columns(texels, shifts.z + 4u);
  (*acc)[k + 2u] += w.w0 * run_columns(texels, shifts.x + 8u) +
    w.w1 * run_columns(texels, shifts.y + 8u) + w.w2 * run_columns(texels, shifts.z + 8u);
  (*acc)[k + 3u] += w.w0 * run_columns(texels, shifts.x + 12u) +
    w.w1 * run_columns(texels, shifts.y + 12u) + w.w2 * run_columns(texels, shifts.z + 12u);
}

// The products of the three taps tap0..tap0+2 of a kernel row (block_products' for each tap, by
// `forward`), tap tap0 + k on the 18 neighbours from shifts[k] on. Summing the three taps before
// the accumulators matters on CPU adapters, where the 256 accumulators live in memory (spilled
// from the registers): each is read and written a third as often (bench/README.md, "A real
// Zen 3").
fn row_products(
  forward: bool,
  acc: ptr<function, array<mat4x4f, 16>>,
  texels: ptr<function, array<vec4f, 18>>,
  shifts: vec3u,
  o: u32,
  tap0: u32,
  c: u32,
  local: u32,
) {
  row_group(acc, texels, shifts, 0u, row_weights(forward, o, tap0, c, 0u, local));
  row_group(acc, texels, shifts, 1u, row_weights(forward, o, tap0, c, 1u, local));
  row_group(acc, texels, shifts, 2u, row_weights(forward, o, tap0, c, 2u, local));
  row_group(acc, texels, shifts, 3u, row_weights(forward, o, tap0, c, 3u, local));
}

// The input gradient of a row block: kernel row kh reaches it from output row y + 1 - kh, and tap
// (kh, kw) of pixel x0 + i from output pixel x0 + i + 1 - kw, neighbour i + 2 - kw.
fn backward_rows(acc: ptr<function, array<mat4x4f, 16>>, block: RowBlock, c: u32, local: u32) {
  for (var kh = 0u; kh < 3u; kh++) {
    let run = neighbours_of(block, block.y + 1 - i32(kh), OUT_H, OUT_W);
    for (var o = 0u; o < OUT_C; o += 4u) {
      var texels = dy_run(run, o);
      row_products(false, acc, &texels, vec3u(2u, 1u, 0u), o, kh * 3u, c, local);
    }
  }
}

// Invocation (gid.x, gid.y, gid.z) computes input pixels 16 gid.x .. +16 of parity class gid.z
// and input channels 16 gid.y .. +16; past the last pixel, on clamped indices (as forward).
@compute @workgroup_size(WORKGROUP_SIZE)
fn backward_input(
  @builtin(global_invocation_id) gid: vec3u,
  @builtin(workgroup_id) group: vec3u,
  @builtin(local_invocation_index) local: u32,
) {
  let first = gid.x * 16u;
  let c = group.y * 16u;
  let class_y = group.z / STRIDE;
  let class_x = group.z % STRIDE;
  let pixels0 = class_pixels(first, class_y, class_x);
  let pixels1 = class_pixels(first + 4u, class_y, class_x);
  let pixels2 = class_pixels(first + 8u, class_y, class_x);
  let pixels3 = class_pixels(first + 12u, class_y, class_x);
  var acc: array<mat4x4f, 16>;
  if (ROW_BLOCKS) {
    // Stride 1: one parity class, the input pixels in order.
    backward_rows(&acc, row_block(first, BATCH * IN_H * IN_W, IN_H, IN_W), c, local);
  } else {
    for (var kh = (class_y + PADDING) % STRIDE; kh < KERNEL; kh += STRIDE) {
      for (var kw = (class_x + PADDING) % STRIDE; kw < KERNEL; kw += STRIDE) {
        let rows0 = output_rows(pixels0, kh, kw);
        let rows1 = output_rows(pixels1, kh, kw);
        let rows2 = output_rows(pixels2, kh, kw);
        let rows3 = output_rows(pixels3, kh, kw);
        for (var o = 0u; o < OUT_C; o += 4u) {
          block_products(
            false,
            &acc,
            input_dy_columns(rows0, o),
            input_dy_columns(rows1, o),
            input_dy_columns(rows2, o),
            input_dy_columns(rows3, o),
            o,
            kh * KERNEL + kw,
            c,
            local,
          );
        }
      }
    }
  }
  store_dx(acc[0], pixels0, c);
  store_dx(acc[1], pixels1, c);
  store_dx(acc[2], pixels2, c);
  store_dx(acc[3], pixels3, c);
  store_dx(acc[4], pixels0, c + 4u);
  store_dx(acc[5], pixels1, c + 4u);
  store_dx(acc[6], pixels2, c + 4u);
  store_dx(acc[7], pixels3, c + 4u);
  store_dx(acc[8], pixels0, c + 8u);
  store_dx(acc[9], pixels1, c + 8u);
  store_dx(acc[10], pixels2, c + 8u);
  store_dx(acc[11], pixels3, c + 8u);
  store_dx(acc[12], pixels0, c + 12u);
  store_dx(acc[13], pixels1, c + 12u);
  store_dx(acc[14], pixels2, c + 12u);
  store_dx(acc[15], pixels3, c + 12u);
}

// ---- backward_weight: x, dy -> dweight or partial sums ----

// Column i: dy channels o..o+3 of output pixel first + i, zero for pixels outside the range.
fn weight_dy_columns(first: u32, live: vec4<bool>, o: u32) -> mat4x4f {
  let p = min(vec4u(first) + LANE, vec4u(OUT_PIXELS - 1u));
  return mat4x4f(
    select(vec4f(), load_weight_dy(p[0], o), live[0]),
    select(vec4f(), load_weight_dy(p[1], o), live[1]),
    select(vec4f(), load_weight_dy(p[2], o), live[2]),
    select(vec4f(), load_weight_dy(p[3], o), live[3]),
  );
}

override CHANNEL_BLOCKS = (IN_C + 15u) / 16u;
override OUT_BLOCKS = (OUT_C + 15u) / 16u;
override SPLITS = (OUT_PIXELS + SPLIT_PIXELS - 1u) / SPLIT_PIXELS;

// dweight (or split `split`'s partial sum) at output channels o..o+3 (column j: channel o + j),
// tap, input channels c..c+3.
fn store_dweight(block: mat4x4f, split: u32, o: u32, tap: u32, c: u32) {
  for (var j = 0u; j < 4u; j++) {
    let base = ((split * STORED_OUT_C + o + j) * TAPS + tap) * STORED_IN_C + c;
    for (var k = 0u; k < 4u; k++) {
      if (o + j < STORED_OUT_C && c + k < STORED_IN_C) { weight_partial[base + k] = block[j][k]; }
    }
  }
}

// Block `block` (tap, input and output channel blocks) of the weight gradient summed over output
// pixels begin..end, whose x rows are read at tap `at` (kh, kw), stored as range `split`'s partial
// sum at `tap`.
fn weight_block_sum(split: u32, tap: u32, at: vec2u, block: u32, begin: u32, end: u32) {
  let kh = at.x;
  let kw = at.y;
  let c = ((block / OUT_BLOCKS) % CHANNEL_BLOCKS) * 16u;
  let o = (block % OUT_BLOCKS) * 16u;
  // acc[4h + g] column j: output channel o + 4h + j, input channels c + 4g .. +4.
  var acc: array<mat4x4f, 16>;
  for (var p = begin; p < end; p += 4u) {
    let pixels = output_pixels(p, end);
    let rows = input_rows(pixels, kh, kw);
    let a0 = x_columns(rows, c);
    let a1 = x_columns(rows, c + 4u);
    let a2 = x_columns(rows, c + 8u);
    let a3 = x_columns(rows, c + 12u);
    let d0 = transpose(weight_dy_columns(p, pixels.live, o));
    acc[0] += a0 * d0;
    acc[1] += a1 * d0;
    acc[2] += a2 * d0;
    acc[3] += a3 * d0;
    let d1 = transpose(weight_dy_columns(p, pixels.live, o + 4u));
    acc[4] += a0 * d1;
    acc[5] += a1 * d1;
    acc[6] += a2 * d1;
    acc[7] += a3 * d1;
    let d2 = transpose(weight_dy_columns(p, pixels.live, o + 8u));
    acc[8] += a0 * d2;
    acc[9] += a1 * d2;
    acc[10] += a2 * d2;
    acc[11] += a3 * d2;
    let d3 = transpose(weight_dy_columns(p, pixels.live, o + 12u));
    acc[12] += a0 * d3;
    acc[13] += a1 * d3;
    acc[14] += a2 * d3;
    acc[15] += a3 * d3;
  }
  store_dweight(acc[0], split, o, tap, c);
  store_dweight(acc[1], split, o, tap, c + 4u);
  store_dweight(acc[2], split, o, tap, c + 8u);
  store_dweight(acc[3], split, o, tap, c + 12u);
  store_dweight(acc[4], split, o + 4u, tap, c);
  store_dweight(acc[5], split, o + 4u, tap, c + 4u);
  store_dweight(acc[6], split, o + 4u, tap, c + 8u);
  store_dweight(acc[7], split, o + 4u, tap, c + 12u);
  store_dweight(acc[8], split, o + 8u, tap, c);
  store_dweight(acc[9], split, o + 8u, tap, c + 4u);
  store_dweight(acc[10], split, o + 8u, tap, c + 8u);
  store_dweight(acc[11], split, o + 8u, tap, c + 12u);
  store_dweight(acc[12], split, o + 12u, tap, c);
  store_dweight(acc[13], split, o + 12u, tap, c + 4u);
  store_dweight(acc[14], split, o + 12u, tap, c + 8u);
  store_dweight(acc[15], split, o + 12u, tap, c + 12u);
}

// Invocation gid.x computes, for one range of SPLIT_PIXELS output pixels, one tap, 16 input
// channels and 16 output channels: 16 dy rows and 16 x rows per step of 4 pixels. The blocks are
// numbered range-major, so the workgroups of one range run back to back (its dy and x rows stay
// in cache), and the lanes of a workgroup are all busy even where a layer has fewer blocks than
// lanes (16 channels at 3x3: 9 blocks; a 1x1 shortcut from 16 channels: 2).
@compute @workgroup_size(WORKGROUP_SIZE)
fn backward_weight(@builtin(global_invocation_id) gid: vec3u) {
  let blocks = TAPS * CHANNEL_BLOCKS * OUT_BLOCKS;
  if (gid.x >= blocks * SPLITS) { return; }
  let split = gid.x / blocks;
  let block = gid.x % blocks;
  let tap = block / (CHANNEL_BLOCKS * OUT_BLOCKS);
  let begin = split * SPLIT_PIXELS;
  weight_block_sum(
    split,
    tap,
    vec2u(tap / KERNEL, tap % KERNEL),
    block,
    begin,
    min(begin + SPLIT_PIXELS, OUT_PIXELS),
  );
}

// ---- transformed_weight_product: Z, V -> partial sums of dU (conv2d_winograd.wgsl) ----

// The Winograd weight gradient's TAPS matrix products: dU[o, tap, c] = sum_t Z[tap, t, o] *
// V[tap, t, c], bound as backward_weight's x (V), dy (Z) and partial sums of a 1x1 layer over a
// batch of one TAPS x OUT_W "image", each tap summing over its own row of OUT_W tiles, in SPLITS
// ranges of SPLIT_PIXELS tiles (SPLITS set per tap). Blocks as backward_weight's.
@compute @workgroup_size(WORKGROUP_SIZE)
fn transformed_weight_product(@builtin(global_invocation_id) gid: vec3u) {
  let blocks = TAPS * CHANNEL_BLOCKS * OUT_BLOCKS;
  if (gid.x >= blocks * SPLITS) { return; }
  let split = gid.x / blocks;
  let block = gid.x % blocks;
  let tap = block / (CHANNEL_BLOCKS * OUT_BLOCKS);
  let begin = tap * OUT_W + split * SPLIT_PIXELS;
  weight_block_sum(
    split,
    tap,
    vec2u(0u),
    block,
    begin,
    min(begin + SPLIT_PIXELS, (tap + 1u) * OUT_W),
  );
}
