// How a convolution kernel stores its activation outputs where a stored channel count is not a
// multiple of 4 (the stem's 3 channels, odd widths, test shapes), and in conv2d_blocked's: one
// element per store. conv2d_stores_vec4.wgsl says how the kernels call it.
alias stored_unit = act;
const UNIT_CHANNELS = 1u;

fn unit_of(v: vec4f, j: u32) -> stored_unit {
  return stored_unit(v[j]);
}
