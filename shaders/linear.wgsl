// Fully connected layer, y = SCALE * (x · Wᵀ + b): PyTorch's nn.Linear, times a constant (ResNet-9's
// head is fc(x) * 0.125; the default 1 is nn.Linear itself).
//   x: [BATCH, IN], weight: [OUT, IN], bias: [OUT], y: [BATCH, OUT]
//   forward:         y[n, o]  = SCALE * (bias[o] + sum_i x[n, i] * weight[o, i])   one per (n, o)
//   backward_input:  dx[n, i] = SCALE * sum_o dy[n, o] * weight[o, i]              one per (n, i)
//   backward_params: dweight[o, i] = SCALE * sum_n dy[n, o] * x[n, i]              one per (o, i)
//                    dbias[o] = SCALE * sum_n dy[n, o]                by the invocations with i = 0
// The classifier head is tiny (512 x 10), so plain dot products serve. SCALE multiplies each sum
// once, after it: for a power of two (0.125) that is exact, the same as scaling every term, and
// with SCALE = 1 the results are bit for bit those of the unscaled layer.

override WORKGROUP_SIZE: u32;
override BATCH: u32;
override IN: u32;
override OUT: u32;
override SCALE: f32 = 1.0;

@group(0) @binding(0) var<storage, read> forward_x: array<f32>;
@group(0) @binding(1) var<storage, read> forward_weight: array<f32>;
@group(0) @binding(2) var<storage, read> forward_bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> forward_y: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn forward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let index = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  if (index >= BATCH * OUT) { return; }
  let n = index / OUT;
  let o = index % OUT;
  var sum = forward_bias[o];
  for (var i = 0u; i < IN; i++) {
    sum += forward_x[n * IN + i] * forward_weight[o * IN + i];
  }
  forward_y[index] = SCALE * sum;
}

@group(0) @binding(0) var<storage, read> input_dy: array<f32>;
@group(0) @binding(1) var<storage, read> input_weight: array<f32>;
@group(0) @binding(2) var<storage, read_write> input_dx: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn backward_input(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let index = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  if (index >= BATCH * IN) { return; }
  let n = index / IN;
  let i = index % IN;
  var sum = 0.0;
  for (var o = 0u; o < OUT; o++) {
    sum += input_dy[n * OUT + o] * input_weight[o * IN + i];
  }
  input_dx[index] = SCALE * sum;
}

@group(0) @binding(0) var<storage, read> params_x: array<f32>;
@group(0) @binding(1) var<storage, read> params_dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> params_dweight: array<f32>;
@group(0) @binding(3) var<storage, read_write> params_dbias: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn backward_params(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let index = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  if (index >= OUT * IN) { return; }
  let o = index / IN;
  let i = index % IN;
  var sum = 0.0;
  var bias_sum = 0.0;
  for (var n = 0u; n < BATCH; n++) {
    let dy = params_dy[n * OUT + o];
    sum += dy * params_x[n * IN + i];
    bias_sum += dy;
  }
  params_dweight[index] = SCALE * sum;
  if (i == 0u) { params_dbias[o] = SCALE * bias_sum; }
}
