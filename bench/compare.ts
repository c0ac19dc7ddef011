/**
 * The side-by-side table for bench/README.md from the files bench/gpu_side_by_side.sh leaves in
 * its output folder: this project's ResNet-18 batch-128 training step in f32 and f16 beside
 * PyTorch's in three modes, as images/s and as ratios to this project's f32 step.
 *
 *   deno run --allow-read bench/compare.ts OUT_FOLDER
 *
 * A measurement that is missing (its step failed) shows as "-".
 */
import { join } from "node:path";
import { z } from "zod";

const TrainingRows = z.object({
  training: z.array(z.object({
    model: z.string(),
    batchSize: z.number(),
    trainImagesPerSecond: z.number(),
    evalImagesPerSecond: z.number(),
  })),
});

const PyTorchResults = z.object({
  torch: z.string(),
  cuda: z.string().nullable(),
  cudnn: z.number().nullable(),
  gpu: z.string(),
  modes: z.array(z.object({
    mode: z.enum(["fp32", "default", "amp"]),
    model: z.string(),
    batch: z.number(),
    train_images_per_second: z.number(),
    eval_images_per_second: z.number(),
  })),
});

const Profile = z.object({
  profile: z.object({
    timerNote: z.string(),
    peaks: z.object({ gflops: z.number(), gbPerSecond: z.number() }),
    stepWallMs: z.number(),
    passes: z.array(z.object({ pass: z.string(), ms: z.number(), share: z.number() })),
  }),
});

const Adapter = z.object({
  info: z.object({ description: z.string() }),
  shaderF16: z.boolean(),
});

const PYTORCH_MODES = {
  fp32: "PyTorch fp32, TF32 off",
  default: "PyTorch defaults",
  amp: "PyTorch AMP fp16, channels_last",
} as const;

async function readJson<T>(folder: string, name: string, schema: z.ZodType<T>) {
  try {
    return schema.parse(JSON.parse(await Deno.readTextFile(join(folder, name))));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw new Error(`${name}: ${error instanceof Error ? error.message : error}`);
  }
}

async function readText(folder: string, name: string): Promise<string | undefined> {
  try {
    return (await Deno.readTextFile(join(folder, name))).trim();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

interface Row {
  run: string;
  train?: number;
  eval?: number;
}

/** This project's row for ResNet-18 width 1 at batch 128, if that run produced one. */
function projectRow(run: string, results: z.infer<typeof TrainingRows> | undefined): Row {
  const row = results?.training.find((row) =>
    row.model === "resnet18 width 1" && row.batchSize === 128
  );
  return { run, train: row?.trainImagesPerSecond, eval: row?.evalImagesPerSecond };
}

/** The markdown table (and a line naming the machine) for the results in `folder`. */
export async function compareFolder(folder: string): Promise<string> {
  const f32 = await readJson(folder, "deno_f32.json", TrainingRows);
  const f16 = await readJson(folder, "deno_f16.json", TrainingRows);
  const pytorch = await readJson(folder, "pytorch.json", PyTorchResults);
  const profile = await readJson(folder, "profile.json", Profile);
  const adapter = await readJson(folder, "adapter.json", Adapter);
  const smi = await readText(folder, "nvidia_smi.csv");
  const deno = await readText(folder, "deno_version.txt");

  const rows: Row[] = [
    projectRow("this project f32", f32),
    projectRow("this project f16", f16),
    ...Object.entries(PYTORCH_MODES).map(([mode, run]) => {
      const row = pytorch?.modes.find((row) =>
        row.mode === mode && row.model === "resnet18 width 1" && row.batch === 128
      );
      return { run, train: row?.train_images_per_second, eval: row?.eval_images_per_second };
    }),
  ];
  const base = rows[0];
  const figure = (value: number | undefined) => value === undefined ? "-" : value.toFixed(0);
  const ratio = (value: number | undefined, reference: number | undefined) =>
    value === undefined || reference === undefined ? "-" : `${(value / reference).toFixed(2)}x`;
  const lines = [
    `GPU: ${smi ?? "-"} (nvidia-smi: name, driver, memory, max SM clock); WebGPU adapter: ${
      adapter?.info.description ?? "-"
    }, shader-f16 ${adapter ? (adapter.shaderF16 ? "offered" : "not offered") : "-"}; ${
      deno ?? "deno -"
    }; PyTorch ${pytorch?.torch ?? "-"}, CUDA ${pytorch?.cuda ?? "-"}, cuDNN ${
      pytorch?.cudnn ?? "-"
    }`,
    "",
    "ResNet-18 (CIFAR), batch 128, Adam, synthetic data on the GPU; ratios to this project's f32",
    "",
    "| run | train images/s | train ratio | eval images/s | eval ratio |",
    "| --- | --- | --- | --- | --- |",
    ...rows.map((row) =>
      `| ${row.run} | ${figure(row.train)} | ${ratio(row.train, base.train)} | ${
        figure(row.eval)
      } | ${ratio(row.eval, base.eval)} |`
    ),
  ];
  if (profile) {
    const { peaks, passes, stepWallMs, timerNote } = profile.profile;
    lines.push(
      "",
      `Profile (f32, ${timerNote}): peaks ${peaks.gflops.toFixed(0)} GFLOP/s and ${
        peaks.gbPerSecond.toFixed(0)
      } GB/s; step ${stepWallMs.toFixed(2)} ms wall-clock; ${
        passes.map((pass) =>
          `${pass.pass} ${pass.ms.toFixed(2)} ms (${(pass.share * 100).toFixed(0)}%)`
        )
          .join(", ")
      }`,
    );
  }
  return lines.join("\n");
}

if (import.meta.main) {
  const [folder] = Deno.args;
  if (!folder) {
    console.error("usage: deno run --allow-read bench/compare.ts OUT_FOLDER");
    Deno.exit(2);
  }
  console.log(await compareFolder(folder));
}
