// FMA loop: the yardstick for an adapter's arithmetic peak (bench/step_profile.ts). Each invocation
// runs ITERATIONS rounds of x = fma(x, a, b) on 8 independent vec4s: 32 independent chains,
// enough to keep both FMA units of a CPU core (llvmpipe runs 8 invocations per SIMD
// register) or a GPU's pipelines busy despite each FMA's latency. The accumulators start from the
// invocation's element of `sums` and a and b come from a buffer, so no compiler can fold the loop;
// their sum is written back so that none of it is dead. FLOPs: invocations x ITERATIONS x 8 x 4
// lanes x 2. The grid follows README.md's linear convention.

override WORKGROUP_SIZE: u32;
override ITERATIONS: u32;

// [a, b].
@group(0) @binding(0) var<storage, read> coefficients: array<vec4f, 2>;
@group(0) @binding(1) var<storage, read_write> sums: array<vec4f>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn fma_loop(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let invocation = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  if (invocation >= arrayLength(&sums)) {
    return;
  }
  let a = coefficients[0];
  let b = coefficients[1];
  let seed = sums[invocation];
  // Written out, not an array: llvmpipe keeps accumulators in registers only when every index is
  // a constant (bench/README.md, "What was tried").
  var x0 = seed;
  var x1 = seed + 1.0;
  var x2 = seed + 2.0;
  var x3 = seed + 3.0;
  var x4 = seed + 4.0;
  var x5 = seed + 5.0;
  var x6 = seed + 6.0;
  var x7 = seed + 7.0;
  for (var i = 0u; i < ITERATIONS; i++) {
    x0 = fma(x0, a, b);
    x1 = fma(x1, a, b);
    x2 = fma(x2, a, b);
    x3 = fma(x3, a, b);
    x4 = fma(x4, a, b);
    x5 = fma(x5, a, b);
    x6 = fma(x6, a, b);
    x7 = fma(x7, a, b);
  }
  sums[invocation] = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7));
}
