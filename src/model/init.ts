/**
 * PyTorch's default initialisation, from a seeded generator so that runs are reproducible:
 * Conv2d and Linear weights kaiming_uniform(a = √5), i.e. U(±1/√fan_in); Linear bias
 * U(±1/√fan_in); BN weight 1, bias 0, running mean 0, running var 1.
 */
import { elementCount } from "../util/shape.ts";
import { Random } from "../util/random.ts";
import type { ParameterSpec, StateSpec } from "./parameters.ts";

/** Values in the project's layout, in the order of `specs`. */
export function initialParameters(specs: readonly ParameterSpec[], seed: number): Float32Array[] {
  const random = new Random(seed);
  return specs.map((spec) => {
    const values = new Float32Array(elementCount(spec.shape));
    switch (spec.role) {
      case "bn_weight":
        values.fill(1);
        break;
      case "bn_bias":
        break;
      default: {
        // kaiming_uniform with a = √5: gain √(2/(1+5)), bound gain·√(3/fan_in) = 1/√fan_in.
        const bound = 1 / Math.sqrt(spec.fanIn);
        for (let i = 0; i < values.length; i++) values[i] = random.uniform(-bound, bound);
      }
    }
    return values;
  });
}

export function initialState(specs: readonly StateSpec[]): Float32Array[] {
  return specs.map((spec) =>
    new Float32Array(elementCount(spec.shape)).fill(spec.role === "running_var" ? 1 : 0)
  );
}
