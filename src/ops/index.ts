/**
 * Every op's planning functions, one module per op (each with its WGSL file in shaders/), the
 * kernel policy that picks their variants, and the shape checks they share.
 */
export * from "./add.ts";
export * from "./batchnorm.ts";
export * from "./conv2d.ts";
export * from "./ema.ts";
export * from "./global_avg_pool.ts";
export * from "./global_max_pool.ts";
export * from "./input_batch.ts";
export * from "./linear.ts";
export * from "./max_pool.ts";
export * from "./policy.ts";
export * from "./relu.ts";
export * from "./shape.ts";
export * from "./softmax_cross_entropy.ts";
