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

struct AdamStep {
  // lr / (1 − β1^t)
  step_size: f32,
  // sqrt(1 − β2^t)
  bias_correction2_sqrt: f32,
  // AdamW: 1 − lr·wd, by which the parameter decays before the update. Adam: 1, unused.
  param_decay: f32,
}

struct SgdStep {
  lr: f32,
}

@group(0) @binding(0) var<storage, read> grads: array<vec4f>;
@group(0) @binding(1) var<uniform> adam_step: AdamStep;
@group(0) @binding(1) var<uniform> sgd_step: SgdStep;
@group(0) @binding(2) var<storage, read_write> params: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> exp_avg: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> momentum_buffer: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> exp_avg_sq: array<vec4f>;

// L2 weight decay as torch.optim applies it, added to the gradient; skipped when 0 as PyTorch
// does (the branch folds away at pipeline creation).
fn with_weight_decay(grad: vec4f, param: vec4f) -> vec4f {
  if (WEIGHT_DECAY != 0.0) { return grad + WEIGHT_DECAY * param; }
  return grad;
}

fn vec4_index(gid: vec3u, groups: vec3u) -> u32 {
  return gid.x + gid.y * groups.x * WORKGROUP_SIZE;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn adam(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = vec4_index(gid, groups);
  if (i >= arrayLength(&params)) { return; }
  var param = params[i];
  var grad = grads[i];
  if (DECOUPLED_WEIGHT_DECAY) {
    param *= adam_step.param_decay;
  } else {
    grad = with_weight_decay(grad, param);
  }
  let m = exp_avg[i] + ONE_MINUS_BETA1 * (grad - exp_avg[i]);
  let v = BETA2 * exp_avg_sq[i] + ONE_MINUS_BETA2 * grad * grad;
  exp_avg[i] = m;
  exp_avg_sq[i] = v;
  let denominator = sqrt(v) / adam_step.bias_correction2_sqrt + EPS;
  params[i] = param - adam_step.step_size * (m / denominator);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn sgd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = vec4_index(gid, groups);
  if (i >= arrayLength(&params)) { return; }
  let param = params[i];
  params[i] = param - sgd_step.lr * with_weight_decay(grads[i], param);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn sgd_momentum(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = vec4_index(gid, groups);
  if (i >= arrayLength(&params)) { return; }
  let param = params[i];
  let grad = with_weight_decay(grads[i], param);
  let buf = MOMENTUM * momentum_buffer[i] + grad;
  momentum_buffer[i] = buf;
  let direction = select(buf, grad + MOMENTUM * buf, NESTEROV);
  params[i] = param - sgd_step.lr * direction;
}
