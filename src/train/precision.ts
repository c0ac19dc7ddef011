/**
 * The activation precision of a run (`--precision f32|f16`): f16 stores activations and their
 * gradients in half the memory and needs the adapter's `shader-f16` feature; arithmetic is f32
 * either way (src/shaders.ts, `activationKernel`).
 */
import { UserError } from "../errors.ts";
import type { Gpu } from "../gpu/device.ts";
import type { ActivationDType } from "../ops/shape.ts";

export const PRECISIONS: readonly ActivationDType[] = ["f32", "f16"];

/** f16 asked of an adapter without `shader-f16`. */
export class PrecisionUnsupportedError extends UserError {
  override name = "PrecisionUnsupportedError";
}

/** Throws, naming the feature, the adapter and the fix, if the device cannot run `precision`. */
export function checkPrecision(
  gpu: Pick<Gpu, "device" | "adapterName">,
  precision: ActivationDType,
): void {
  if (precision === "f16" && !gpu.device.features.has("shader-f16")) {
    throw new PrecisionUnsupportedError(
      `--precision f16 needs the WebGPU feature shader-f16, which the adapter ` +
        `${gpu.adapterName} does not offer: use --precision f32`,
    );
  }
}
