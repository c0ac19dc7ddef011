/**
 * The program layer without a GPU: lifetimes, buffer reuse and the aliasing check are derived from
 * the kernel calls' access tags, and proven here on hand-made programs and on whole ResNets built
 * over stand-in buffers. One test at the end needs a device: the binding limit is the device's.
 */
import assert from "node:assert/strict";
import { BufferLimitError } from "../../src/gpu/buffer.ts";
import {
  type Binding,
  type Call,
  isKernelCall,
  kernelCall,
  read,
  readWrite,
  sampled,
  storageTexture,
  write,
} from "../../src/gpu/kernel_call.ts";
import {
  byteSize,
  createTensor,
  type DType,
  hasStorage,
  type Tensor,
  type TensorDesc,
  tensorDesc,
  textureDesc,
  workspaceDesc,
} from "../../src/gpu/tensor.ts";
import { buildArchitecture } from "../../src/model/architecture.ts";
import { resnetConfig } from "../../src/model/config.ts";
import { ModelWeights, WeightLayout, WeightViews } from "../../src/model/weights.ts";
import { KernelPolicy } from "../../src/ops/policy.ts";
import type { ActivationDType } from "../../src/ops/shape.ts";
import { createMetrics } from "../../src/ops/softmax_cross_entropy.ts";
import { allocate, checkPlacement, lifetimes, PlanError } from "../../src/plan/allocator.ts";
import { buildNetworkProgram, FORWARD_END } from "../../src/plan/network.ts";
import { StepPlan } from "../../src/plan/plan.ts";
import { kernels } from "../../src/shaders.ts";
import { gpuTest } from "../support/gpu.ts";

/** A buffer that only has an identity and a size: allocation never touches a GPU. */
function standInBuffer(label: string, size: number): GPUBuffer {
  return { label, size } as unknown as GPUBuffer;
}

function standInTensor(label: string, shape: number[], dtype: DType = "f32"): Tensor {
  const desc = tensorDesc(label, shape, dtype);
  return { ...desc, buffer: standInBuffer(label, byteSize(desc)), offset: 0 };
}

/** A call of any kernel binding `bindings`; what the kernel does is beside the point here. */
function call(label: string, bindings: Binding[]) {
  return kernelCall({
    label,
    kernel: kernels.add,
    entryPoint: "forward",
    workgroupSize: 1,
    grid: [1],
    bindings,
  });
}

Deno.test("allocation reuses a dead tensor's buffer, never within one call", () => {
  const [a, b, c, d] = ["a", "b", "c", "d"].map((label) => tensorDesc(label, [256]));
  const calls = [
    call("write a", [write(a)]),
    call("a -> b", [read(a), write(b)]), // a dies here: b must not take its buffer (same call)
    call("b -> c", [read(b), write(c)]), // c may take a's buffer
    call("c -> d", [read(c), write(d)]), // d may take b's buffer
  ];
  const allocation = allocate(calls);
  const slot = (t: TensorDesc) => allocation.transients.get(t)!.slot;
  assert.notEqual(slot(a), slot(b));
  assert.equal(slot(c), slot(a));
  assert.equal(slot(d), slot(b));
  assert.equal(allocation.bytes.activation, 2 * 1024);
  assert.equal(allocation.bytesWithoutReuse.activation, 4 * 1024);
});

Deno.test("a free buffer grows to serve a larger tensor rather than a new one being made", () => {
  const small = tensorDesc("small", [64]);
  const between = tensorDesc("between", [16]);
  const large = tensorDesc("large", [256]);
  const allocation = allocate([
    call("small", [write(small)]),
    call("small -> between", [read(small), write(between)]),
    call("between -> large", [read(between), write(large)]),
  ]);
  const slot = (t: TensorDesc) => allocation.transients.get(t)!.slot;
  assert.equal(slot(large), slot(small));
  assert.equal(slot(large).bytes, 1024);
  assert.equal(allocation.slots.length, 2);
});

Deno.test("workspaces are pooled apart from activations and reported apart", () => {
  const x = tensorDesc("x", [100]);
  const scratch = workspaceDesc("scratch", [10]);
  const y = tensorDesc("y", [10]);
  const allocation = allocate([
    call("x", [write(x)]),
    call("x -> scratch", [read(x), write(scratch)]),
    call("scratch -> y", [read(scratch), write(y)]),
  ]);
  // y could have taken x's buffer by lifetime, but a workspace never shares with an activation.
  assert.equal(allocation.transients.get(scratch)!.slot.role, "workspace");
  assert.notEqual(allocation.transients.get(scratch)!.slot, allocation.transients.get(x)!.slot);
  assert.equal(allocation.bytes.workspace, 40);
  assert.equal(allocation.bytes.activation, 400);
});

Deno.test("textures take texture slots, shared only by textures of the same size", () => {
  const x = tensorDesc("x", [4096]);
  const [first, second] = ["first", "second"].map((label) => textureDesc(label, x));
  const wide = textureDesc("wide", tensorDesc("wide source", [8192 * 4 * 3]));
  const y = tensorDesc("y", [4096]);
  const calls = [
    call("x", [write(x)]),
    call("x -> first", [read(x), storageTexture(first)]),
    call("first -> y", [sampled(first), write(y)]), // first dies here
    call("y -> wide", [read(y), storageTexture(wide)]), // another size: a slot of its own
    call("x -> second", [read(x), storageTexture(second)]), // takes first's slot
    call("second + wide -> y", [sampled(second), sampled(wide), write(y)]),
  ];
  const allocation = allocate(calls);
  const slot = (t: TensorDesc) => allocation.transients.get(t)!.slot;
  // 1024 texels in one row; 24576 in rows of 8192.
  assert.deepEqual(first.texture, [1024, 1]);
  assert.deepEqual(wide.texture, [8192, 3]);
  assert.equal(slot(second), slot(first));
  assert.notEqual(slot(wide), slot(first));
  assert.deepEqual(slot(wide).texture, [8192, 3]);
  // Buffer tensors never take a texture slot.
  for (const tensor of [x, y]) assert.equal(slot(tensor).texture, undefined, tensor.label);
  assert.equal(byteSize(first), 1024 * 16);
  // Textures are staged copies, reported as workspaces.
  assert.equal(allocation.bytes.activation, 2 * 4096 * 4);
  assert.equal(allocation.bytes.workspace, 1024 * 16 + 8192 * 3 * 16);
  // A storage-texture write is a first write, a sampled read is a read.
  assert.throws(
    () => allocate([call("reads first", [sampled(first), write(y)])]),
    /first is bound texture by reads first before any call writes it/,
  );
  // A texture is bound with the texture accesses, a buffer range never.
  assert.throws(() => call("first as a buffer", [read(first)]), /first is a texture, bound read/);
  assert.throws(
    () => call("x as a texture", [storageTexture(x)]),
    /x is a buffer range, bound storage_texture/,
  );
  // More than 8192 rows of 8192 texels is refused.
  assert.throws(
    () => textureDesc("huge", tensorDesc("huge source", [8192 * 8192 * 4 + 4])),
    /more than 8192 rows/,
  );
});

Deno.test("a tensor read before any call writes it is a planning error", () => {
  const orphan = tensorDesc("orphan", [4]);
  assert.throws(
    () => allocate([call("reads orphan", [read(orphan)])]),
    (error: Error) =>
      error instanceof PlanError &&
      error.message === "plan: orphan is bound read by reads orphan before any call writes it",
  );
  // read_write reads what was there: it cannot be a transient's first use either.
  assert.throws(() => allocate([call("accumulates", [readWrite(orphan)])]), PlanError);
});

Deno.test("a tensor written again while a texture filled from it is still read is refused", () => {
  const [a, b] = ["a", "b"].map((label) => tensorDesc(label, [8, 4]));
  const texels = textureDesc("a texels", a);
  const fill = call("copy a", [read(a), storageTexture(texels)]);
  const rewrite = call("rewrites a", [read(b), write(a)]);
  const reader = call("reads a's texels", [sampled(texels), write(b)]);
  const stale = [call("a", [write(a)]), call("b", [write(b)]), fill, rewrite, reader];
  assert.throws(
    () => allocate(stale),
    (error: Error) =>
      error instanceof PlanError &&
      error.message === "plan: rewrites a writes a while a texels, filled from it, is still to " +
          "be read: stage it again after the write",
  );
  // Written after the texture's last reader, or filled again after the write: fine.
  allocate([call("a", [write(a)]), call("b", [write(b)]), fill, reader, rewrite]);
  const again = textureDesc("a texels again", a);
  allocate([
    ...stale.slice(0, 4),
    call("copy a again", [read(a), storageTexture(again)]),
    call("reads them", [sampled(again), write(b)]),
  ]);
});

Deno.test("a deliberately wrong reuse is refused: two live tensors in one buffer", () => {
  const [a, b, c] = ["a", "b", "c"].map((label) => tensorDesc(label, [8]));
  const calls = [
    call("a", [write(a)]),
    call("b", [write(b)]),
    call("a + b -> c", [read(a), read(b), write(c)]),
  ];
  const shared = {};
  // Wrong: c shares a's storage while the call that writes c still reads a.
  assert.throws(
    () =>
      checkPlacement(
        calls,
        (t) => ({ storage: t === c ? shared : t === a ? shared : {}, offset: 0 }),
      ),
    (error: Error) =>
      error instanceof PlanError &&
      /in a \+ b -> c, c is written and overlaps a$/.test(error.message),
  );
  // Right: a and b are live together, c may take neither; the allocator finds that.
  const allocation = allocate(calls);
  const slots = new Set([a, b, c].map((t) => allocation.transients.get(t)!.slot));
  assert.equal(slots.size, 3);
});

Deno.test("a buffer bound read-only and writable in one call is refused, disjoint or not", () => {
  const arena = standInBuffer("arena", 2048);
  const view = (label: string, offset: number): Tensor => ({
    label,
    shape: [64],
    dtype: "f32",
    buffer: arena,
    offset,
  });
  const [first, second] = [view("first", 0), view("second", 256)];
  // WebGPU refuses one buffer bound read-only and writable in one dispatch, even for disjoint
  // ranges (Deno does: shaders/README.md), so the plan does too.
  assert.throws(
    () => allocate([call("read first, write second", [read(first), write(second)])]),
    /second is written and shares a buffer with \(WebGPU refuses a buffer bound read-only and writable at once\) first/,
  );
  // Two writable ranges of one buffer are fine when disjoint (a layer's dweight and dbias)...
  allocate([call("write both", [write(first), write(second)])]);
  // ...and refused when they overlap.
  const overlapping = view("overlapping", 128);
  assert.throws(
    () => allocate([call("write overlapping", [write(first), write(overlapping)])]),
    /first is written and overlaps overlapping/,
  );
  // One tensor bound twice read-only (the blocked conv's vec4 and scalar views) is fine.
  allocate([call("two views", [read(first), read(first), write(tensorDesc("out", [4]))])]);
});

Deno.test("kernelCall sets the workgroup overrides from the one workgroup size", () => {
  const one = call("one", [write(tensorDesc("t", [4]))]);
  assert.deepEqual(one.workgroupSize, [1, 1, 1]);
  assert.equal(one.constants.WORKGROUP_SIZE, 1);
  const square = kernelCall({
    kernel: kernels.conv2dTiled,
    entryPoint: "forward",
    workgroupSize: [16, 16],
    grid: [3, 2],
    bindings: [],
  });
  assert.deepEqual(square.workgroupSize, [16, 16, 1]);
  assert.deepEqual(square.grid, [3, 2, 1]);
  assert.equal(square.constants.WORKGROUP_SIZE_X, 16);
  assert.equal(square.constants.WORKGROUP_SIZE_Y, 16);
  assert.throws(
    () =>
      kernelCall({
        kernel: kernels.add,
        entryPoint: "forward",
        workgroupSize: 64,
        constants: { WORKGROUP_SIZE: 32 },
        grid: [1],
        bindings: [],
      }),
    /WORKGROUP_SIZE comes from workgroupSize, not from the constants/,
  );
});

/**
 * A model over stand-in buffers, and the step's inputs and outputs likewise; `precision` is the
 * input's element type, which the network's activations take.
 */
function standInNetwork(
  preset: "resnet18" | "resnet50",
  width: number,
  batch: number,
  precision: ActivationDType = "f32",
) {
  const architecture = buildArchitecture(resnetConfig(preset, width));
  const sizes = new WeightLayout(architecture).sizes;
  const weights = new WeightViews(architecture, {
    params: standInBuffer("parameters", sizes.params),
    grads: standInBuffer("gradients", sizes.grads),
    state: standInBuffer("running statistics", sizes.state),
    counters: standInBuffer("counters", sizes.counters),
  });
  const io = {
    input: standInTensor("input", [batch, 32, 32, 3], precision),
    labels: standInTensor("labels", [batch], "u32"),
    metrics: standInTensor("metrics", [3], "u32"),
    confusion: standInTensor("confusion", [10, 10], "u32"),
  };
  return { weights, io };
}

/**
 * The CPU rules' convolution for a call key ("conv2d [N,H,W,Cin]->Cout k3 s1 p1"): winograd for 3x3
 * stride-1 layers of 32 channels or more in and out, blocked_texture otherwise.
 */
function cpuConvVariant(key: string): string {
  const [, cin, cout, kernel, stride] = key.match(/,(\d+)\]->(\d+) k(\d) s(\d)/)!.map(Number);
  const winograd = kernel === 3 && stride === 1 && Math.min(cin, cout) >= 32;
  return winograd ? "winograd" : "blocked_texture";
}

for (const [preset, width] of [["resnet18", 1], ["resnet50", 0.25]] as const) {
  for (const family of ["cpu", "gpu"] as const) {
    Deno.test(`a whole ${preset} width ${width} training step plans without a GPU (${family} kernels)`, () => {
      const batch = 128;
      const { weights, io } = standInNetwork(preset, width, batch);
      const policy = new KernelPolicy({ family });
      const program = buildNetworkProgram(weights, "train", io, policy);
      const { calls } = program;
      const allocation = allocate(calls);

      // Every tensor two calls share lies in one buffer only when their lives do not overlap.
      const lives = lifetimes(calls);
      const placed = [...allocation.transients];
      for (const [i, [a, placeA]] of placed.entries()) {
        for (const [b, placeB] of placed.slice(i + 1)) {
          if (placeA.slot !== placeB.slot) continue;
          const [lifeA, lifeB] = [lives.get(a)!, lives.get(b)!];
          assert.ok(
            lifeA.last < lifeB.first || lifeB.last < lifeA.first,
            `${a.label} and ${b.label} share a buffer while both live`,
          );
        }
        assert.ok(placeA.slot.bytes >= byteSize(a), `${a.label} fits its buffer`);
      }

      // The buffers hold at least the most that is ever live at once, and reuse saves memory.
      let peak = 0;
      calls.forEach((_, index) => {
        let live = 0;
        for (const [tensor, life] of lives) {
          if (tensor.role !== "workspace" && life.first <= index && index <= life.last) {
            live += byteSize(tensor);
          }
        }
        peak = Math.max(peak, live);
      });
      assert.ok(allocation.bytes.activation >= peak);
      assert.ok(allocation.bytes.activation < allocation.bytesWithoutReuse.activation / 1.5);

      // The forward pass comes first and ends in the loss; every parameter gets its gradient.
      const forward = program.markAt(FORWARD_END);
      assert.ok(forward > 0 && forward < calls.length);
      assert.match(calls[forward - 1].label, /^loss /);
      const gradients = new Set(
        calls.flatMap((c) => c.bindings)
          .filter(({ tensor, access }) => access === "write" && hasStorage(tensor))
          .map(({ tensor }) => (tensor as Tensor).buffer === weights.grads ? tensor.label : "")
          .filter(Boolean),
      );
      assert.equal(gradients.size, weights.parameterLayout.entries.length);

      // The policy chose, once per layer shape, the family's variants.
      const { choices } = policy.choices();
      for (const [key, variant] of Object.entries(choices)) {
        const expected = family === "gpu"
          ? key.startsWith("conv2d") ? "tiled" : "tree"
          : key.startsWith("conv2d")
          ? cpuConvVariant(key)
          : "serial_texture";
        assert.equal(variant, expected, key);
      }
    });
  }
}

Deno.test("a whole resnet18 training step plans its convs' textures without a GPU", () => {
  const { weights, io } = standInNetwork("resnet18", 0.25, 128);
  const policy = new KernelPolicy({ family: "cpu" });
  const { calls } = buildNetworkProgram(weights, "train", io, policy);
  const allocation = allocate(calls); // checks every call's placement too
  for (const [key, variant] of Object.entries(policy.choices().choices)) {
    if (!key.startsWith("conv2d")) continue;
    assert.equal(variant, cpuConvVariant(key), key); // the 3-channel stem too: padded texels
  }
  // Each texture is written by one to_texture call, then read by the conv calls after it, and
  // lies in a texture slot of its own size, among the workspaces.
  const textures = [...allocation.transients].filter(([tensor]) => tensor.texture);
  assert.ok(textures.length > 0);
  for (const [tensor, { first, last, slot }] of textures) {
    const binds = calls.flatMap((call, index) =>
      call.bindings.filter((b) => b.tensor === tensor).map((b) => [index, b.access] as const)
    );
    assert.deepEqual(binds[0], [first, "storage_texture"], tensor.label);
    assert.ok(binds.slice(1).every(([, access]) => access === "texture"), tensor.label);
    assert.ok(last > first, `${tensor.label} is read`);
    assert.deepEqual(slot.texture, tensor.texture, tensor.label);
    assert.equal(slot.role, "workspace", tensor.label);
  }
  // The step stages each tensor once (src/ops/staging.ts): a layer's input and weights serve its
  // forward and backward passes, a block's input both branches; and a Winograd layer transforms
  // its input's tiles once, for its forward pass and its weight gradient. Textures still share
  // slots where their lives allow.
  const sources = textures.map(([tensor]) =>
    calls.find((call) =>
      call.bindings.some((b) => b.tensor === tensor && b.access === "storage_texture")
    )!.bindings.find((b) => b.access === "read")!.tensor
  );
  const sourceKeys = sources.map((tensor) =>
    hasStorage(tensor) ? `${tensor.offset} of ${tensor.label}` : tensor
  );
  assert.equal(new Set(sourceKeys).size, sourceKeys.length, "a tensor staged twice");
  const tileTransforms = calls.filter((call) => call.label.endsWith("transform_tiles"));
  const winogradLayers = calls.filter((call) => call.label.endsWith("transform_output")).length / 2;
  assert.ok(winogradLayers > 0);
  assert.equal(tileTransforms.length, 3 * winogradLayers); // V of x, V of dy, Z of dy
  const slots = new Set(textures.map(([, placed]) => placed.slot));
  assert.ok(slots.size < textures.length, `${slots.size} slots, ${textures.length} textures`);
});

Deno.test("a block input's two gradient terms are summed by batch norm's backward on the cpu family, by an add on the gpu family", () => {
  const { weights, io } = standInNetwork("resnet18", 0.25, 128);
  const blocks = 8;
  for (const family of ["cpu", "gpu"] as const) {
    const { calls } = buildNetworkProgram(weights, "train", io, new KernelPolicy({ family }));
    const kernelCalls = calls.filter(isKernelCall);
    const adds = kernelCalls.filter((call) => call.kernel === kernels.add);
    const twoTerms = kernelCalls.filter((call) => call.constants.DY_TERMS === 2);
    if (family === "cpu") {
      // serial_texture: no add pass; both data passes of the batch norm before each block read
      // the two terms, the second bound after the pass's other bindings.
      assert.equal(adds.length, 0);
      assert.deepEqual(
        twoTerms.map((call) => [call.entryPoint, call.bindings.length]),
        Array.from({ length: blocks }, () => [
          ["gradient_partials_texture", 6],
          ["input_gradient_texture", 7],
        ]).flat(),
      );
    } else {
      assert.equal(adds.length, blocks);
      assert.equal(twoTerms.length, 0);
    }
  }
});

Deno.test("an evaluation plan binds no gradient and writes no running statistic", () => {
  const { weights, io } = standInNetwork("resnet18", 0.25, 64);
  const { calls } = buildNetworkProgram(weights, "eval", io, new KernelPolicy({ family: "cpu" }));
  allocate(calls);
  for (const { tensor, access } of calls.flatMap((c) => c.bindings)) {
    if (!hasStorage(tensor)) continue;
    assert.notEqual(tensor.buffer, weights.grads, `${tensor.label} is a gradient`);
    if (tensor.buffer === weights.state || tensor.buffer === weights.counters) {
      assert.equal(access, "read", `${tensor.label} is only read`);
    }
  }
});

gpuTest(
  "an activation over the device's binding limit is caught while planning, naming it",
  async (gpu) => {
    const weights = new ModelWeights(gpu, resnetConfig("resnet18"));
    // 600 x 32 x 32 x 64 floats are 157 MB, over the default 128 MiB per binding.
    const batch = 600;
    const tensors = [
      createTensor(gpu, "input", [1, 32, 32, 3]),
      createTensor(gpu, "labels", [1], "u32"),
      createMetrics(gpu),
    ];
    await assert.rejects(
      StepPlan.build(gpu, weights, "train", {
        input: { ...tensors[0], shape: [batch, 32, 32, 3] },
        labels: { ...tensors[1], shape: [batch] },
        metrics: tensors[2],
      }, KernelPolicy.forAdapter(gpu)),
      (error: Error) =>
        error instanceof BufferLimitError &&
        /^train conv\.0 needs 150\.0 MiB, over this device's limit of 128\.0 MiB per buffer: use a smaller batch size$/
          .test(error.message),
    );
    weights.destroy();
    for (const tensor of tensors) tensor.buffer.destroy();
  },
);

Deno.test("an f16 plan stores every activation and activation gradient in f16, the rest in f32", () => {
  const batch = 128;
  const policy = new KernelPolicy({ family: "cpu" });
  const plans = (["f32", "f16"] as const).map((precision) => {
    const { weights, io } = standInNetwork("resnet18", 0.25, batch, precision);
    const { calls } = buildNetworkProgram(weights, "train", io, policy);
    return { calls, allocation: allocate(calls) };
  });
  const [f32, f16] = plans;
  const transients = (calls: Call[]) => [...lifetimes(calls).keys()].filter((t) => !hasStorage(t));
  const f16Tensors = transients(f16.calls);
  // The head from the pooled features on, the saved batch statistics and the workspaces (the CPU
  // convs' textures among them) are f32.
  const f32Kept = f16Tensors.filter((tensor) => tensor.dtype === "f32");
  for (const tensor of f32Kept) {
    assert.ok(
      tensor.role === "workspace" || tensor.shape.length < 4,
      `${tensor.label} [${tensor.shape}] is f32 in the f16 plan`,
    );
  }
  assert.ok(
    f16Tensors.filter((tensor) => tensor.shape.length === 4 && tensor.role !== "workspace")
      .every((t) => t.dtype === "f16"),
  );
  // The memory figures follow: activations take half the bytes, but for the few small f32 ones
  // (head, saved statistics); the workspaces are f32 partial sums either way.
  const ratio = f16.allocation.bytes.activation / f32.allocation.bytes.activation;
  assert.ok(ratio > 0.5 && ratio < 0.501, `f16 activations take ${ratio} of f32's bytes`);
  assert.equal(f16.allocation.bytes.workspace, f32.allocation.bytes.workspace);
});
