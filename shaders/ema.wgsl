// Exponential moving average of weights (src/ops/ema.ts), updated in place after each optimizer
// step:
//   update:      average[i] = DECAY·average[i] + (1 − DECAY)·value[i], one element per invocation
//                (any element count)
//   update_vec4: the same, four elements per invocation, for counts that are a multiple of 4 (the
//                parameter and running-statistics arenas: their tensors start at multiples of 256
//                bytes); one vec4 load costs about what one f32 load does on CPU adapters.
// Both cover their whole `average` binding, f32 always (parameters and statistics are f32 in
// either precision). There is no backward: the average is not trained.
//
// 1 − DECAY is ONE_MINUS_DECAY, computed by the host in f64 and rounded once, as PyTorch computes
// `average * decay + (1 - decay) * value` with Python floats: 1 − f32(0.999) in f32 is off by
// 1.3e-5 relative. With decay 0 the average becomes the value exactly.

override WORKGROUP_SIZE: u32;
override DECAY: f32;
override ONE_MINUS_DECAY: f32;

@group(0) @binding(0) var<storage, read> value: array<f32>;
@group(0) @binding(1) var<storage, read_write> average: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn update(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  if (i >= arrayLength(&average)) { return; }
  average[i] = DECAY * average[i] + ONE_MINUS_DECAY * value[i];
}

@group(0) @binding(0) var<storage, read> value4: array<vec4f>;
@group(0) @binding(1) var<storage, read_write> average4: array<vec4f>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn update_vec4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  if (i >= arrayLength(&average4)) { return; }
  average4[i] = DECAY * average4[i] + ONE_MINUS_DECAY * value4[i];
}
