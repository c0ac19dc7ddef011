#!/usr/bin/env bash
# The one command a session runs on a lent GPU machine (the device tool's `run`; preparation and
# the exact call: bench/README.md, "Side by side on a GPU"). In one run: the machine (nvidia-smi,
# the WebGPU adapter and its features), this project's ResNet-18 batch-128 training step in f32 and
# in f16, its kernel profile, and PyTorch's step on the same model, batch, optimizer and data
# shapes in three modes (bench/pytorch_resnet.py). Everything goes to $OUT: one JSON file per
# measurement, log.txt with all the output, and table.md, the ratio table (bench/compare.ts).
#
# It carries its own Deno (.gpu/deno.xz), Deno's npm cache (.gpu/deno_dir.tar.xz: nothing can be
# fetched there) and the Vulkan loader (.gl/*.deb), which bench/gpu_setup.sh unpacks. A step that
# fails is logged and the next one still runs; each has a time limit so that the whole run ends
# inside the tool's 10 minutes.
set -uo pipefail

: "${OUT:?OUT must name the folder for the results}"
exec > >(tee -a "$OUT/log.txt") 2>&1

step() {
  echo
  echo "=== $1"
}

# `deno task bench`, with --cached-only: the machine reaches no registry. An array, not a
# function, so that `timeout` can run it.
bench=(deno run --cached-only --allow-read --allow-write --allow-env bench/main.ts)

step "setup"
source "$(dirname "${BASH_SOURCE[0]}")/gpu_setup.sh"
export PYTHONUNBUFFERED=1

step "machine"
nvidia-smi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader \
  >"$OUT/nvidia_smi.csv"
deno --version | head -1 | tee "$OUT/deno_version.txt"
deno eval --cached-only '
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  const { vendor, architecture, device, description, isFallbackAdapter } = adapter.info;
  const report = {
    info: { vendor, architecture, device, description, isFallbackAdapter },
    features: [...adapter.features].sort(),
    shaderF16: adapter.features.has("shader-f16"),
    timestampQuery: adapter.features.has("timestamp-query"),
  };
  console.log(JSON.stringify(report, null, 2));
  Deno.writeTextFileSync(`${Deno.env.get("OUT")}/adapter.json`, JSON.stringify(report, null, 2));
' || echo "no WebGPU adapter"
timeout 30 deno run --cached-only --allow-env src/cli/adapter.ts

step "this project, f32"
timeout 120 "${bench[@]}" --only training --width 1 --json "$OUT/deno_f32.json"

step "this project, f16"
timeout 120 "${bench[@]}" --only training --width 1 --precision f16 --json "$OUT/deno_f16.json"

step "this project, profile of one step (f32)"
timeout 90 "${bench[@]}" --profile --profile-calls --json "$OUT/profile.json"

step "PyTorch"
timeout 120 python3 bench/pytorch_resnet.py --json "$OUT/pytorch.json"

step "ratio table"
deno run --cached-only --allow-read bench/compare.ts "$OUT" | tee "$OUT/table.md"
