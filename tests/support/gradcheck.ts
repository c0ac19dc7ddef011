/**
 * The gradient-check harness. For an op and random f32-representable inputs it checks
 *   (a) the GPU forward against the f64 CPU reference forward;
 *   (b) every GPU gradient (each input and parameter) against the f64 CPU reference backward;
 *   (c) the CPU reference backward against central finite differences of the reference forward,
 *       so the reference is itself proven, not trusted.
 * Gradients are of L = sum(y · dy) for a random dy, which exercises every output element.
 * For an op on f16 activations, give the inputs already rounded to f16 (`roundTo` in gpu.ts) and
 * `activations: "f16"`: dy is then drawn f16-representable too, so the reference and the GPU see
 * the same values and only the op's own roundings separate them.
 */
import { assertAllClose } from "./reference/compare.ts";
import { projectedGradient } from "./reference/finite_difference.ts";
import { f32Array, Random } from "./reference/random.ts";
import { FINITE_DIFFERENCE } from "./tolerances.ts";
import type { ActivationDType } from "../../src/ops/shape.ts";

export type Arrays = Record<string, Float64Array>;

export interface GradCheck<I extends Arrays> {
  name: string;
  /** Inputs and parameters, f32-representable. */
  inputs: I;
  /** Names of the inputs to differentiate (default: all). */
  differentiate?: (keyof I & string)[];
  reference: {
    forward(inputs: I): Float64Array;
    backward(inputs: I, dy: Float64Array): Record<string, Float64Array>;
  };
  /** Runs the op on the GPU: its output, and the gradients for `dy`. */
  gpu(
    inputs: I,
    dy: Float64Array,
  ): Promise<{ y: ArrayLike<number>; grads: Record<string, ArrayLike<number>> }>;
  /** Tolerance for (a) and (b); see tolerances.ts. */
  tolerance: number;
  /** The element type of the op's activations and their gradients (default f32). */
  activations?: ActivationDType;
  seed?: number;
}

export async function gradCheck<I extends Arrays>(check: GradCheck<I>): Promise<void> {
  const random = new Random(check.seed ?? 12345);
  const expectedY = check.reference.forward(check.inputs);
  const drawn = f32Array(expectedY.length, () => random.uniform(-1, 1));
  const dy = check.activations === "f16" ? Float64Array.from(Float16Array.from(drawn)) : drawn;
  const expectedGrads = check.reference.backward(check.inputs, dy);
  const names = check.differentiate ?? Object.keys(check.inputs);

  for (const name of names) {
    const numeric = projectedGradient(
      () => check.reference.forward(check.inputs),
      dy,
      check.inputs[name],
    );
    assertAllClose(
      expectedGrads[name],
      numeric,
      FINITE_DIFFERENCE,
      `${check.name}: reference d${name} vs finite differences`,
    );
  }

  const actual = await check.gpu(check.inputs, dy);
  assertAllClose(actual.y, expectedY, check.tolerance, `${check.name}: GPU forward`);
  for (const name of names) {
    if (!(name in actual.grads)) throw new Error(`${check.name}: GPU gave no d${name}`);
    assertAllClose(
      actual.grads[name],
      expectedGrads[name],
      check.tolerance,
      `${check.name}: GPU d${name}`,
    );
  }
}
