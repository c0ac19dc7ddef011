#!/usr/bin/env bash
# The fast94 run on a lent GPU machine, the last of four calls of the device tool's `run`
# (preparation and the exact calls: bench/README.md, "fast94 on a GPU"). In one run: the machine
# (nvidia-smi, the WebGPU adapter), `deno task train --preset fast94` on the real CIFAR-10 with its
# run folder in $OUT/fast94 (metrics.jsonl: every epoch and the time to 90/93/94%; chart.svg), and,
# if time is left, `deno task bench --profile --model resnet9 --width 1` (batch 512, the recipe's
# step) into $OUT/profile.json. Everything printed also goes to $OUT/log.txt.
#
# PyTorch is not run: tools/pytorch_fast94.py, the same recipe in PyTorch, runs on the CPU only.
#
# It carries its own Deno (.gpu/deno.xz), Deno's npm cache (.gpu/deno_dir.tar.xz) and the Vulkan
# loader (.gl/*.deb), as bench/gpu_side_by_side.sh, and unpacks them with bench/gpu_setup.sh.
# CIFAR-10's archive (170 MB) is over what one call may carry (64 MiB), so the three calls before
# this one each carried a third of it (.cifar10/part-0..2, ignored paths that stay on the machine
# while it is held); this joins them and checks the whole against .cifar10/SHA256SUMS. Each step
# has a time limit, so that the whole run ends within BUDGET_S seconds (default 560), inside the
# tool's 10 minutes.
#
# A dry run of the whole script elsewhere (lavapipe cannot bind the 256 MiB of batch 512): with
# stubs for dpkg, ldconfig and nvidia-smi first in PATH, FAST94_FLAGS and PROFILE_FLAGS add flags
# to the two commands, e.g. FAST94_FLAGS="--width 0.0625 --batch-size 64 --epochs 1 --limit 1024
# --test-limit 500" PROFILE_FLAGS="--width 0.0625 --batch-size 8".
set -uo pipefail

: "${OUT:?OUT must name the folder for the results}"
exec > >(tee -a "$OUT/log.txt") 2>&1

budget=${BUDGET_S:-560}
start=$SECONDS
# Seconds left of the budget.
left() { echo $((budget - (SECONDS - start))); }

step() {
  echo
  echo "=== $1 ($(left) s left)"
}

# `deno task train` and `deno task bench` (deno.json's permissions), with --cached-only: the machine
# reaches no registry. Arrays, not functions, so that `timeout` can run them.
train=(deno run --cached-only --allow-read --allow-write --allow-net --allow-env --allow-run=grep
  src/cli/train.ts)
bench=(deno run --cached-only --allow-read --allow-write --allow-env --allow-run=grep bench/main.ts)

step "CIFAR-10"
archive=/tmp/cifar-10-binary.tar.gz
parts=(.cifar10/part-0 .cifar10/part-1 .cifar10/part-2)
for part in "${parts[@]}" .cifar10/SHA256SUMS; do
  if [ ! -f "$part" ]; then
    echo "missing $part: the machine was given back between the calls that carried the parts," \
      "or a call was skipped; start again from the first data call (bench/README.md)"
    ls -la .cifar10 2>&1
    exit 1
  fi
done
cat "${parts[@]}" >"$archive"
expected=$(awk '$2 == "cifar-10-binary.tar.gz" { print $1 }' .cifar10/SHA256SUMS)
actual=$(sha256sum "$archive" | cut -d' ' -f1)
if [ "$actual" != "$expected" ]; then
  echo "the joined archive's SHA-256 is $actual, not $expected: a part is damaged or stale"
  exit 1
fi
echo "joined $archive ($(stat -c %s "$archive") bytes), SHA-256 as expected"

step "setup"
source "$(dirname "${BASH_SOURCE[0]}")/gpu_setup.sh"

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
deno --version | head -1
timeout 30 deno run --cached-only --allow-env src/cli/adapter.ts

step "fast94"
# All the budget but 20 s; SIGTERM stops it cleanly, and the epochs done are in metrics.jsonl.
timeout --kill-after=10 $(($(left) - 20)) \
  "${train[@]}" --preset fast94 --data "$archive" --run-dir "$OUT/fast94" ${FAST94_FLAGS:-}
echo "train exited with $? (124: stopped at the time limit)"

# The profile takes about a minute on a GPU (the peaks, compiling, 7 steps).
if [ "$(left)" -ge 100 ]; then
  step "profile of one fast94 step (ResNet-9 width 1, batch 512)"
  timeout --kill-after=5 $(($(left) - 10)) "${bench[@]}" --profile --model resnet9 --width 1 \
    --json "$OUT/profile.json" ${PROFILE_FLAGS:-}
else
  step "profile skipped: too little time left"
fi

# Checkpoints of width 1 are over the 16 MiB a file may take back, and would crowd the 8 files.
mkdir -p /tmp/fast94_checkpoints
mv "$OUT"/fast94/*.safetensors /tmp/fast94_checkpoints/ 2>/dev/null
step "done"
find "$OUT" -type f | sort
