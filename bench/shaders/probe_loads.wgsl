// Load probes (bench/cpu_probe.ts): what one load of each kind costs an adapter, as the bytes its
// invocations receive per second. Each entry point makes every invocation do LOADS loads of one
// kind, sums what it read and writes the sum to `sums` (so no load is dead). They differ only in
// where the data lives and which address each SIMD lane asks for:
//   adjacent:  load k of invocation i reads element k * INVOCATIONS + i (neighbouring lanes,
//              neighbouring addresses: the GPU pattern).
//   runs:      element i * LOADS + k (each lane streams its own run: the CPU kernels' pattern).
//   uniform:   element (i / WORKGROUP_SIZE) * LOADS + k (every lane of a workgroup, one address:
//              a weight read by all the pixels of a block).
// The data are WINDOW vec4s (the uniform-buffer and workgroup-memory forms cycle through the
// 64 KiB and 16 KiB those hold). Why: on llvmpipe (Mesa 22.3) a storage-buffer or
// workgroup-memory load is a loop over the SIMD lanes with a bounds check and an insert per
// component, a texel fetch a branch-free gather (a call into a sampling function for a sampled
// texture, inlined for a read-only storage texture), a uniform-buffer load at one address a single
// scalar load broadcast to the lanes; how much each costs depends on the CPU's instruction set.

override WORKGROUP_SIZE: u32;
override INVOCATIONS: u32;
override LOADS: u32;
// Texels per row of `texels`, a power of two.
override TEXTURE_WIDTH: u32 = 1024u;

@group(0) @binding(1) var<storage, read_write> sums: array<vec4f>;

// Vectors in the data, a power of two: small enough (256 KiB) to stay in a core's L2, so that the
// probes time the loads, not the memory behind them.
override WINDOW: u32 = 16384u;

fn element(i: u32, k: u32, pattern: u32) -> u32 {
  switch (pattern) {
    case 0u: { return (k * INVOCATIONS + i) % WINDOW; }
    case 1u: { return (i * LOADS + k) % WINDOW; }
    default: { return ((i / WORKGROUP_SIZE) * LOADS + k) % WINDOW; }
  }
}

// ---- storage buffer, vec4 per load ----
@group(0) @binding(0) var<storage, read> vectors: array<vec4f>;

override PATTERN: u32;

@compute @workgroup_size(WORKGROUP_SIZE)
fn storage_vec4(@builtin(global_invocation_id) gid: vec3u) {
  var sum = vec4f();
  for (var k = 0u; k < LOADS; k++) {
    sum += vectors[element(gid.x, k, PATTERN)];
  }
  sums[gid.x] = sum;
}

// ---- storage buffer, four f32 loads per vec4 ----
@group(0) @binding(0) var<storage, read> scalars: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn storage_f32(@builtin(global_invocation_id) gid: vec3u) {
  var sum = vec4f();
  for (var k = 0u; k < LOADS; k++) {
    let at = element(gid.x, k, PATTERN) * 4u;
    sum += vec4f(scalars[at], scalars[at + 1u], scalars[at + 2u], scalars[at + 3u]);
  }
  sums[gid.x] = sum;
}

// ---- storage buffer, one mat4x4f (four vec4s) per load ----
@group(0) @binding(0) var<storage, read> matrices: array<mat4x4f>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn storage_mat4(@builtin(global_invocation_id) gid: vec3u) {
  var sum = vec4f();
  for (var k = 0u; k < LOADS / 4u; k++) {
    let m = matrices[element(gid.x, k, PATTERN) % (WINDOW / 4u)];
    sum += (m[0] + m[1]) + (m[2] + m[3]);
  }
  sums[gid.x] = sum;
}

// ---- rgba32float texture, textureLoad ----
@group(0) @binding(0) var texels: texture_2d<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn texture_vec4(@builtin(global_invocation_id) gid: vec3u) {
  var sum = vec4f();
  for (var k = 0u; k < LOADS; k++) {
    let t = element(gid.x, k, PATTERN);
    sum += textureLoad(texels, vec2u(t % TEXTURE_WIDTH, t / TEXTURE_WIDTH), 0);
  }
  sums[gid.x] = sum;
}

// ---- uniform buffer (64 KiB, WebGPU's default maximum), cycled through ----
const TABLE = 4096u;
@group(0) @binding(0) var<uniform> table: array<vec4f, TABLE>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn uniform_vec4(@builtin(global_invocation_id) gid: vec3u) {
  var sum = vec4f();
  for (var k = 0u; k < LOADS; k++) {
    sum += table[element(gid.x, k, PATTERN) % TABLE];
  }
  sums[gid.x] = sum;
}

// ---- workgroup memory (16 KiB), filled from `vectors`, cycled through ----
const TILE = 1024u;
var<workgroup> tile: array<vec4f, TILE>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn workgroup_vec4(
  @builtin(global_invocation_id) gid: vec3u,
  @builtin(local_invocation_index) local: u32,
) {
  for (var j = local; j < TILE; j += WORKGROUP_SIZE) {
    tile[j] = vectors[j];
  }
  workgroupBarrier();
  var sum = vec4f();
  for (var k = 0u; k < LOADS; k++) {
    sum += tile[element(gid.x, k, PATTERN) % TILE];
  }
  sums[gid.x] = sum;
}

// ---- rgba32float read-only storage texture, textureLoad (the same texture) ----
@group(0) @binding(0) var storage_texels: texture_storage_2d<rgba32float, read>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn storage_texture_vec4(@builtin(global_invocation_id) gid: vec3u) {
  var sum = vec4f();
  for (var k = 0u; k < LOADS; k++) {
    let t = element(gid.x, k, PATTERN);
    sum += textureLoad(storage_texels, vec2u(t % TEXTURE_WIDTH, t / TEXTURE_WIDTH));
  }
  sums[gid.x] = sum;
}
