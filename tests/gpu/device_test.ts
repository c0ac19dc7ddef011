import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { KernelError } from "../../src/gpu/pipeline.ts";
import { BufferLimitError, createBuffer } from "../../src/gpu/buffer.ts";
import { gpuTest } from "../support/gpu.ts";
import { needs } from "../support/permissions.ts";

const adapterCli = fileURLToPath(new URL("../../src/cli/adapter.ts", import.meta.url));

Deno.test({
  name: "no adapter: the command prints one line naming the fix and exits non-zero",
  ...needs("run", "read", "env"),
  async fn() {
    // Pointing the Vulkan loader at no driver (and forbidding the GL fallback) leaves no adapter.
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-env", adapterCli],
      env: {
        VK_DRIVER_FILES: "/nonexistent/icd.json",
        DENO_WEBGPU_BACKEND: "vulkan",
        XDG_RUNTIME_DIR: "/tmp",
      },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(output.stderr).trim().split("\n")
      .filter((line) => !line.includes("XDG_RUNTIME_DIR"));
    assert.notEqual(output.code, 0);
    assert.equal(stderr.length, 1, stderr.join("\n"));
    assert.match(
      stderr[0],
      /^error: No WebGPU adapter found: .*apt-get install mesa-vulkan-drivers/,
    );
  },
});

gpuTest(
  "a kernel that does not compile raises a KernelError naming it, when the pipeline is built",
  async (gpu) => {
    const broken = {
      name: "broken_for_test",
      code: "@compute @workgroup_size(1) fn main() { let x: f32 = 1u; }",
    };
    await assert.rejects(gpu.pipelines.get(broken, "main"), (error: Error) => {
      assert.ok(error instanceof KernelError);
      assert.match(error.message, /broken_for_test\.wgsl/);
      return true;
    });
  },
);

gpuTest("a missing entry point raises a KernelError naming kernel and entry point", async (gpu) => {
  const kernel = { name: "tiny_for_test", code: "@compute @workgroup_size(1) fn main() {}" };
  await assert.rejects(gpu.pipelines.get(kernel, "absent"), (error: Error) => {
    assert.ok(error instanceof KernelError);
    assert.match(error.message, /tiny_for_test\.wgsl entry point absent/);
    return true;
  });
});

gpuTest("pipelines are cached by kernel, entry point and override constants", async (gpu) => {
  const kernel = {
    name: "cached_for_test",
    code: "override SIZE: u32 = 1u;\n@compute @workgroup_size(1) fn main() { _ = SIZE; }",
  };
  const first = await gpu.pipelines.get(kernel, "main", { SIZE: 2 });
  assert.equal(await gpu.pipelines.get(kernel, "main", { SIZE: 2 }), first);
  assert.notEqual(await gpu.pipelines.get(kernel, "main", { SIZE: 3 }), first);
});

gpuTest(
  "a buffer over the device's per-binding limit is refused with a message naming it",
  (gpu) => {
    const limit = gpu.device.limits.maxStorageBufferBindingSize;
    assert.throws(
      () => createBuffer(gpu, { label: "activation conv2_x.0", size: limit + 4 }),
      (error: Error) =>
        error instanceof BufferLimitError &&
        /activation conv2_x\.0 needs .*smaller batch/.test(error.message),
    );
    return Promise.resolve();
  },
);
