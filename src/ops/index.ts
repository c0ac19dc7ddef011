/** Every op's dispatch builders, one module per op (each with its WGSL file in shaders/). */
export * from "./add.ts";
export * from "./batchnorm.ts";
export * from "./conv2d.ts";
export * from "./global_avg_pool.ts";
export * from "./linear.ts";
export * from "./optimizer.ts";
export * from "./relu.ts";
export * from "./shape.ts";
export * from "./softmax_cross_entropy.ts";
