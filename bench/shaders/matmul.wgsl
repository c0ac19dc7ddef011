// Matrix product c = a · b, row-major: a [M, K], b [K, N], c [M, N]. The yardstick of
// bench/conv2d.ts: a convolution's GEMM with no image indexing, blocked the way
// conv2d_blocked.wgsl is (for CPU adapters; see that file for why): each invocation keeps an
// 8x16 block of c in registers as 8 mat4x4f and loads vec4s, 21 multiply-adds per vec4 loaded.
// M must be a multiple of 8, N of 16 and K of 4 (bench/conv2d.ts picks such sizes).

override M: u32;
override N: u32;
override K: u32;
override WORKGROUP_SIZE: u32;

@group(0) @binding(0) var<storage, read> a: array<vec4f>;
@group(0) @binding(1) var<storage, read> b: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> c: array<vec4f>;

// Column i: a[row + i, k..k+3].
fn a_columns(row: u32, k: u32) -> mat4x4f {
  let i = (row * K + k) / 4u;
  return mat4x4f(a[i], a[i + K / 4u], a[i + K / 2u], a[i + 3u * K / 4u]);
}

// Column j: b[k + j, column..column+3].
fn b_block(k: u32, column: u32) -> mat4x4f {
  let i = (k * N + column) / 4u;
  return mat4x4f(b[i], b[i + N / 4u], b[i + N / 2u], b[i + 3u * N / 4u]);
}

// Rows row..row+3 of c from block `block` (column i: row + i), at columns column..column+3.
fn store_block(block: mat4x4f, row: u32, column: u32) {
  for (var i = 0u; i < 4u; i++) { c[((row + i) * N + column) / 4u] = block[i]; }
}

// Invocation (gid.x, gid.y): rows 8 gid.x .. +8, columns 16 gid.y .. +16. The block is written
// out as 8 named products, not loops, so that every matrix stays in registers (see
// conv2d_blocked.wgsl).
@compute @workgroup_size(WORKGROUP_SIZE)
fn multiply(@builtin(global_invocation_id) gid: vec3u) {
  let row = gid.x * 8u;
  if (row >= M) { return; }
  let column = gid.y * 16u;
  var acc: array<mat4x4f, 8>;
  for (var k = 0u; k < K; k += 4u) {
    let a0 = a_columns(row, k);
    let a1 = a_columns(row + 4u, k);
    let b0 = b_block(k, column);
    let b1 = b_block(k, column + 4u);
    let b2 = b_block(k, column + 8u);
    let b3 = b_block(k, column + 12u);
    acc[0] += b0 * a0;
    acc[1] += b0 * a1;
    acc[2] += b1 * a0;
    acc[3] += b1 * a1;
    acc[4] += b2 * a0;
    acc[5] += b2 * a1;
    acc[6] += b3 * a0;
    acc[7] += b3 * a1;
  }
  store_block(acc[0], row, column);
  store_block(acc[1], row + 4u, column);
  store_block(acc[2], row, column + 4u);
  store_block(acc[3], row + 4u, column + 4u);
  store_block(acc[4], row, column + 8u);
  store_block(acc[5], row + 4u, column + 8u);
  store_block(acc[6], row, column + 12u);
  store_block(acc[7], row + 4u, column + 12u);
}
