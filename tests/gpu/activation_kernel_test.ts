import assert from "node:assert/strict";
import { ACTIVATION_ALIAS, activationKernel, kernel, kernels } from "../../src/shaders.ts";
import { gpuTest } from "../support/gpu.ts";

Deno.test("activationKernel: f32 is the source as written, f16 swaps the alias and enables f16", () => {
  assert.equal(activationKernel(kernels.relu, "f32"), kernels.relu);
  const build = activationKernel(kernels.relu, "f16");
  assert.equal(build.build, "f16");
  assert.equal(build.name, "relu");
  assert.match(build.code, /^enable f16;\n/);
  assert.equal(build.code.split("\n").filter((line) => line.trim() === ACTIVATION_ALIAS).length, 0);
  assert.equal(build.code.split("\n").filter((line) => line === "alias act = f16;").length, 1);
  assert.equal(activationKernel(kernels.relu, "f16"), build, "built once");
});

Deno.test("activationKernel: a kernel without exactly one alias line has no f16 build", () => {
  const refused = /has no f16 build: it must declare `alias act = f32;` once/;
  assert.throws(() => activationKernel(kernel("plain", "fn f() {}"), "f16"), refused);
  const twice = kernel("twice", `${ACTIVATION_ALIAS}\n${ACTIVATION_ALIAS}\n`);
  assert.throws(() => activationKernel(twice, "f16"), refused);
  assert.throws(() => activationKernel(kernels.relu, "u32"), /no build for u32 activations/);
});

gpuTest(
  "activationKernel: the f16 build of every kernel that declares the alias compiles",
  async (gpu) => {
    assert.ok(gpu.device.features.has("shader-f16"), "the test adapter offers shader-f16");
    // Kernels that use subgroups compile only on a device with them (Deno's lavapipe has none;
    // the browser tests compile them on SwiftShader, which has no shader-f16).
    const withAlias = Object.values(kernels).filter((k) =>
      k.code.split("\n").some((line) => line.trim() === ACTIVATION_ALIAS) &&
      (gpu.subgroups || k.uses !== "subgroups")
    );
    assert.ok(withAlias.length > 0);
    for (const source of withAlias) {
      const build = activationKernel(source, "f16");
      const module = gpu.device.createShaderModule({ code: build.code });
      const info = await module.getCompilationInfo();
      const errors = info.messages.filter((message) => message.type === "error");
      assert.deepEqual(errors.map((e) => e.message), [], `${source.name}.wgsl (f16 build)`);
    }
  },
);
