#!/usr/bin/env bash
# This project against PyTorch on the CPU, side by side in one run: the ResNet-18 training step
# (width 1/4 unless WIDTH says otherwise, batch 128, Adam, synthetic data) of `deno task bench
# --only training` on the CPU adapter (lavapipe), and bench/pytorch_resnet.py's same step on the
# CPU with as many threads as there are cores, in turns (ROUNDS, default 2) so that a change in
# the machine's load reaches both. On a CPU with AVX-512, then the same under an AVX2 CPU's code on
# both sides (lavapipe: GALLIUM_OVERRIDE_CPU_CAPS=avx; PyTorch: ATEN_CPU_CAPABILITY=avx2 and
# ONEDNN_MAX_CPU_ISA=AVX2), what a Zen 3 runs, unless AVX2=0; a CPU without AVX-512 runs AVX2 code
# natively, so there the second pass would repeat the first and is left out (AVX2=1 forces it).
# Results in $OUT (default a new temporary folder): one JSON file per measurement and table.md, the
# ratios of every round and each code's median ratio, the figure issue 10's target is judged by.
#
#   bash bench/cpu_side_by_side.sh          (PyTorch: Debian's python3-torch, or any torch)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-$(mktemp -d)}"
WIDTH="${WIDTH:-0.25}"
ROUNDS="${ROUNDS:-2}"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  if /usr/bin/python3 -c "import torch" 2>/dev/null; then
    PYTHON=/usr/bin/python3
  else
    echo "cpu_side_by_side.sh: PyTorch is missing; install it (apt-get install -y python3-torch)" >&2
    exit 1
  fi
fi
# Mesa wants a writable XDG_RUNTIME_DIR (else it warns on every run); a temporary one is removed.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  XDG_RUNTIME_DIR="$(mktemp -d)"
  export XDG_RUNTIME_DIR
  trap 'rm -rf "$XDG_RUNTIME_DIR"' EXIT
fi

measure() {
  local isa=$1 round=$2
  local caps=() torch_env=()
  if [ "$isa" = avx2 ]; then
    caps=(GALLIUM_OVERRIDE_CPU_CAPS=avx)
    torch_env=(ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2)
  fi
  echo "=== $isa, round $round: this project"
  env "${caps[@]}" deno task bench --only training --width "$WIDTH" \
    --json "$OUT/deno_${isa}_$round.json"
  echo "=== $isa, round $round: PyTorch"
  env "${torch_env[@]}" "$PYTHON" bench/pytorch_resnet.py --device cpu --width "$WIDTH" \
    --warmup 3 --steps 5 --trials 3 --json "$OUT/pytorch_${isa}_$round.json"
}

# The native code's kind, for the table: lavapipe and oneDNN both use AVX-512 where the CPU has it.
# Without it the native code is AVX2's already, and the emulated pass would only repeat it.
NATIVE=AVX2
emulate_avx2=0
if grep -qm1 avx512f /proc/cpuinfo 2>/dev/null; then
  NATIVE=AVX-512
  emulate_avx2=1
fi
isas=(native)
[ "${AVX2:-$emulate_avx2}" = 1 ] && isas+=(avx2)
for isa in "${isas[@]}"; do
  for round in $(seq 1 "$ROUNDS"); do measure "$isa" "$round"; done
done

"$PYTHON" - "$OUT" "$WIDTH" "$NATIVE" <<'PY' | tee "$OUT/table.md"
import glob, json, os, statistics, subprocess, sys
out, width, native = sys.argv[1], float(sys.argv[2]), sys.argv[3]
deno = subprocess.run(["deno", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
print("| code | round | this project img/s | PyTorch img/s | ratio |")
print("| ---- | ----- | ------------------ | ------------- | ----- |")
torch_version = cpu = adapter = None
ratios = {}
runs = [os.path.basename(path)[5:-5].rsplit("_", 1)
        for path in glob.glob(os.path.join(out, "deno_*.json"))]
for isa, round_ in sorted(runs, key=lambda run: (run[0] != "native", int(run[1]))):
    path = os.path.join(out, f"deno_{isa}_{round_}.json")
    ours = json.load(open(path))
    theirs = json.load(open(os.path.join(out, f"pytorch_{isa}_{round_}.json")))
    torch_version, cpu, adapter = theirs["torch"], theirs["cpu"], ours.get("adapter")
    train = ours["training"][0]["trainImagesPerSecond"]
    reference = theirs["modes"][0]["train_images_per_second"]
    label = f"native ({native})" if isa == "native" else "AVX2 code (emulated)"
    ratios.setdefault(label, []).append(train / reference)
    print(f"| {label} | {round_} | {train:.1f} | {reference:.0f} | {train / reference:.3f}x |")
print()
for label, values in ratios.items():
    above = sum(ratio >= 0.3 for ratio in values)
    print(f"{label}: median {statistics.median(values):.3f}x over {len(values)} rounds, "
          f"{above} of them at 0.3x or more")
print()
print(f"ResNet-18 width {width:g}, batch 128, Adam, synthetic data; {cpu}; {deno}; "
      f"adapter {adapter}; PyTorch {torch_version} ({os.cpu_count()} threads)")
PY
echo "results: $OUT"
