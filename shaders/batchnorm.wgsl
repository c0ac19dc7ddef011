// BatchNorm2d over NHWC activations with PyTorch's semantics, optionally fused with a residual add
// and a ReLU: y = act(gamma · (x − mean) · invStd + beta [+ residual]). src/ops/batchnorm.ts builds
// the passes; tests/support/reference/batchnorm.ts is the f64 reference.
//
// Layout. x is ROWS = N·H·W rows of CHANNELS values. Channels go four at a time, as "channel
// vectors": vector v holds channels 4v..4v+3, and a row has VECTORS_PER_ROW = ceil(CHANNELS / 4).
// Entry points without a suffix bind activations as array<vec4f> (CHANNELS a multiple of 4, every
// ResNet layer); the `_scalar` ones bind array<f32> for any CHANNELS, loading a padding channel as
// the last real one and never storing it. Both share all arithmetic below; only the loads and
// stores differ. On lavapipe a vec4 load costs about what a scalar one does, so the scalar
// binding is 1.8x slower there (bench/README.md).
//
// Lanes. One invocation of a data pass, a lane, covers VECTORS_PER_LANE consecutive channel
// vectors of ROWS_PER_LANE consecutive rows: lane i has vector group i % LANES_PER_ROW and row
// block i / LANES_PER_ROW. Per-channel values load once per lane. CPU adapters run 4 or 8 vectors
// (64 or 128 contiguous bytes of each row) over tens to hundreds of rows per lane: llvmpipe
// gathers each SIMD lane's loads one lane at a time, which runs about four times as fast as with
// 1 vector a lane when every lane reads whole cache lines of its own. GPUs run one vector over a
// few rows per lane, so that neighbouring invocations read neighbouring addresses.
//
// Training forward:
//   statistics_partials          Welford's (mean, M2) of each channel over a lane's rows
//                                -> workspace partial (block, vector)
//   statistics_combine[_tree]    per channel vector, Chan's merge of all row blocks -> batch mean
//                                and biased variance; writes the saved mean and invStd, updates
//                                running_mean, running_var (unbiased) and num_batches_tracked
//   normalize                    y = act(gamma · (x − mean) · invStd + beta [+ residual])
// Eval forward: normalize alone, with SPREAD_IS_VARIANCE reading running_var for invStd.
// Backward (dy_eff = dy · (y > 0) with RELU, else dy; x̂ = (x − mean) · invStd):
//   gradient_partials            Σ dy_eff and Σ dy_eff · (x − mean) over a lane's rows -> workspace
//   gradient_combine[_tree]      dbeta = Σ dy_eff, dgamma = invStd · Σ dy_eff · (x − mean), and the
//                                per-channel coefficients of dx -> workspace
//   input_gradient               dx = gamma · invStd · (dy_eff − Σdy_eff / M − x̂ · Σ dy_eff·x̂ / M)
//                                [and dresidual = dy_eff, with RESIDUAL]
//
// Accuracy. The one-pass E[x²] − E[x]² cancels catastrophically in f32 once mean² ≫ variance
// (for 1000 + U(−1, 1) it loses every digit); Welford's update keeps each lane's M2 centred and
// Chan's merge combines (count, mean, M2) triples exactly, so the variance of 131,072 values of
// 1000 + U(−1, 1) comes out within 4e-6 of f64, where the one-pass formula is 857x too large
// (tests/ops/batchnorm_test.ts). Counts are f32, exact up to 2^24 rows.
//
// Variants. The `_tree` combines give each channel vector a workgroup whose invocations merge
// strided row blocks and then a workgroup-memory tree, for GPUs; the plain ones give it a single
// invocation that merges all row blocks in turn, with no workgroup memory or barrier, for CPU
// adapters. The data passes are shared and tuned by constants only, except that the `_texture`
// ones (end of this file) read the activations with textureLoad, for CPU adapters.
//
// Precision. Activations (x, residual, y, dy, dx, dresidual) hold `act` elements: f32, or f16 in the
// kernel's f16 build (src/shaders.ts). Every sum, the statistics, the workspace, gamma/beta, their
// gradients and the running statistics are f32 in both builds.
//
// Bindings follow shaders/README.md. The combine passes bind every storage buffer read_write:
// wgpu rejects a buffer bound both read-only and read_write in one dispatch even where the ranges
// are disjoint, and parameters, running statistics and gradients may share arena buffers. The data
// passes read activations and write the workspace or other activations, so the workspace needs a
// buffer of its own.
//
// Workspace (array<vec4f>): the dx coefficients first, 4 vectors per channel vector
// (mean, gamma·invStd, the x̂ term's factor, the constant term), then the partials, 2 vectors per
// (block, channel vector).

alias act = f32;

override CHANNELS: u32;
override ROWS: u32;
override VECTORS_PER_ROW: u32 = (CHANNELS + 3u) / 4u;
// At most MAX_VECTORS_PER_LANE, dividing VECTORS_PER_ROW.
override VECTORS_PER_LANE: u32 = 1u;
override ROWS_PER_LANE: u32;
override LANES_PER_ROW: u32 = VECTORS_PER_ROW / VECTORS_PER_LANE;
override ROW_BLOCKS: u32 = (ROWS + ROWS_PER_LANE - 1u) / ROWS_PER_LANE;
// A power of two for the tree combines.
override WORKGROUP_SIZE: u32;
override EPS: f32 = 1e-5;
override MOMENTUM: f32 = 0.1;
override RELU: bool = false;
// With a residual: normalize adds it (without one, the op binds x in its place, never read);
// input_gradient writes its gradient (without one, the op binds a scratch tensor, never written).
override RESIDUAL: bool = false;
// Eval mode: normalize's spread binding holds running_var instead of invStd.
override SPREAD_IS_VARIANCE: bool = false;

const MAX_VECTORS_PER_LANE = 8u;
const COEFFICIENTS_PER_VECTOR = 4u;
const PARTIAL_VECTORS = 2u;

// ---- Indexing --------------------------------------------------------------------------------

struct Lane {
  block: u32,
  first_vector: u32,
  first_row: u32,
  end_row: u32,
}

fn linear_index(gid: vec3u, groups: vec3u) -> u32 {
  return gid.x + gid.y * groups.x * WORKGROUP_SIZE;
}

// Lanes past the end have an empty row range.
fn lane_at(gid: vec3u, groups: vec3u) -> Lane {
  let index = linear_index(gid, groups);
  let block = index / LANES_PER_ROW;
  let first_row = min(block * ROWS_PER_LANE, ROWS);
  return Lane(
    block,
    (index % LANES_PER_ROW) * VECTORS_PER_LANE,
    first_row,
    min(first_row + ROWS_PER_LANE, ROWS),
  );
}

fn rows_in_block(block: u32) -> u32 {
  return min(ROWS_PER_LANE, ROWS - block * ROWS_PER_LANE);
}

// Flat indices of the channels of vector v in a row starting at `row_start`, padding channels
// clamped to the last real one so that loads stay inside the row.
fn scalar_offsets(row_start: u32, v: u32) -> vec4u {
  return row_start + min(4u * v + vec4u(0u, 1u, 2u, 3u), vec4u(CHANNELS - 1u));
}

fn is_real_channel(v: u32, component: u32) -> bool {
  return 4u * v + component < CHANNELS;
}

fn partial_index(block: u32, v: u32) -> u32 {
  return COEFFICIENTS_PER_VECTOR * VECTORS_PER_ROW + PARTIAL_VECTORS * (block * VECTORS_PER_ROW + v);
}

// ---- Shared arithmetic -----------------------------------------------------------------------

// Mean and sum of squared deviations of `count` values, per channel of a vector.
struct Moments {
  count: f32,
  mean: vec4f,
  m2: vec4f,
}

// Welford's update with one more value.
fn moments_add(m: Moments, value: vec4f) -> Moments {
  let count = m.count + 1.0;
  let delta = value - m.mean;
  let mean = m.mean + delta / count;
  return Moments(count, mean, m.m2 + delta * (value - mean));
}

// Chan's merge of two disjoint sets.
fn moments_merge(a: Moments, b: Moments) -> Moments {
  let count = a.count + b.count;
  if (count == 0.0) { return a; }
  let delta = b.mean - a.mean;
  let b_share = b.count / count;
  return Moments(count, a.mean + delta * b_share, a.m2 + b.m2 + delta * delta * a.count * b_share);
}

fn inverse_std(variance: vec4f) -> vec4f {
  return 1.0 / sqrt(variance + EPS);
}

fn activate(value: vec4f) -> vec4f {
  if (RELU) { return max(value, vec4f(0.0)); }
  return value;
}

// The gradient reaching the normalisation: the ReLU mask comes from the fused output y (read
// only with RELU).
fn effective_gradient(dy: vec4f, y: vec4f) -> vec4f {
  return select(vec4f(0.0), dy, y > vec4f(0.0));
}

// Σ dy_eff and Σ dy_eff · (x − mean) of one channel vector.
struct GradientSums {
  dy: vec4f,
  dy_centred: vec4f,
}

fn gradient_sums_add(s: GradientSums, dy_eff: vec4f, centred: vec4f) -> GradientSums {
  return GradientSums(s.dy + dy_eff, s.dy_centred + dy_eff * centred);
}

// dx = a · dy_eff + b · (x − mean) + c, per channel.
struct InputGradientCoefficients {
  mean: vec4f,
  a: vec4f,
  b: vec4f,
  c: vec4f,
}

fn input_gradient_at(k: InputGradientCoefficients, dy_eff: vec4f, x: vec4f) -> vec4f {
  return k.a * dy_eff + k.b * (x - k.mean) + k.c;
}

// ---- statistics_partials ---------------------------------------------------------------------

@group(0) @binding(0) var<storage, read> statistics_x: array<vec4<act>>;
@group(0) @binding(0) var<storage, read> statistics_x_scalar: array<act>;
@group(0) @binding(1) var<storage, read_write> statistics_workspace: array<vec4f>;

fn store_moments(lane: Lane, moments: array<Moments, MAX_VECTORS_PER_LANE>) {
  for (var k = 0u; k < VECTORS_PER_LANE; k++) {
    let index = partial_index(lane.block, lane.first_vector + k);
    statistics_workspace[index] = moments[k].mean;
    statistics_workspace[index + 1u] = moments[k].m2;
  }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn statistics_partials(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let lane = lane_at(gid, groups);
  if (lane.first_row == ROWS) { return; }
  var moments: array<Moments, MAX_VECTORS_PER_LANE>;
  for (var row = lane.first_row; row < lane.end_row; row++) {
    let base = row * VECTORS_PER_ROW + lane.first_vector;
    for (var k = 0u; k < VECTORS_PER_LANE; k++) {
      moments[k] = moments_add(moments[k], vec4f(statistics_x[base + k]));
    }
  }
  store_moments(lane, moments);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn statistics_partials_scalar(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let lane = lane_at(gid, groups);
  if (lane.first_row == ROWS) { return; }
  var moments: array<Moments, MAX_VECTORS_PER_LANE>;
  for (var row = lane.first_row; row < lane.end_row; row++) {
    for (var k = 0u; k < VECTORS_PER_LANE; k++) {
      let i = scalar_offsets(row * CHANNELS, lane.first_vector + k);
      let x = vec4f(vec4<act>(statistics_x_scalar[i.x], statistics_x_scalar[i.y], statistics_x_scalar[i.z], statistics_x_scalar[i.w]));
      moments[k] = moments_add(moments[k], x);
    }
  }
  store_moments(lane, moments);
}

// ---- statistics_combine ----------------------------------------------------------------------

@group(0) @binding(0) var<storage, read_write> combine_workspace: array<vec4f>;
@group(0) @binding(1) var<storage, read_write> combine_mean: array<f32>;
@group(0) @binding(2) var<storage, read_write> combine_inv_std: array<f32>;
@group(0) @binding(3) var<storage, read_write> combine_running_mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> combine_running_var: array<f32>;
@group(0) @binding(5) var<storage, read_write> combine_num_batches_tracked: array<u32>;

fn block_moments(block: u32, v: u32) -> Moments {
  let index = partial_index(block, v);
  return Moments(f32(rows_in_block(block)), combine_workspace[index], combine_workspace[index + 1u]);
}

// Saves mean and invStd and updates the running statistics of channel vector v.
fn finish_statistics(v: u32, total: Moments) {
  let variance = total.m2 / f32(ROWS);
  let inv_std = inverse_std(variance);
  let unbiased = total.m2 / f32(ROWS - 1u);
  for (var component = 0u; component < 4u; component++) {
    if (!is_real_channel(v, component)) { break; }
    let c = 4u * v + component;
    combine_mean[c] = total.mean[component];
    combine_inv_std[c] = inv_std[component];
    combine_running_mean[c] = mix(combine_running_mean[c], total.mean[component], MOMENTUM);
    combine_running_var[c] = mix(combine_running_var[c], unbiased[component], MOMENTUM);
  }
  if (v == 0u) { combine_num_batches_tracked[0] += 1u; }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn statistics_combine(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let v = linear_index(gid, groups);
  if (v >= VECTORS_PER_ROW) { return; }
  var total = Moments(0.0, vec4f(0.0), vec4f(0.0));
  for (var block = 0u; block < ROW_BLOCKS; block++) {
    total = moments_merge(total, block_moments(block, v));
  }
  finish_statistics(v, total);
}

var<workgroup> moments_tree: array<Moments, WORKGROUP_SIZE>;

// One workgroup per channel vector.
@compute @workgroup_size(WORKGROUP_SIZE)
fn statistics_combine_tree(@builtin(workgroup_id) workgroup: vec3u, @builtin(local_invocation_index) t: u32) {
  let v = workgroup.x;
  var total = Moments(0.0, vec4f(0.0), vec4f(0.0));
  for (var block = t; block < ROW_BLOCKS; block += WORKGROUP_SIZE) {
    total = moments_merge(total, block_moments(block, v));
  }
  moments_tree[t] = total;
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    workgroupBarrier();
    if (t < stride) { moments_tree[t] = moments_merge(moments_tree[t], moments_tree[t + stride]); }
  }
  if (t == 0u) { finish_statistics(v, moments_tree[0]); }
}

// ---- normalize -------------------------------------------------------------------------------

@group(0) @binding(0) var<storage, read> normalize_x: array<vec4<act>>;
@group(0) @binding(0) var<storage, read> normalize_x_scalar: array<act>;
@group(0) @binding(1) var<storage, read> normalize_residual: array<vec4<act>>;
@group(0) @binding(1) var<storage, read> normalize_residual_scalar: array<act>;
@group(0) @binding(2) var<storage, read> normalize_gamma: array<f32>;
@group(0) @binding(3) var<storage, read> normalize_beta: array<f32>;
@group(0) @binding(4) var<storage, read> normalize_mean: array<f32>;
// invStd in training, running_var in eval (SPREAD_IS_VARIANCE).
@group(0) @binding(5) var<storage, read> normalize_spread: array<f32>;
@group(0) @binding(6) var<storage, read_write> normalize_y: array<vec4<act>>;
@group(0) @binding(6) var<storage, read_write> normalize_y_scalar: array<act>;

// y = x · scale + shift computed as (x − mean) · scale + beta, which keeps the digits of
// x − mean when the mean is large.
struct Affine {
  mean: vec4f,
  scale: vec4f,
  beta: vec4f,
}

fn affine_of(v: u32) -> Affine {
  let c = scalar_offsets(0u, v);
  let spread = vec4f(normalize_spread[c.x], normalize_spread[c.y], normalize_spread[c.z], normalize_spread[c.w]);
  let inv_std = select(spread, inverse_std(spread), SPREAD_IS_VARIANCE);
  return Affine(
    vec4f(normalize_mean[c.x], normalize_mean[c.y], normalize_mean[c.z], normalize_mean[c.w]),
    vec4f(normalize_gamma[c.x], normalize_gamma[c.y], normalize_gamma[c.z], normalize_gamma[c.w]) * inv_std,
    vec4f(normalize_beta[c.x], normalize_beta[c.y], normalize_beta[c.z], normalize_beta[c.w]),
  );
}

fn lane_affines(lane: Lane) -> array<Affine, MAX_VECTORS_PER_LANE> {
  var affines: array<Affine, MAX_VECTORS_PER_LANE>;
  for (var k = 0u; k < VECTORS_PER_LANE; k++) { affines[k] = affine_of(lane.first_vector + k); }
  return affines;
}

// `residual` is zero without RESIDUAL.
fn normalized(f: Affine, x: vec4f, residual: vec4f) -> vec4f {
  return activate((x - f.mean) * f.scale + f.beta + residual);
}

// Optional inputs load only when their override asks for them, so that no dead load is left for
// the compiler to remove.
fn residual_vector(i: u32) -> vec4f {
  if (RESIDUAL) { return vec4f(normalize_residual[i]); }
  return vec4f(0.0);
}

fn residual_scalars(i: vec4u) -> vec4f {
  if (RESIDUAL) {
    return vec4f(vec4<act>(
      normalize_residual_scalar[i.x], normalize_residual_scalar[i.y],
      normalize_residual_scalar[i.z], normalize_residual_scalar[i.w],
    ));
  }
  return vec4f(0.0);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn normalize(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let lane = lane_at(gid, groups);
  if (lane.first_row == ROWS) { return; }
  let affines = lane_affines(lane);
  for (var row = lane.first_row; row < lane.end_row; row++) {
    let base = row * VECTORS_PER_ROW + lane.first_vector;
    for (var k = 0u; k < VECTORS_PER_LANE; k++) {
      let i = base + k;
      normalize_y[i] = vec4<act>(normalized(affines[k], vec4f(normalize_x[i]), residual_vector(i)));
    }
  }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn normalize_scalar(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let lane = lane_at(gid, groups);
  if (lane.first_row == ROWS) { return; }
  let affines = lane_affines(lane);
  for (var row = lane.first_row; row < lane.end_row; row++) {
    for (var k = 0u; k < VECTORS_PER_LANE; k++) {
      let v = lane.first_vector + k;
      let i = scalar_offsets(row * CHANNELS, v);
      let x = vec4f(vec4<act>(normalize_x_scalar[i.x], normalize_x_scalar[i.y], normalize_x_scalar[i.z], normalize_x_scalar[i.w]));
      let y = normalized(affines[k], x, residual_scalars(i));
      for (var component = 0u; component < 4u; component++) {
        if (is_real_channel(v, component)) { normalize_y_scalar[i[component]] = act(y[component]); }
      }
    }
  }
}

// ---- gradient_partials -----------------------------------------------------------------------

@group(0) @binding(0) var<storage, read> partials_x: array<vec4<act>>;
@group(0) @binding(0) var<storage, read> partials_x_scalar: array<act>;
// Without RELU the op binds x here; it is never read.
@group(0) @binding(1) var<storage, read> partials_y: array<vec4<act>>;
@group(0) @binding(1) var<storage, read> partials_y_scalar: array<act>;
@group(0) @binding(2) var<storage, read> partials_dy: array<vec4<act>>;
@group(0) @binding(2) var<storage, read> partials_dy_scalar: array<act>;
@group(0) @binding(3) var<storage, read> partials_mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> partials_workspace: array<vec4f>;

fn lane_means(lane: Lane) -> array<vec4f, MAX_VECTORS_PER_LANE> {
  var means: array<vec4f, MAX_VECTORS_PER_LANE>;
  for (var k = 0u; k < VECTORS_PER_LANE; k++) {
    let c = scalar_offsets(0u, lane.first_vector + k);
    means[k] = vec4f(partials_mean[c.x], partials_mean[c.y], partials_mean[c.z], partials_mean[c.w]);
  }
  return means;
}

fn store_gradient_sums(lane: Lane, sums: array<GradientSums, MAX_VECTORS_PER_LANE>) {
  for (var k = 0u; k < VECTORS_PER_LANE; k++) {
    let index = partial_index(lane.block, lane.first_vector + k);
    partials_workspace[index] = sums[k].dy;
    partials_workspace[index + 1u] = sums[k].dy_centred;
  }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn gradient_partials(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let lane = lane_at(gid, groups);
  if (lane.first_row == ROWS) { return; }
  let means = lane_means(lane);
  var sums: array<GradientSums, MAX_VECTORS_PER_LANE>;
  for (var row = lane.first_row; row < lane.end_row; row++) {
    let base = row * VECTORS_PER_ROW + lane.first_vector;
    for (var k = 0u; k < VECTORS_PER_LANE; k++) {
      let i = base + k;
      var dy_eff = vec4f(partials_dy[i]);
      if (RELU) { dy_eff = effective_gradient(dy_eff, vec4f(partials_y[i])); }
      sums[k] = gradient_sums_add(sums[k], dy_eff, vec4f(partials_x[i]) - means[k]);
    }
  }
  store_gradient_sums(lane, sums);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn gradient_partials_scalar(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let lane = lane_at(gid, groups);
  if (lane.first_row == ROWS) { return; }
  let means = lane_means(lane);
  var sums: array<GradientSums, MAX_VECTORS_PER_LANE>;
  for (var row = lane.first_row; row < lane.end_row; row++) {
    for (var k = 0u; k < VECTORS_PER_LANE; k++) {
      let i = scalar_offsets(row * CHANNELS, lane.first_vector + k);
      let x = vec4f(vec4<act>(partials_x_scalar[i.x], partials_x_scalar[i.y], partials_x_scalar[i.z], partials_x_scalar[i.w]));
      var dy_eff = vec4f(vec4<act>(partials_dy_scalar[i.x], partials_dy_scalar[i.y], partials_dy_scalar[i.z], partials_dy_scalar[i.w]));
      if (RELU) {
        let y = vec4f(vec4<act>(partials_y_scalar[i.x], partials_y_scalar[i.y], partials_y_scalar[i.z], partials_y_scalar[i.w]));
        dy_eff = effective_gradient(dy_eff, y);
      }
      sums[k] = gradient_sums_add(sums[k], dy_eff, x - means[k]);
    }
  }
  store_gradient_sums(lane, sums);
}

// ---- gradient_combine ------------------------------------------------------------------------

@group(0) @binding(0) var<storage, read_write> gradient_gamma: array<f32>;
@group(0) @binding(1) var<storage, read_write> gradient_mean: array<f32>;
@group(0) @binding(2) var<storage, read_write> gradient_inv_std: array<f32>;
@group(0) @binding(3) var<storage, read_write> gradient_workspace: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> gradient_dgamma: array<f32>;
@group(0) @binding(5) var<storage, read_write> gradient_dbeta: array<f32>;

fn block_gradient_sums(block: u32, v: u32) -> GradientSums {
  let index = partial_index(block, v);
  return GradientSums(gradient_workspace[index], gradient_workspace[index + 1u]);
}

fn gradient_sums_merge(a: GradientSums, b: GradientSums) -> GradientSums {
  return GradientSums(a.dy + b.dy, a.dy_centred + b.dy_centred);
}

// Writes dgamma and dbeta of channel vector v and the coefficients input_gradient reads.
fn finish_gradients(v: u32, total: GradientSums) {
  let c = scalar_offsets(0u, v);
  let gamma = vec4f(gradient_gamma[c.x], gradient_gamma[c.y], gradient_gamma[c.z], gradient_gamma[c.w]);
  let mean = vec4f(gradient_mean[c.x], gradient_mean[c.y], gradient_mean[c.z], gradient_mean[c.w]);
  let inv_std = vec4f(gradient_inv_std[c.x], gradient_inv_std[c.y], gradient_inv_std[c.z], gradient_inv_std[c.w]);
  let dgamma = total.dy_centred * inv_std;
  for (var component = 0u; component < 4u; component++) {
    if (!is_real_channel(v, component)) { break; }
    gradient_dgamma[4u * v + component] = dgamma[component];
    gradient_dbeta[4u * v + component] = total.dy[component];
  }
  let a = gamma * inv_std;
  let base = COEFFICIENTS_PER_VECTOR * v;
  gradient_workspace[base] = mean;
  gradient_workspace[base + 1u] = a;
  gradient_workspace[base + 2u] = -a * inv_std * dgamma / f32(ROWS);
  gradient_workspace[base + 3u] = -a * total.dy / f32(ROWS);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn gradient_combine(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let v = linear_index(gid, groups);
  if (v >= VECTORS_PER_ROW) { return; }
  var total = GradientSums(vec4f(0.0), vec4f(0.0));
  for (var block = 0u; block < ROW_BLOCKS; block++) {
    total = gradient_sums_merge(total, block_gradient_sums(block, v));
  }
  finish_gradients(v, total);
}

var<workgroup> gradient_tree: array<GradientSums, WORKGROUP_SIZE>;

// One workgroup per channel vector. The same tree as statistics_combine_tree over another
// struct and merge: WGSL has no generics to share it.
@compute @workgroup_size(WORKGROUP_SIZE)
fn gradient_combine_tree(@builtin(workgroup_id) workgroup: vec3u, @builtin(local_invocation_index) t: u32) {
  let v = workgroup.x;
  var total = GradientSums(vec4f(0.0), vec4f(0.0));
  for (var block = t; block < ROW_BLOCKS; block += WORKGROUP_SIZE) {
    total = gradient_sums_merge(total, block_gradient_sums(block, v));
  }
  gradient_tree[t] = total;
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    workgroupBarrier();
    if (t < stride) { gradient_tree[t] = gradient_sums_merge(gradient_tree[t], gradient_tree[t + stride]); }
  }
  if (t == 0u) { finish_gradients(v, gradient_tree[0]); }
}

// ---- input_gradient --------------------------------------------------------------------------

@group(0) @binding(0) var<storage, read> input_x: array<vec4<act>>;
@group(0) @binding(0) var<storage, read> input_x_scalar: array<act>;
// Without RELU the op binds x here; it is never read.
@group(0) @binding(1) var<storage, read> input_y: array<vec4<act>>;
@group(0) @binding(1) var<storage, read> input_y_scalar: array<act>;
@group(0) @binding(2) var<storage, read> input_dy: array<vec4<act>>;
@group(0) @binding(2) var<storage, read> input_dy_scalar: array<act>;
@group(0) @binding(3) var<storage, read> input_workspace: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> input_dx: array<vec4<act>>;
@group(0) @binding(4) var<storage, read_write> input_dx_scalar: array<act>;
@group(0) @binding(5) var<storage, read_write> input_dresidual: array<vec4<act>>;
@group(0) @binding(5) var<storage, read_write> input_dresidual_scalar: array<act>;

fn lane_coefficients(lane: Lane) -> array<InputGradientCoefficients, MAX_VECTORS_PER_LANE> {
  var coefficients: array<InputGradientCoefficients, MAX_VECTORS_PER_LANE>;
  for (var k = 0u; k < VECTORS_PER_LANE; k++) {
    let base = COEFFICIENTS_PER_VECTOR * (lane.first_vector + k);
    coefficients[k] = InputGradientCoefficients(
      input_workspace[base], input_workspace[base + 1u], input_workspace[base + 2u], input_workspace[base + 3u],
    );
  }
  return coefficients;
}

// dy_eff and dx at vector index i of the vec4 view.
struct InputGradient {
  dy_eff: vec4f,
  dx: vec4f,
}

fn input_gradient_vector(k: InputGradientCoefficients, i: u32) -> InputGradient {
  var dy_eff = vec4f(input_dy[i]);
  if (RELU) { dy_eff = effective_gradient(dy_eff, vec4f(input_y[i])); }
  return InputGradient(dy_eff, input_gradient_at(k, dy_eff, vec4f(input_x[i])));
}

// dy_eff and dx at the scalar indices i of the scalar view.
fn input_gradient_scalars(k: InputGradientCoefficients, i: vec4u) -> InputGradient {
  let x = vec4f(vec4<act>(input_x_scalar[i.x], input_x_scalar[i.y], input_x_scalar[i.z], input_x_scalar[i.w]));
  var dy_eff = vec4f(vec4<act>(input_dy_scalar[i.x], input_dy_scalar[i.y], input_dy_scalar[i.z], input_dy_scalar[i.w]));
  if (RELU) {
    let y = vec4f(vec4<act>(input_y_scalar[i.x], input_y_scalar[i.y], input_y_scalar[i.z], input_y_scalar[i.w]));
    dy_eff = effective_gradient(dy_eff, y);
  }
  return InputGradient(dy_eff, input_gradient_at(k, dy_eff, x));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn input_gradient(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let lane = lane_at(gid, groups);
  if (lane.first_row == ROWS) { return; }
  let coefficients = lane_coefficients(lane);
  for (var row = lane.first_row; row < lane.end_row; row++) {
    let base = row * VECTORS_PER_ROW + lane.first_vector;
    for (var k = 0u; k < VECTORS_PER_LANE; k++) {
      let gradient = input_gradient_vector(coefficients[k], base + k);
      input_dx[base + k] = vec4<act>(gradient.dx);
      if (RESIDUAL) { input_dresidual[base + k] = vec4<act>(gradient.dy_eff); }
    }
  }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn input_gradient_scalar(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let lane = lane_at(gid, groups);
  if (lane.first_row == ROWS) { return; }
  let coefficients = lane_coefficients(lane);
  for (var row = lane.first_row; row < lane.end_row; row++) {
    for (var k = 0u; k < VECTORS_PER_LANE; k++) {
      let v = lane.first_vector + k;
      let i = scalar_offsets(row * CHANNELS, v);
      let gradient = input_gradient_scalars(coefficients[k], i);
      for (var component = 0u; component < 4u; component++) {
        if (is_real_channel(v, component)) {
          input_dx_scalar[i[component]] = act(gradient.dx[component]);
          if (RESIDUAL) { input_dresidual_scalar[i[component]] = act(gradient.dy_eff[component]); }
        }
      }
    }
  }
}

// ---- The data passes reading textures ----------------------------------------------------------
//
// statistics_partials, normalize, gradient_partials and input_gradient as above (vec4 bindings),
// but every activation they read comes from an rgba32float texture that src/ops/staging.ts fills
// first (a copy command for f32), bound as a read-only storage texture: on lavapipe a texel fetch
// is one gather for all SIMD lanes, a storage load a scalar loop over them, about 5x dearer without
// AVX-512 (bench/README.md, "CPU adapters"), and a storage texture's load is inlined where a
// sampled one is a call (shaders/README.md, "Bindings"). What they write stays in storage buffers.
// Texel t is vector t of the vec4 view, at (t & (2^ROW_SHIFT - 1), t >> ROW_SHIFT): every
// activation of one op has one shape, so one texture extent (textureExtent in src/gpu/tensor.ts).

override ROW_SHIFT: u32;

// With DY_TERMS = 2 the backward passes take dy as the sum of two tensors, read from two textures:
// the gradient of a block's input, which reached it through both branches, summed where it is
// read instead of by an add pass of its own (src/ops/batchnorm.ts).
override DY_TERMS: u32 = 1u;

// The four passes bind x at 0; at 1 normalize's residual or the backward's y (the ReLU mask; x
// fills it where the pass reads neither); at 2 the backward's dy; the backward's second term of dy
// after their other bindings (dy fills it with one term).
@group(0) @binding(0) var x_texels: texture_storage_2d<rgba32float, read>;
@group(0) @binding(1) var y_or_residual_texels: texture_storage_2d<rgba32float, read>;
@group(0) @binding(2) var dy_texels: texture_storage_2d<rgba32float, read>;
@group(0) @binding(5) var partials_dy_second_texels: texture_storage_2d<rgba32float, read>;
@group(0) @binding(6) var input_dy_second_texels: texture_storage_2d<rgba32float, read>;

fn texel_at(i: u32) -> vec2u {
  return vec2u(i & ((1u << ROW_SHIFT) - 1u), i >> ROW_SHIFT);
}

fn x_texel(i: u32) -> vec4f {
  return textureLoad(x_texels, texel_at(i));
}

// dy (plus `dy_second`, its second term or zero) behind the ReLU mask, at vector i.
fn effective_gradient_texel(i: u32, dy_second: vec4f) -> vec4f {
  let dy = textureLoad(dy_texels, texel_at(i)) + dy_second;
  if (RELU) { return effective_gradient(dy, textureLoad(y_or_residual_texels, texel_at(i))); }
  return dy;
}

// The second term of dy at vector i, zero with one term; one function per pass, as WGSL cannot
// pass a texture binding as an argument.
fn partials_dy_second(i: u32) -> vec4f {
  if (DY_TERMS == 2u) { return textureLoad(partials_dy_second_texels, texel_at(i)); }
  return vec4f(0.0);
}

fn input_dy_second(i: u32) -> vec4f {
  if (DY_TERMS == 2u) { return textureLoad(input_dy_second_texels, texel_at(i)); }
  return vec4f(0.0);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn statistics_partials_texture(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let lane = lane_at(gid, groups);
  if (lane.first_row == ROWS) { return; }
  var moments: array<Moments, MAX_VECTORS_PER_LANE>;
  for (var row = lane.first_row; row < lane.end_row; row++) {
    let base = row * VECTORS_PER_ROW + lane.first_vector;
    for (var k = 0u; k < VECTORS_PER_LANE; k++) {
      moments[k] = moments_add(moments[k], x_texel(base + k));
    }
  }
  store_moments(lane, moments);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn normalize_texture(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let lane = lane_at(gid, groups);
  if (lane.first_row == ROWS) { return; }
  let affines = lane_affines(lane);
  for (var row = lane.first_row; row < lane.end_row; row++) {
    let base = row * VECTORS_PER_ROW + lane.first_vector;
    for (var k = 0u; k < VECTORS_PER_LANE; k++) {
      let i = base + k;
      var residual = vec4f(0.0);
      if (RESIDUAL) { residual = textureLoad(y_or_residual_texels, texel_at(i)); }
      normalize_y[i] = vec4<act>(normalized(affines[k], x_texel(i), residual));
    }
  }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn gradient_partials_texture(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let lane = lane_at(gid, groups);
  if (lane.first_row == ROWS) { return; }
  let means = lane_means(lane);
  var sums: array<GradientSums, MAX_VECTORS_PER_LANE>;
  for (var row = lane.first_row; row < lane.end_row; row++) {
    let base = row * VECTORS_PER_ROW + lane.first_vector;
    for (var k = 0u; k < VECTORS_PER_LANE; k++) {
      let i = base + k;
      let dy_eff = effective_gradient_texel(i, partials_dy_second(i));
      sums[k] = gradient_sums_add(sums[k], dy_eff, x_texel(i) - means[k]);
    }
  }
  store_gradient_sums(lane, sums);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn input_gradient_texture(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let lane = lane_at(gid, groups);
  if (lane.first_row == ROWS) { return; }
  let coefficients = lane_coefficients(lane);
  for (var row = lane.first_row; row < lane.end_row; row++) {
    let base = row * VECTORS_PER_ROW + lane.first_vector;
    for (var k = 0u; k < VECTORS_PER_LANE; k++) {
      let i = base + k;
      let dy_eff = effective_gradient_texel(i, input_dy_second(i));
      input_dx[i] = vec4<act>(input_gradient_at(coefficients[k], dy_eff, x_texel(i)));
      if (RESIDUAL) { input_dresidual[i] = vec4<act>(dy_eff); }
    }
  }
}
