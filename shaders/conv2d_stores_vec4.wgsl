// How a convolution kernel stores its activation outputs (conv2d_blocked_math.wgsl's y and dx,
// conv2d_winograd.wgsl's y and dx), where the stored channel count is a multiple of 4: four
// channels in one vec4 store. src/shaders.ts joins this file, or conv2d_stores_elements.wgsl for
// other channel counts, after the kernel's other files. The output bindings are
// `array<stored_unit>`, and channels c..c+3 of a row at element `index` are stored as
//   for (var j = 0u; j < 4u; j += UNIT_CHANNELS) {
//     if (c + j < CHANNELS) { output[(index + j) / UNIT_CHANNELS] = unit_of(v, j); }
//   }
// Why: on llvmpipe every store statement is a loop over the SIMD lanes, so one vec4 store costs
// much less than four element stores: with AVX-512 code the direct forward and dx passes ran
// 1.01-1.18x faster with it (the 1x1 shortcuts 1.1-1.5x) and the Winograd output transform 1.2x;
// the training step 1.03x with AVX-512 code, 1.14x with AVX2 code (bench/README.md, "vec4 stores").
alias stored_unit = vec4<act>;
const UNIT_CHANNELS = 4u;

fn unit_of(v: vec4f, j: u32) -> stored_unit {
  return stored_unit(v);
}
