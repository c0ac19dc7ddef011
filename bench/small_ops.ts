/**
 * Microbenchmarks of the small kernels at ResNet-18's shapes, batch 128: ReLU, residual add,
 * global average pooling, the linear classifier and the fused softmax cross-entropy, forward
 * and backward, in GB/s of the bytes each must read and write (they are memory-bound). Beside them,
 * ResNet-9's pools at its shapes, batch 512 (`resnet9PoolCases`).
 *
 *   deno run --allow-env bench/small_ops.ts [--quick]
 */
import type { Gpu } from "../src/gpu/device.ts";
import { requestGpu } from "../src/gpu/deno_device.ts";
import type { KernelCall } from "../src/gpu/kernel_call.ts";
import { byteSize, createTensor, type DType, type Tensor } from "../src/gpu/tensor.ts";
import { addForward } from "../src/ops/add.ts";
import { globalAvgPoolBackward, globalAvgPoolForward } from "../src/ops/global_avg_pool.ts";
import { globalMaxPoolBackward, globalMaxPoolForward } from "../src/ops/global_max_pool.ts";
import { linearBackward, linearForward } from "../src/ops/linear.ts";
import { maxPoolBackward, maxPoolForward, maxPoolOutputShape } from "../src/ops/max_pool.ts";
import { reluBackward, reluForward } from "../src/ops/relu.ts";
import { createMetrics, crossEntropyTrain } from "../src/ops/softmax_cross_entropy.ts";
import { materialize } from "../src/plan/materialize.ts";
import { formatTable, timeSubmits } from "./timing.ts";

export interface SmallOpRow {
  adapter: string;
  op: string;
  shape: string;
  bytes: number;
  ms: number;
  gbPerSecond: number;
}

const bytesOf = (...tensors: Tensor[]) => tensors.reduce((sum, t) => sum + byteSize(t), 0);

export async function benchSmallOps(
  gpu: Gpu,
  { batch = 128, resnet9Batch = 512, minMs = 500 } = {},
): Promise<SmallOpRow[]> {
  const tensors: Tensor[] = [];
  const tensor = (label: string, shape: number[], dtype: DType = "f32") => {
    const t = createTensor(gpu, label, shape, dtype);
    tensors.push(t);
    return t;
  };
  const activation = [batch, 32, 32, 64];
  const [x, y, dy, dx] = ["x", "y", "dy", "dx"].map((label) => tensor(label, activation));
  const last = [batch, 4, 4, 512];
  const [features, dFeatures] = ["features", "d features"].map((label) => tensor(label, last));
  const [pooled, dPooled] = ["pooled", "d pooled"].map((label) => tensor(label, [batch, 512]));
  const weight = tensor("fc weight", [10, 512]);
  const bias = tensor("fc bias", [10]);
  const [logits, dLogits] = ["logits", "d logits"].map((label) => tensor(label, [batch, 10]));
  const dWeight = tensor("d fc weight", [10, 512]);
  const dBias = tensor("d fc bias", [10]);
  const labels = tensor("labels", [batch], "u32");
  const metrics = createMetrics(gpu);
  tensors.push(metrics);

  const cases: [string, number[], KernelCall[], number][] = [
    ["relu forward", activation, reluForward({ x, y }), bytesOf(x, y)],
    ["relu backward", activation, reluBackward({ y, dy, dx }), bytesOf(y, dy, dx)],
    [
      "add (residual, gradient sum)",
      activation,
      addForward({ a: x, b: dy, y: dx }),
      bytesOf(x, dy, dx),
    ],
    [
      "global avg pool forward",
      last,
      globalAvgPoolForward({ x: features, y: pooled }),
      bytesOf(features, pooled),
    ],
    [
      "global avg pool backward",
      last,
      globalAvgPoolBackward({ dy: dPooled, dx: dFeatures }),
      bytesOf(dPooled, dFeatures),
    ],
    [
      "linear forward",
      [batch, 512, 10],
      linearForward({ x: pooled, weight, bias, y: logits }),
      bytesOf(pooled, weight, bias, logits),
    ],
    [
      "linear backward",
      [batch, 512, 10],
      linearBackward({
        x: pooled,
        weight,
        bias,
        dy: dLogits,
        dx: dPooled,
        dweight: dWeight,
        dbias: dBias,
      }),
      bytesOf(pooled, weight, dLogits, dPooled, dWeight, dBias),
    ],
    [
      "softmax cross-entropy",
      [batch, 10],
      crossEntropyTrain({ logits, labels, metrics, dlogits: dLogits }),
      bytesOf(logits, labels, dLogits),
    ],
    // ResNet-9's head: fc(x) * 0.125 and label smoothing 0.2 (the fast94 recipe).
    [
      "linear forward, scale 0.125",
      [batch, 512, 10],
      linearForward({ x: pooled, weight, bias, y: logits }, { scale: 0.125 }),
      bytesOf(pooled, weight, bias, logits),
    ],
    [
      "softmax cross-entropy, label smoothing 0.2",
      [batch, 10],
      crossEntropyTrain({ logits, labels, metrics, dlogits: dLogits }, { labelSmoothing: 0.2 }),
      bytesOf(logits, labels, dLogits),
    ],
  ];
  cases.push(...resnet9PoolCases(gpu, tensor, resnet9Batch));
  const rows: SmallOpRow[] = [];
  for (const [op, shape, calls, bytes] of cases) {
    const materialized = await materialize(gpu, calls, { label: `bench ${op}` });
    const ms = await timeSubmits(gpu, [materialized.commands], { minMs });
    materialized.destroy();
    rows.push({
      adapter: gpu.adapterName,
      op,
      shape: `[${shape}]`,
      bytes,
      ms,
      gbPerSecond: bytes / ms / 1e6,
    });
  }
  for (const t of tensors) t.buffer.destroy();
  return rows;
}

/**
 * ResNet-9's pools (the fast94 recipe, width 1): the max pooling after layer1, layer2 and layer3
 * and the head's global max pooling, forward and backward. The first pool's input,
 * [512, 32, 32, 128], is 256 MiB in f32, over WebGPU's default 128 MiB per binding: the pools run
 * on f16 activations where the device has shader-f16 (128 MiB), and the batch halves until the
 * largest tensor fits the device.
 */
function resnet9PoolCases(
  gpu: Gpu,
  tensor: (label: string, shape: number[], dtype?: DType) => Tensor,
  batch: number,
): [string, number[], KernelCall[], number][] {
  const dtype: DType = gpu.device.features.has("shader-f16") ? "f16" : "f32";
  const { maxStorageBufferBindingSize, maxBufferSize } = gpu.device.limits;
  const limit = Math.min(maxStorageBufferBindingSize, maxBufferSize);
  const bytesPerElement = dtype === "f16" ? 2 : 4;
  while (batch > 1 && batch * 32 * 32 * 128 * bytesPerElement > limit) batch = Math.ceil(batch / 2);
  const cases: [string, number[], KernelCall[], number][] = [];
  for (const [size, channels] of [[32, 128], [16, 256], [8, 512]]) {
    const shape = [batch, size, size, channels];
    const pooledShape = maxPoolOutputShape(shape);
    const x = tensor(`pool x ${size}`, shape, dtype);
    const dx = tensor(`pool dx ${size}`, shape, dtype);
    const y = tensor(`pool y ${size}`, pooledShape, dtype);
    const dy = tensor(`pool dy ${size}`, pooledShape, dtype);
    cases.push(
      [`max pool forward (${dtype})`, shape, maxPoolForward({ x, y }), bytesOf(x, y)],
      [
        `max pool backward (${dtype})`,
        shape,
        maxPoolBackward({ x, dy, dx }),
        bytesOf(x, dy, dx),
      ],
    );
  }
  const last = [batch, 4, 4, 512];
  const x = tensor("global pool x", last, dtype);
  const dx = tensor("global pool dx", last, dtype);
  const [y, dy] = ["global pool y", "global pool dy"].map((label) => tensor(label, [batch, 512]));
  cases.push(
    [`global max pool forward (${dtype})`, last, globalMaxPoolForward({ x, y }), bytesOf(x, y)],
    [
      `global max pool backward (${dtype})`,
      last,
      globalMaxPoolBackward({ x, dy, dx }),
      bytesOf(x, dy, dx),
    ],
  );
  return cases;
}

export function formatSmallOpRows(rows: SmallOpRow[]): string {
  return formatTable(
    ["op", "shape", "MB", "ms", "GB/s"],
    rows.map((
      row,
    ) => [
      row.op,
      row.shape,
      (row.bytes / 1e6).toFixed(2),
      row.ms.toFixed(3),
      row.gbPerSecond.toFixed(2),
    ]),
  );
}

if (import.meta.main) {
  const gpu = await requestGpu();
  const quick = Deno.args.includes("--quick");
  console.log(
    `small ops, batch 128, on ${gpu.adapterName} (one submit per repetition: the time includes its overhead)`,
  );
  console.log(formatSmallOpRows(await benchSmallOps(gpu, { minMs: quick ? 100 : 500 })));
}
