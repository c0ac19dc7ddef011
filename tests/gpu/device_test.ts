import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { KernelError, PipelineCache } from "../../src/gpu/pipeline.ts";
import { subgroupsAsExpected } from "../../src/gpu/subgroup_probe.ts";
import { activationKernel, kernels } from "../../src/shaders.ts";
import { BufferLimitError, createBuffer } from "../../src/gpu/buffer.ts";
import { inferBackend } from "../../src/gpu/deno_device.ts";
import { describeFeatures } from "../../src/cli/describe.ts";
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

Deno.test("the backend is read from the limit wgpu's backends report differently", () => {
  const unlimited = 2 ** 32 - 1;
  // Deno 2.9's Vulkan adapters report WebGPU's default (1000, or 1024 on lavapipe).
  assert.equal(inferBackend("linux", 1024), "Vulkan");
  assert.equal(inferBackend("linux", 1000), "Vulkan");
  assert.equal(inferBackend("linux", unlimited), "OpenGL");
  assert.equal(inferBackend("darwin", unlimited), "Metal");
  assert.equal(inferBackend("darwin", 1000), "Vulkan");
  assert.equal(inferBackend("windows", unlimited), "Direct3D 12");
  assert.equal(inferBackend("windows", unlimited, ["Vulkan", "OpenGL"]), "OpenGL");
  // DENO_WEBGPU_BACKEND naming one backend settles it.
  assert.equal(inferBackend("windows", unlimited, ["OpenGL"]), "OpenGL");
  assert.equal(inferBackend("linux", unlimited, ["Vulkan"]), "Vulkan");
});

/** `deno task adapter` with `env`: its exit code and its lines, without Mesa's runtime warning. */
async function adapterCommand(env: Record<string, string>) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-env", adapterCli],
    env: { XDG_RUNTIME_DIR: "/tmp", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const lines = (bytes: Uint8Array) =>
    new TextDecoder().decode(bytes).trim().split("\n")
      .filter((line) => line && !line.includes("XDG_RUNTIME_DIR"));
  return { code: output.code, stdout: lines(output.stdout), stderr: lines(output.stderr) };
}

Deno.test({
  name: "lavapipe: two worker threads per core unless LP_NUM_THREADS says otherwise",
  ...needs("run", "read", "env"),
  async fn() {
    const byDefault = await adapterCommand({});
    assert.equal(byDefault.code, 0, byDefault.stderr.join("\n"));
    if (!byDefault.stdout[0].includes("software")) return; // a hardware adapter: nothing to set
    // The test's own LP_NUM_THREADS, if it has one, reaches the command and wins.
    const threads = Deno.env.get("LP_NUM_THREADS") ??
      Math.min(2 * navigator.hardwareConcurrency, 16);
    assert.match(byDefault.stdout[0], new RegExp(`, ${threads} worker threads\\)$`));
    const chosen = await adapterCommand({ LP_NUM_THREADS: "3" });
    assert.match(chosen.stdout[0], /^adapter: .+ \(software, \w+, 3 worker threads\)$/);
  },
});

Deno.test({
  name: "the adapter line names the backend: Vulkan, or OpenGL when Deno falls back to it",
  ...needs("run", "read", "env"),
  async fn() {
    // Each backend may be missing on a machine (no Vulkan driver, no EGL): then there is no
    // adapter, and the one-line error says so. Where there is one, its backend is named.
    const noAdapter = (run: Awaited<ReturnType<typeof adapterCommand>>) => {
      assert.deepEqual(run.stdout, []);
      assert.match(run.stderr.join("\n"), /^error: No WebGPU adapter found: /);
    };
    const vulkan = await adapterCommand({ DENO_WEBGPU_BACKEND: "vulkan" });
    if (vulkan.code === 0) {
      assert.match(
        vulkan.stdout[0],
        /^adapter: .+ \((software, Vulkan, \d+ worker threads|Vulkan)\)$/,
      );
      assert.equal(vulkan.stdout[1], "backend: Vulkan");
      assert.match(
        vulkan.stdout[2],
        /^features: (no )?shader-f16, (no )?timestamp-query, (no subgroups|subgroups \(.+\))$/,
      );
    } else {
      noAdapter(vulkan);
    }
    // With the Vulkan loader pointed at no driver, Deno takes OpenGL where the machine has it
    // (Mesa's EGL), else finds no adapter; either way it is said.
    const fallback = await adapterCommand({ VK_ICD_FILENAMES: "/nonexistent/icd.json" });
    if (fallback.code === 0) {
      assert.match(
        fallback.stdout[0],
        /^adapter: .+ \((software, OpenGL, \d+ worker threads|OpenGL)\)$/,
      );
      assert.equal(
        fallback.stdout[1],
        "backend: OpenGL, Deno's fallback when it finds no Vulkan driver: install one " +
          "(Debian/Ubuntu: apt-get install mesa-vulkan-drivers) or check VK_ICD_FILENAMES and " +
          "VK_DRIVER_FILES; DENO_WEBGPU_BACKEND=vulkan refuses the fallback",
      );
    } else {
      noAdapter(fallback);
    }
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

Deno.test("pipeline cache: `enable subgroups;` goes first only where the platform wants it", async () => {
  const compiled: string[] = [];
  // Just what PipelineCache calls of a device, recording the WGSL it is given.
  const device = {
    pushErrorScope() {},
    popErrorScope: () => Promise.resolve(null),
    createShaderModule({ code }: { code: string }) {
      compiled.push(code);
      return {};
    },
    createComputePipelineAsync: () => Promise.resolve({}),
  } as unknown as GPUDevice;
  const code = "@compute @workgroup_size(1) fn main() {}";
  const plain = { name: "plain_for_test", code };
  const subgroups = { name: "subgroups_for_test", code, uses: "subgroups" as const };
  const browser = new PipelineCache(device);
  await browser.get(plain, "main");
  await browser.get(subgroups, "main");
  await browser.get(
    activationKernel({ ...subgroups, code: `alias act = f32;\n${code}` }, "f16"),
    "main",
  );
  await new PipelineCache(device, { subgroupDirective: false }).get(subgroups, "main");
  assert.deepEqual(compiled, [
    code,
    `enable subgroups;\n${code}`,
    `enable subgroups;\nenable f16;\nalias act = f16;\n${code}`,
    code,
  ]);
});

gpuTest(
  "Gpu.subgroups: false without the subgroups feature (a subgroup kernel then fails to compile, " +
    "named); with it, the probe's verdict, and the subgroup conv compiles",
  async (gpu) => {
    const kernel = kernels.conv2dTextureSubgroup;
    if (!gpu.device.features.has("subgroups")) {
      assert.equal(gpu.subgroups, false);
      // The probe itself does not compile here: it answers false rather than fail.
      assert.equal(await subgroupsAsExpected(gpu), false);
      await assert.rejects(
        gpu.pipelines.get(kernel, "forward"),
        (error) =>
          error instanceof KernelError && /conv2d_texture_subgroup\.wgsl/.test(error.message),
      );
      return;
    }
    assert.equal(gpu.subgroups, await subgroupsAsExpected(gpu));
    const info = await gpu.device.createShaderModule({ code: kernel.code }).getCompilationInfo();
    assert.deepEqual(info.messages.filter((m) => m.type === "error").map((m) => m.message), []);
  },
);

Deno.test("the features line: each feature the runtime uses, and whether subgroups are used", () => {
  const gpu = (features: string[], subgroups = false) => ({
    device: { features: new Set(features) },
    subgroups,
  });
  assert.equal(
    describeFeatures(gpu(["shader-f16", "timestamp-query"])),
    "shader-f16, timestamp-query, no subgroups",
  );
  assert.equal(
    describeFeatures(gpu(["subgroups", "timestamp-query"], true)),
    "no shader-f16, timestamp-query, subgroups (used)",
  );
  assert.equal(
    describeFeatures(gpu(["subgroups"])),
    "no shader-f16, no timestamp-query, subgroups (unused: not as the kernels need)",
  );
});
