// The transforms of the Winograd convolution F(4x4, 3x3) (Lavin and Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2015), for 3x3 layers of stride 1 and padding 1. The output is
// cut into tiles of 4x4 pixels; a tile's 6x6 input patch d and a 3x3 filter g give
//   Y = A^T [ (G g G^T) ⊙ (B^T d B) ] A,
// 36 multiply-adds per tile and channel pair where the direct convolution does 144. Over the
// channels the ⊙ becomes 36 independent matrix products, one per position xi of the 6x6 grid:
//   M[xi, t, o] = sum_c V[xi, t, c] * U[o, xi, c],  V = B^T d B (transform_tiles),
//                                                   U = G g G^T (transform_weight),
// which conv2d_blocked_math.wgsl's `transformed_product` computes (its blocked arithmetic, reading
// V and U as textures), and Y = A^T M A (transform_output) writes the output. The input gradient
// of such a layer is the same convolution of dy with the filters rotated by 180 degrees and their
// two channel dimensions swapped (FLIP = 1): the same four calls (src/ops/conv2d_winograd.ts).
// The weight gradient follows the forward back: per tile dL/dM = A dY A^T (Z, transform_tiles
// with GRADIENT), then
//   dU[o, xi, c] = sum_t Z[xi, t, o] * V[xi, t, c]
// (conv2d_blocked_math.wgsl's `transformed_weight_product`, in ranges of tiles), and
// dweight = G^T dU G summed over the ranges (transform_weight_gradient).
//
// Why: on CPU adapters the direct kernels run at about 40% of the adapter's FMA peak, bound by
// texel fetches; this does 4x fewer multiply-adds at the price of writing and reading V, M and Z
// (36/16 of the input's or the output's elements each) once (bench/README.md, "Winograd"). The
// transforms' constants (1/4, 1/6, 1/12, 1/24 and 2, 4, 5, 8) round in f32: a layer's error against
// f64 is 2-5e-6 of its output's scale, against about 1e-7 for the direct kernels.
//
// Layouts (channel counts padded to multiples of 4, the padding zero, so a texel is 4 channels):
//   image    [BATCH, HEIGHT, WIDTH, CHANNELS] texture (x, or dy for the input gradient);
//   V        [36, TILES_PADDED, CHANNELS] f32, tile t = (n * TILES_H + ty) * TILES_W + tx, the
//            tiles past TILES zero (the product works on blocks of 16 tiles);
//   weight   [OUT_C, 3, 3, IN_C] f32 (OHWI, the layer's real channel counts);
//   U        [ROWS, 36, COLS] f32: ROWS and COLS are OUT_C and IN_C padded (FLIP = 0), or
//            IN_C and OUT_C padded (FLIP = 1), zero past the real channels;
//   M        [36, TILES_PADDED, CHANNELS] texture (CHANNELS: the product's output channels);
//   output   [BATCH, HEIGHT, WIDTH, STORED_CHANNELS] act (y, or dx), stored in units of
//            stored_unit (src/shaders.ts joins a stores file after this one: four channels per
//            store where STORED_CHANNELS is a multiple of 4, else one: conv2d_stores_vec4.wgsl);
//   Z        [36, TILES_PADDED, CHANNELS] f32 from dy [BATCH, HEIGHT, WIDTH, CHANNELS] (texture);
//   dU       [SPLITS, ROWS, 36, COLS] f32 partial sums, ROWS and COLS as U's for FLIP = 0.

alias act = f32;

override BATCH: u32;
override HEIGHT: u32;
override WIDTH: u32;
override CHANNELS: u32;
override WORKGROUP_SIZE: u32;
override TILES_H = (HEIGHT + 3u) / 4u;
override TILES_W = (WIDTH + 3u) / 4u;
override TILES = BATCH * TILES_H * TILES_W;
override TILES_PADDED = (TILES + 15u) / 16u * 16u;
override GROUPS = CHANNELS / 4u;

// The invocation's index in a linear grid (rows of up to 65535 workgroups: linearGrid).
fn invocation(gid: vec3u, groups: vec3u) -> u32 {
  return gid.x + gid.y * groups.x * WORKGROUP_SIZE;
}

// The texel holding elements i..i+3 (i a multiple of 4) of a texture with rows of 2^shift texels.
fn texel_of(i: u32, shift: u32) -> vec2u {
  let t = i / 4u;
  return vec2u(t & ((1u << shift) - 1u), t >> shift);
}

// Where tile t starts: batch index, first output row and column.
fn tile_origin(t: u32) -> vec3u {
  return vec3u(t / (TILES_H * TILES_W), ((t / TILES_W) % TILES_H) * 4u, (t % TILES_W) * 4u);
}

// ---- transform_tiles: image -> V, or (GRADIENT) dy -> Z ----

override IMAGE_ROW_SHIFT: u32;
// false: V = B^T d B of each tile's 6x6 input patch; true: Z = A dY A^T of its 4x4 dy.
override GRADIENT = false;

// Sampled textures, where conv2d_texture.wgsl reads read-only storage ones: on lavapipe their
// inlined loads made these transforms slower (shaders/README.md, "Bindings").
@group(0) @binding(0) var image_texels: texture_2d<f32>;
@group(0) @binding(1) var<storage, read_write> transformed: array<vec4f>;

// B^T applied to six values of a line of the patch.
fn input_line(d: array<vec4f, 6>) -> array<vec4f, 6> {
  return array(
    4.0 * d[0] - 5.0 * d[2] + d[4],
    -4.0 * (d[1] + d[2]) + d[3] + d[4],
    4.0 * (d[1] - d[2]) - d[3] + d[4],
    2.0 * (d[3] - d[1]) - d[2] + d[4],
    2.0 * (d[1] - d[3]) - d[2] + d[4],
    4.0 * d[1] - 5.0 * d[3] + d[5],
  );
}

// A applied to the first four values (a line of a dy tile).
fn gradient_line(d: array<vec4f, 6>) -> array<vec4f, 6> {
  return array(
    d[0],
    d[0] + d[1] + d[2] + d[3],
    d[0] - d[1] + d[2] - d[3],
    d[0] + 2.0 * d[1] + 4.0 * d[2] + 8.0 * d[3],
    d[0] - 2.0 * d[1] + 4.0 * d[2] - 8.0 * d[3],
    d[3],
  );
}

fn tile_line(d: array<vec4f, 6>) -> array<vec4f, 6> {
  if (GRADIENT) { return gradient_line(d); }
  return input_line(d);
}

// Channels c..c+3 of tile t's batch image at (y, x): zero outside the image and for the padding
// tiles t >= TILES.
fn image_value(origin: vec3u, t: u32, c: u32, y: i32, x: i32) -> vec4f {
  let inside = t < TILES && x >= 0 && x < i32(WIDTH) && y >= 0 && y < i32(HEIGHT);
  let index = ((origin.x * HEIGHT + u32(max(y, 0))) * WIDTH + u32(max(x, 0))) * CHANNELS + c;
  return select(vec4f(), textureLoad(image_texels, texel_of(index, IMAGE_ROW_SHIFT), 0), inside);
}

// Column col of tile t's patch, the line transform applied down it: the 6x6 input patch starts a
// row and a column before the tile (padding 1); a dy tile is the tile's own 4x4 (the values past
// its fourth row and column are not used, and compiled away).
fn tile_column(origin: vec3u, t: u32, c: u32, col: u32) -> array<vec4f, 6> {
  let before = select(1, 0, GRADIENT);
  let x = i32(origin.z + col) - before;
  let y = i32(origin.y) - before;
  return tile_line(array(
    image_value(origin, t, c, y, x),
    image_value(origin, t, c, y + 1, x),
    image_value(origin, t, c, y + 2, x),
    image_value(origin, t, c, y + 3, x),
    image_value(origin, t, c, y + 4, x),
    image_value(origin, t, c, y + 5, x),
  ));
}

// Row r of the transformed tile from its columns' entries, the line transform applied along it:
// entries 6r + s for s = 0..5 at tile t, channels c..c+3.
fn store_transformed_row(t: u32, c: u32, r: u32, line: array<vec4f, 6>) {
  let row = tile_line(line);
  let first = ((6u * r * TILES_PADDED + t) * CHANNELS + c) / 4u;
  let step = TILES_PADDED * CHANNELS / 4u;
  transformed[first] = row[0];
  transformed[first + step] = row[1];
  transformed[first + 2u * step] = row[2];
  transformed[first + 3u * step] = row[3];
  transformed[first + 4u * step] = row[4];
  transformed[first + 5u * step] = row[5];
}

// Invocation i: tile i / GROUPS, channels 4 (i % GROUPS) .. +4. Written out without loops: an
// array indexed by a loop counter lives in memory on llvmpipe (conv2d_blocked_math.wgsl).
@compute @workgroup_size(WORKGROUP_SIZE)
fn transform_tiles(
  @builtin(global_invocation_id) gid: vec3u,
  @builtin(num_workgroups) groups: vec3u,
) {
  let i = invocation(gid, groups);
  if (i >= TILES_PADDED * GROUPS) { return; }
  let t = i / GROUPS;
  let c = (i % GROUPS) * 4u;
  let origin = tile_origin(min(t, TILES - 1u));
  let d0 = tile_column(origin, t, c, 0u);
  let d1 = tile_column(origin, t, c, 1u);
  let d2 = tile_column(origin, t, c, 2u);
  let d3 = tile_column(origin, t, c, 3u);
  let d4 = tile_column(origin, t, c, 4u);
  let d5 = tile_column(origin, t, c, 5u);
  store_transformed_row(t, c, 0u, array(d0[0], d1[0], d2[0], d3[0], d4[0], d5[0]));
  store_transformed_row(t, c, 1u, array(d0[1], d1[1], d2[1], d3[1], d4[1], d5[1]));
  store_transformed_row(t, c, 2u, array(d0[2], d1[2], d2[2], d3[2], d4[2], d5[2]));
  store_transformed_row(t, c, 3u, array(d0[3], d1[3], d2[3], d3[3], d4[3], d5[3]));
  store_transformed_row(t, c, 4u, array(d0[4], d1[4], d2[4], d3[4], d4[4], d5[4]));
  store_transformed_row(t, c, 5u, array(d0[5], d1[5], d2[5], d3[5], d4[5], d5[5]));
}

// ---- transform_weight: weight -> U ----

override IN_C: u32;
override OUT_C: u32;
override ROWS: u32;
override COLS: u32;
// transform_weight_gradient: ranges of tiles whose partial sums of dU it adds.
override SPLITS: u32 = 1u;
// 1: U for the input gradient (rows are input channels, columns output channels, taps rotated).
override FLIP: u32 = 0u;
// U's and dU's columns (COLS, a multiple of 4) in vec4s: an invocation of the two weight transforms
// handles four columns, so that U is stored and dU loaded a vec4 per statement (on llvmpipe each
// storage access statement is a loop over the SIMD lanes; conv2d_stores_vec4.wgsl).
override COL_GROUPS = COLS / 4u;

@group(0) @binding(0) var<storage, read> weight: array<f32>;
@group(0) @binding(1) var<storage, read_write> transformed_weight: array<vec4f>;

// G applied to three values of a line of the filter (four columns at once).
fn filter_line(g: array<vec4f, 3>) -> array<vec4f, 6> {
  return array(
    g[0] / 4.0,
    -(g[0] + g[1] + g[2]) / 6.0,
    -(g[0] - g[1] + g[2]) / 6.0,
    g[0] / 24.0 + g[1] / 12.0 + g[2] / 6.0,
    g[0] / 24.0 - g[1] / 12.0 + g[2] / 6.0,
    g[2],
  );
}

// Where U's entry (row, col) reads the weights: the element of tap 0, zero where `real` is false
// (U's padding).
struct FilterEntry {
  first: u32,
  real: bool,
}

fn filter_entry(row: u32, col: u32) -> FilterEntry {
  let o = select(row, col, FLIP == 1u);
  let c = select(col, row, FLIP == 1u);
  return FilterEntry(min(o, OUT_C - 1u) * 9u * IN_C + min(c, IN_C - 1u), o < OUT_C && c < IN_C);
}

// weight[o, tap, c] of one entry for the filter entry (kh, kw) (FLIP: rotated by 180 degrees).
fn filter_value(entry: FilterEntry, kh: u32, kw: u32) -> f32 {
  let tap = select(kh * 3u + kw, (2u - kh) * 3u + 2u - kw, FLIP == 1u);
  return select(0.0, weight[entry.first + tap * IN_C], entry.real);
}

// The filter entry (kh, kw) of U's four columns.
fn filter_values(entries: array<FilterEntry, 4>, kh: u32, kw: u32) -> vec4f {
  return vec4f(
    filter_value(entries[0], kh, kw),
    filter_value(entries[1], kh, kw),
    filter_value(entries[2], kh, kw),
    filter_value(entries[3], kh, kw),
  );
}

// Column kw of the filter, G applied down it.
fn filter_column(entries: array<FilterEntry, 4>, kw: u32) -> array<vec4f, 6> {
  return filter_line(array(
    filter_values(entries, 0u, kw),
    filter_values(entries, 1u, kw),
    filter_values(entries, 2u, kw),
  ));
}

// Row r of U = G g G^T from the columns' entries, G applied along it: U[row, 6r + s, col..+3].
fn store_filter_row(row: u32, col: u32, r: u32, line: array<vec4f, 3>) {
  let values = filter_line(line);
  let first = ((row * 36u + 6u * r) * COLS + col) / 4u;
  transformed_weight[first] = values[0];
  transformed_weight[first + COL_GROUPS] = values[1];
  transformed_weight[first + 2u * COL_GROUPS] = values[2];
  transformed_weight[first + 3u * COL_GROUPS] = values[3];
  transformed_weight[first + 4u * COL_GROUPS] = values[4];
  transformed_weight[first + 5u * COL_GROUPS] = values[5];
}

// Invocation i: row i / COL_GROUPS, columns 4 (i % COL_GROUPS) .. +4 of U; written out as
// transform_tiles.
@compute @workgroup_size(WORKGROUP_SIZE)
fn transform_weight(
  @builtin(global_invocation_id) gid: vec3u,
  @builtin(num_workgroups) groups: vec3u,
) {
  let i = invocation(gid, groups);
  if (i >= ROWS * COL_GROUPS) { return; }
  let row = i / COL_GROUPS;
  let col = (i % COL_GROUPS) * 4u;
  let entries = array(
    filter_entry(row, col),
    filter_entry(row, col + 1u),
    filter_entry(row, col + 2u),
    filter_entry(row, col + 3u),
  );
  let g0 = filter_column(entries, 0u);
  let g1 = filter_column(entries, 1u);
  let g2 = filter_column(entries, 2u);
  store_filter_row(row, col, 0u, array(g0[0], g1[0], g2[0]));
  store_filter_row(row, col, 1u, array(g0[1], g1[1], g2[1]));
  store_filter_row(row, col, 2u, array(g0[2], g1[2], g2[2]));
  store_filter_row(row, col, 3u, array(g0[3], g1[3], g2[3]));
  store_filter_row(row, col, 4u, array(g0[4], g1[4], g2[4]));
  store_filter_row(row, col, 5u, array(g0[5], g1[5], g2[5]));
}

// ---- transform_output: M -> output ----

override STORED_CHANNELS: u32;
override PRODUCT_ROW_SHIFT: u32;

@group(0) @binding(0) var product_texels: texture_2d<f32>;
@group(0) @binding(1) var<storage, read_write> output: array<stored_unit>;

// A^T applied to six values of a line of M.
fn output_line(m: array<vec4f, 6>) -> array<vec4f, 4> {
  return array(
    m[0] + m[1] + m[2] + m[3] + m[4],
    m[1] - m[2] + 2.0 * (m[3] - m[4]),
    m[1] + m[2] + 4.0 * (m[3] + m[4]),
    m[1] - m[2] + 8.0 * (m[3] - m[4]) + m[5],
  );
}

// Column s of tile t's M (channels c..c+3), A^T applied down it.
fn product_column(t: u32, c: u32, s: u32) -> array<vec4f, 4> {
  let first = (s * TILES_PADDED + t) * CHANNELS + c;
  let step = 6u * TILES_PADDED * CHANNELS;
  return output_line(array(
    textureLoad(product_texels, texel_of(first, PRODUCT_ROW_SHIFT), 0),
    textureLoad(product_texels, texel_of(first + step, PRODUCT_ROW_SHIFT), 0),
    textureLoad(product_texels, texel_of(first + 2u * step, PRODUCT_ROW_SHIFT), 0),
    textureLoad(product_texels, texel_of(first + 3u * step, PRODUCT_ROW_SHIFT), 0),
    textureLoad(product_texels, texel_of(first + 4u * step, PRODUCT_ROW_SHIFT), 0),
    textureLoad(product_texels, texel_of(first + 5u * step, PRODUCT_ROW_SHIFT), 0),
  ));
}

// Output pixel (n, y, x), channels c..c+3 (those that exist).
fn store_output(n: u32, y: u32, x: u32, c: u32, value: vec4f) {
  let base = ((n * HEIGHT + y) * WIDTH + x) * STORED_CHANNELS + c;
  for (var k = 0u; k < 4u; k += UNIT_CHANNELS) {
    if (y < HEIGHT && x < WIDTH && c + k < STORED_CHANNELS) {
      output[(base + k) / UNIT_CHANNELS] = unit_of(value, k);
    }
  }
}

// Row r of the tile's output from the entries of M's columns after A^T: A applied along it.
fn store_output_row(origin: vec3u, c: u32, r: u32, line: array<vec4f, 6>) {
  let row = output_line(line);
  let y = origin.y + r;
  store_output(origin.x, y, origin.z, c, row[0]);
  store_output(origin.x, y, origin.z + 1u, c, row[1]);
  store_output(origin.x, y, origin.z + 2u, c, row[2]);
  store_output(origin.x, y, origin.z + 3u, c, row[3]);
}

// Invocation i: tile i / GROUPS, channels 4 (i % GROUPS) .. +4 (those below STORED_CHANNELS);
// written out without loops over arrays, as transform_tiles.
@compute @workgroup_size(WORKGROUP_SIZE)
fn transform_output(
  @builtin(global_invocation_id) gid: vec3u,
  @builtin(num_workgroups) groups: vec3u,
) {
  let i = invocation(gid, groups);
  if (i >= TILES * GROUPS) { return; }
  let t = i / GROUPS;
  let c = (i % GROUPS) * 4u;
  let origin = tile_origin(t);
  let m0 = product_column(t, c, 0u);
  let m1 = product_column(t, c, 1u);
  let m2 = product_column(t, c, 2u);
  let m3 = product_column(t, c, 3u);
  let m4 = product_column(t, c, 4u);
  let m5 = product_column(t, c, 5u);
  store_output_row(origin, c, 0u, array(m0[0], m1[0], m2[0], m3[0], m4[0], m5[0]));
  store_output_row(origin, c, 1u, array(m0[1], m1[1], m2[1], m3[1], m4[1], m5[1]));
  store_output_row(origin, c, 2u, array(m0[2], m1[2], m2[2], m3[2], m4[2], m5[2]));
  store_output_row(origin, c, 3u, array(m0[3], m1[3], m2[3], m3[3], m4[3], m5[3]));
}

// ---- transform_weight_gradient: partial sums of dU -> dweight ----

@group(0) @binding(0) var<storage, read> weight_partials: array<vec4f>;
@group(0) @binding(1) var<storage, read_write> weight_gradient: array<f32>;

// G^T applied to six values of a line of dU (four input channels at once).
fn filter_gradient_line(u: array<vec4f, 6>) -> array<vec4f, 3> {
  return array(
    u[0] / 4.0 - (u[1] + u[2]) / 6.0 + (u[3] + u[4]) / 24.0,
    (u[2] - u[1]) / 6.0 + (u[3] - u[4]) / 12.0,
    (u[3] + u[4] - u[1] - u[2]) / 6.0 + u[5],
  );
}

// dU[o, 6r + s, c..c+3] summed over the ranges.
fn summed_partial(o: u32, r: u32, s: u32, c: u32) -> vec4f {
  var sum = vec4f(0.0);
  for (var split = 0u; split < SPLITS; split++) {
    sum += weight_partials[(((split * ROWS + o) * 36u + 6u * r + s) * COLS + c) / 4u];
  }
  return sum;
}

// Row r of dU with G^T applied along it (G's columns: dU G).
fn partial_row(o: u32, r: u32, c: u32) -> array<vec4f, 3> {
  return filter_gradient_line(array(
    summed_partial(o, r, 0u, c),
    summed_partial(o, r, 1u, c),
    summed_partial(o, r, 2u, c),
    summed_partial(o, r, 3u, c),
    summed_partial(o, r, 4u, c),
    summed_partial(o, r, 5u, c),
  ));
}

// weight_gradient[o, kh, kw, c..c+3] (those below IN_C) for kh = 0..2, from column kw of G^T
// (dU G).
fn store_weight_gradient(o: u32, c: u32, kw: u32, column: array<vec4f, 6>) {
  let g = filter_gradient_line(column);
  let first = (o * 9u + kw) * IN_C + c;
  for (var k = 0u; k < 4u; k++) {
    if (c + k < IN_C) {
      weight_gradient[first + k] = g[0][k];
      weight_gradient[first + 3u * IN_C + k] = g[1][k];
      weight_gradient[first + 6u * IN_C + k] = g[2][k];
    }
  }
}

// Invocation i: output channel i / COL_GROUPS, input channels 4 (i % COL_GROUPS) .. +4:
// dweight = G^T dU G.
@compute @workgroup_size(WORKGROUP_SIZE)
fn transform_weight_gradient(
  @builtin(global_invocation_id) gid: vec3u,
  @builtin(num_workgroups) groups: vec3u,
) {
  let i = invocation(gid, groups);
  if (i >= OUT_C * COL_GROUPS) { return; }
  let o = i / COL_GROUPS;
  let c = (i % COL_GROUPS) * 4u;
  let h0 = partial_row(o, 0u, c);
  let h1 = partial_row(o, 1u, c);
  let h2 = partial_row(o, 2u, c);
  let h3 = partial_row(o, 3u, c);
  let h4 = partial_row(o, 4u, c);
  let h5 = partial_row(o, 5u, c);
  store_weight_gradient(o, c, 0u, array(h0[0], h1[0], h2[0], h3[0], h4[0], h5[0]));
  store_weight_gradient(o, c, 1u, array(h0[1], h1[1], h2[1], h3[1], h4[1], h5[1]));
  store_weight_gradient(o, c, 2u, array(h0[2], h1[2], h2[2], h3[2], h4[2], h5[2]));
}
