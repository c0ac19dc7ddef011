// Optimizer updates over the flat parameter arena, with the semantics of torch.optim.
//   params, grads and the state buffers share one layout: element i of each belongs to the same
//   parameter. Padding between tensors has params, grads and state 0, and every update below
//   maps (p, g, state) = 0 to 0, weight decay included, so padding stays 0.
//   Each invocation updates 4 consecutive elements (one vec4): arena tensors start at multiples
//   of 256 bytes, so every binding holds whole vec4s.
//
//   adam: torch.optim.Adam (bias-corrected; weight decay added to the gradient), or with
//         DECOUPLED_WEIGHT_DECAY torch.optim.AdamW (the parameter decays before the update):
//           g = g + wd·p (Adam)            p = p·(1 − lr·wd) (AdamW)
//           m = m + (1 − β1)·(g − m)       v = β2·v + (1 − β2)·g²
//           p = p − lr/(1 − β1^t) · m / (sqrt(v) / sqrt(1 − β2^t) + eps)
//   sgd: torch.optim.SGD with momentum 0: g = g + wd·p; p = p − lr·g
//   sgd_momentum: torch.optim.SGD with momentum μ > 0 and dampening 0:
//           g = g + wd·p; buf = g on the first step, else μ·buf + g
//           nesterov: g = g + μ·buf, else g = buf; p = p − lr·g
//         The buffer starts at 0, so μ·buf + g is exactly g on the first step: no flag needed.
//   sgd and sgd_momentum with DECOUPLED_WEIGHT_DECAY: the decay as AdamW's instead, which
//         torch.optim.SGD lacks: p = p·(1 − lr·wd) first, and the gradient (so the momentum
//         buffer) never sees wd. The decay then follows the scheduled lr, and is not amplified
//         by 1/(1 − μ) through the momentum as the coupled penalty is.
//
// Dynamic loss scaling (f16 training; src/train/loss_scale.ts), with torch.cuda.amp.GradScaler's
// semantics, all on the GPU so that no step waits for a readback. The gradients arrive multiplied
// by the scale (the loss kernel scaled dlogits). Per step:
//   find_non_finite   over the gradient arena: sets found_inf if any value is Inf or NaN
//   adam / sgd / sgd_momentum with LOSS_SCALING: skip the whole update if found_inf (parameters
//                     and state untouched), else update with g / scale; Adam's bias corrections
//                     come from applied_steps + 1, the steps actually taken
//   update_scale      one invocation: on found_inf the scale backs off and the step counts as
//                     skipped; otherwise the step counts as applied, and after GROWTH_INTERVAL good
//                     steps in a row the scale grows (if the grown scale is finite). Clears found_inf.
//
// Hyper-parameters fixed for a run are overrides; what changes per step (the scheduled lr, the
// bias corrections) is a uniform the host rewrites before each step's submit, so no pipeline or
// bind group is rebuilt per step. The arithmetic follows PyTorch's
// operation order (lerp for m, scalars folded on the host in f64) so that f32 results match
// PyTorch's to rounding.

override WORKGROUP_SIZE: u32;
override WEIGHT_DECAY: f32 = 0.0;
override DECOUPLED_WEIGHT_DECAY: bool = false;
override BETA2: f32 = 0.999;
// 1 − β computed by the host in f64: 1 − f32(0.999) in f32 is off by 1.3e-5 relative.
override ONE_MINUS_BETA1: f32 = 0.1;
override ONE_MINUS_BETA2: f32 = 0.001;
override EPS: f32 = 1e-8;
override MOMENTUM: f32 = 0.0;
override NESTEROV: bool = false;
// Without it the optimizer binds a stand-in at `loss_scale`, never read.
override LOSS_SCALING: bool = false;
// ln β1 and ln β2 in f64 from the host, for the bias corrections computed on the GPU.
override LN_BETA1: f32 = 0.0;
override LN_BETA2: f32 = 0.0;
override GROWTH_FACTOR: f32 = 2.0;
override BACKOFF_FACTOR: f32 = 0.5;
override GROWTH_INTERVAL: u32 = 2000u;

struct AdamStep {
  // lr / (1 − β1^t); with LOSS_SCALING computed on the GPU instead
  step_size: f32,
  // sqrt(1 − β2^t); with LOSS_SCALING computed on the GPU instead
  bias_correction2_sqrt: f32,
  // AdamW: 1 − lr·wd, by which the parameter decays before the update. Adam: 1, unused.
  param_decay: f32,
  lr: f32,
}

// The layout of LOSS_SCALE_SHAPE (src/ops/softmax_cross_entropy.ts).
struct LossScale {
  scale: f32,
  // Good steps since the scale last changed.
  growth_tracker: u32,
  found_inf: u32,
  skipped_steps: u32,
  applied_steps: u32,
}

// find_non_finite's view: invocations flag an overflow concurrently.
struct LossScaleFlag {
  scale: f32,
  growth_tracker: u32,
  found_inf: atomic<u32>,
  skipped_steps: u32,
  applied_steps: u32,
}

struct SgdStep {
  lr: f32,
  // With DECOUPLED_WEIGHT_DECAY: 1 − lr·wd, folded in f64 on the host. Otherwise 1, unused.
  param_decay: f32,
}

@group(0) @binding(0) var<storage, read> grads: array<vec4f>;
@group(0) @binding(1) var<uniform> adam_step: AdamStep;
@group(0) @binding(1) var<uniform> sgd_step: SgdStep;
@group(0) @binding(2) var<storage, read> loss_scale: LossScale;
@group(0) @binding(3) var<storage, read_write> params: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> exp_avg: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> momentum_buffer: array<vec4f>;
@group(0) @binding(5) var<storage, read_write> exp_avg_sq: array<vec4f>;

// L2 weight decay as torch.optim applies it, added to the gradient; skipped when 0 as PyTorch
// does (the branch folds away at pipeline creation).
fn with_weight_decay(grad: vec4f, param: vec4f) -> vec4f {
  if (WEIGHT_DECAY != 0.0) { return grad + WEIGHT_DECAY * param; }
  return grad;
}

fn vec4_index(gid: vec3u, groups: vec3u) -> u32 {
  return gid.x + gid.y * groups.x * WORKGROUP_SIZE;
}

// Whether this step's update is skipped: its scaled gradients overflowed.
fn step_skipped() -> bool {
  return LOSS_SCALING && loss_scale.found_inf != 0u;
}

// The gradient, unscaled (the scale is a power of two, so this is exact unless it underflows).
fn gradient(i: u32) -> vec4f {
  if (LOSS_SCALING) { return grads[i] * (1.0 / loss_scale.scale); }
  return grads[i];
}

// 1 − β^t from ln β: 1 − exp(x) cancels catastrophically for small |x| (β2 = 0.999 at t = 1 would
// keep 4 digits), so there it is −expm1(x) by its Taylor series, whose terms fall by |x|/k.
fn one_minus_power(ln_beta: f32, t: f32) -> f32 {
  let x = t * ln_beta;
  if (x < -0.5) { return 1.0 - exp(x); }
  var term = -x;
  var sum = 0.0;
  for (var k = 2.0; k <= 12.0; k += 1.0) {
    sum += term;
    term *= x / k;
  }
  return sum;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn adam(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = vec4_index(gid, groups);
  if (i >= arrayLength(&params) || step_skipped()) { return; }
  var param = params[i];
  var grad = gradient(i);
  var step_size = adam_step.step_size;
  var bias_correction2_sqrt = adam_step.bias_correction2_sqrt;
  if (LOSS_SCALING) {
    let t = f32(loss_scale.applied_steps + 1u);
    step_size = adam_step.lr / one_minus_power(LN_BETA1, t);
    bias_correction2_sqrt = sqrt(one_minus_power(LN_BETA2, t));
  }
  if (DECOUPLED_WEIGHT_DECAY) {
    param *= adam_step.param_decay;
  } else {
    grad = with_weight_decay(grad, param);
  }
  let m = exp_avg[i] + ONE_MINUS_BETA1 * (grad - exp_avg[i]);
  let v = BETA2 * exp_avg_sq[i] + ONE_MINUS_BETA2 * grad * grad;
  exp_avg[i] = m;
  exp_avg_sq[i] = v;
  let denominator = sqrt(v) / bias_correction2_sqrt + EPS;
  params[i] = param - step_size * (m / denominator);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn sgd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = vec4_index(gid, groups);
  if (i >= arrayLength(&params) || step_skipped()) { return; }
  var param = params[i];
  var grad = gradient(i);
  if (DECOUPLED_WEIGHT_DECAY) {
    param *= sgd_step.param_decay;
  } else {
    grad = with_weight_decay(grad, param);
  }
  params[i] = param - sgd_step.lr * grad;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn sgd_momentum(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = vec4_index(gid, groups);
  if (i >= arrayLength(&params) || step_skipped()) { return; }
  var param = params[i];
  var grad = gradient(i);
  if (DECOUPLED_WEIGHT_DECAY) {
    param *= sgd_step.param_decay;
  } else {
    grad = with_weight_decay(grad, param);
  }
  let buf = MOMENTUM * momentum_buffer[i] + grad;
  momentum_buffer[i] = buf;
  let direction = select(buf, grad + MOMENTUM * buf, NESTEROV);
  params[i] = param - sgd_step.lr * direction;
}

// ---- Loss scaling ------------------------------------------------------------------------------

@group(0) @binding(0) var<storage, read> check_grads: array<vec4u>;
@group(0) @binding(1) var<storage, read_write> check_loss_scale: LossScaleFlag;

// Inf and NaN by their bits: compilers may assume float values finite and fold `x != x` away.
fn non_finite(bits: vec4u) -> bool {
  let exponent = vec4u(0x7f800000u);
  return any((bits & exponent) == exponent);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn find_non_finite(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = vec4_index(gid, groups);
  if (i >= arrayLength(&check_grads)) { return; }
  if (non_finite(check_grads[i])) { atomicStore(&check_loss_scale.found_inf, 1u); }
}

@group(0) @binding(0) var<storage, read_write> update_loss_scale: LossScale;

// Dispatched as a single invocation (a workgroup of size 1).
@compute @workgroup_size(WORKGROUP_SIZE)
fn update_scale() {
  let state = update_loss_scale;
  var next = LossScale(state.scale, state.growth_tracker + 1u, 0u, state.skipped_steps, state.applied_steps + 1u);
  if (state.found_inf != 0u) {
    next = LossScale(state.scale * BACKOFF_FACTOR, 0u, 0u, state.skipped_steps + 1u, state.applied_steps);
  } else if (next.growth_tracker == GROWTH_INTERVAL) {
    let grown = state.scale * GROWTH_FACTOR;
    // As GradScaler: a scale that would overflow stays, and the count starts again.
    if (!non_finite(vec4u(bitcast<u32>(grown)))) { next.scale = grown; }
    next.growth_tracker = 0u;
  }
  update_loss_scale = next;
}
