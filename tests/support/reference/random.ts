/** Test data comes from the project's own seeded generator (src/util/random.ts). */
export { f32Array, Random } from "../../../src/util/random.ts";
