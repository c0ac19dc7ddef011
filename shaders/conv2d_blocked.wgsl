// The blocked convolution's storage-buffer variant: its bindings and loads. The arithmetic, the
// shapes and why they are blocked so are in conv2d_blocked_math.wgsl, which src/shaders.ts puts
// before this file to make the kernel conv2d_blocked:
//   forward:         x (two views), weight (two views) -> y
//   backward_input:  dy (two views), weight (two views) -> dx
//   backward_weight: x (two views), dy (two views)     -> dweight or partial sums
// x and dy hold `act` elements (conv2d_blocked_math.wgsl declares the alias): the loads widen
// them to f32.

// True when IN_C and OUT_C are multiples of 4: channel vectors are read as aligned vec4s through
// the *_vec views. Otherwise (the 3-channel stem, odd test shapes) as four masked scalars
// through the *_flat views. Each input is bound twice, once per view, and the override removes
// the loads of the unused one; read-only bindings may alias.
override VECTORIZED: bool;

// Components c..c+3 that exist in a vector of `count` channels (the scalar path's tail).
fn channel_mask(c: u32, count: u32) -> vec4<bool> {
  return vec4u(c) + LANE < vec4u(count);
}

@group(0) @binding(0) var<storage, read> x_vec: array<vec4<act>>;
@group(0) @binding(1) var<storage, read> x_flat: array<act>;
@group(0) @binding(2) var<storage, read> weight_vec: array<vec4f>;
@group(0) @binding(3) var<storage, read> weight_flat: array<f32>;

// Channels c..c+3 of the x row at `base`, zero past IN_C.
fn load_x(base: u32, c: u32) -> vec4f {
  let i = base + c;
  if (VECTORIZED) { return vec4f(x_vec[i / 4u]); }
  let v = vec4f(vec4(x_flat[i], x_flat[i + 1u], x_flat[i + 2u], x_flat[i + 3u]));
  return select(vec4f(), v, channel_mask(c, IN_C));
}

// weight[o, tap, c..c+3], zero past IN_C.
fn load_weight(o: u32, tap: u32, c: u32) -> vec4f {
  let i = weight_index(o, tap, c);
  if (VECTORIZED) { return weight_vec[i / 4u]; }
  let v = vec4f(weight_flat[i], weight_flat[i + 1u], weight_flat[i + 2u], weight_flat[i + 3u]);
  return select(vec4f(), v, channel_mask(c, IN_C));
}

// ---- forward's output ----
@group(0) @binding(4) var<storage, read_write> forward_y: array<stored_unit>;

// ---- backward_input's dy (two views) and output ----
@group(0) @binding(0) var<storage, read> input_dy_vec: array<vec4<act>>;
@group(0) @binding(1) var<storage, read> input_dy_flat: array<act>;
@group(0) @binding(4) var<storage, read_write> input_dx: array<stored_unit>;

// Output channels o..o+3 of the dy row at `base`, zero past OUT_C (o is the reduction here).
fn load_input_dy(base: u32, o: u32) -> vec4f {
  let i = base + o;
  if (VECTORIZED) { return vec4f(input_dy_vec[i / 4u]); }
  let v = vec4f(vec4(
    input_dy_flat[i],
    input_dy_flat[i + 1u],
    input_dy_flat[i + 2u],
    input_dy_flat[i + 3u],
  ));
  return select(vec4f(), v, channel_mask(o, OUT_C));
}

// ---- backward_weight's dy (two views) and output ----
@group(0) @binding(2) var<storage, read> weight_dy_vec: array<vec4<act>>;
@group(0) @binding(3) var<storage, read> weight_dy_flat: array<act>;
// [ranges, OUT_C, KERNEL, KERNEL, IN_C]
@group(0) @binding(4) var<storage, read_write> weight_partial: array<f32>;

// Output channels o..o+3 of output pixel p's dy row (past OUT_C: ignored by the caller).
fn load_weight_dy(p: u32, o: u32) -> vec4f {
  let i = p * OUT_C + o;
  if (VECTORIZED) { return vec4f(weight_dy_vec[i / 4u]); }
  return vec4f(vec4(
    weight_dy_flat[i],
    weight_dy_flat[i + 1u],
    weight_dy_flat[i + 2u],
    weight_dy_flat[i + 3u],
  ));
}
